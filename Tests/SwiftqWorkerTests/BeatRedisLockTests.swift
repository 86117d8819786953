import SwiftqCore
import SwiftqPlatform
import SwiftqRedis
import Testing

@testable import SwiftqConsumer
@testable import SwiftqWorker

#if canImport(Glibc)
import Glibc
#endif

/// The lease scripts against a real redis-server: compare-and-extend, compare-and-delete, and the fenced publish
/// that refuses a holder whose lease was taken over.
@Suite("Beat: Redis lease scripts", .serialized)
struct BeatRedisLockTests {
    /// A private redis-server on a unix socket in a temporary directory, killed at the end.
    final class Server {
        let directory: String
        let pid: pid_t
        var socket: String { directory + "/redis.sock" }

        init() throws {
            var template = Array("/tmp/swiftq-beat-lock-XXXXXX".utf8CString)
            guard let made = mkdtemp(&template) else { throw SystemError("mkdtemp", errno: errno) }
            directory = String(cString: made)
            let candidates: [String] = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
            let path = candidates.first { access($0, X_OK) == 0 }
            pid = try ChildProcess.spawn(
                path: path ?? "/usr/bin/redis-server",
                arguments: [
                    "redis-server", "--port", "0", "--unixsocket", directory + "/redis.sock", "--save", "",
                    "--appendonly", "no", "--dir", directory,
                ],
                environment: [],
                descriptors: []
            )
        }

        func connect() throws -> RedisConnection {
            var lastError: (any Error)?
            for _ in 0..<100 {
                do {
                    return try RedisConnection(url: try RedisURL(parsing: "redis+socket://\(socket)"))
                } catch {
                    lastError = error
                    usleep(50_000)
                }
            }
            throw lastError ?? SystemError("connect", errno: 0)
        }

        deinit {
            kill(pid, SIGKILL)
            _ = ChildProcess.wait(pid: pid, timeout: .seconds(5))
            unlink(directory + "/redis.sock")
            rmdir(directory)
        }
    }

    @Test func leaseFencingAndRecord() throws {
        let server = try Server()
        let a = BeatRedisLock(connection: try server.connect(), name: "t.lock", node: "A")
        let b = BeatRedisLock(connection: try server.connect(), name: "t.lock", node: "B")
        let layout = KombuRedisLayout()
        let envelope: ([UInt8], String, Int) = (Array("{}".utf8), "q", 0)

        let fenceA = try #require(try a.acquire(ttl: 1, now: 100))
        #expect(try b.acquire(ttl: 1, now: 100) == nil)
        #expect(try a.renew(ttl: 1, now: 100.3))
        #expect(try !b.renew(ttl: 1, now: 100.3))
        #expect(try a.holder() == "A:\(fenceA)")

        let run = BeatScheduler.Run(entry: "tick", scheduledAt: 100)
        #expect(try a.publish(run, fence: fenceA, envelope: envelope, layout: layout) == .published)
        // The same run again is not published twice, by anyone.
        #expect(try a.publish(run, fence: fenceA, envelope: envelope, layout: layout) == .alreadyPublished)

        // A's lease runs out (A was paused); B takes over with a higher fence.
        usleep(1_200_000)
        let fenceB = try #require(try b.acquire(ttl: 5, now: 102))
        #expect(fenceB > fenceA)
        let next = BeatScheduler.Run(entry: "tick", scheduledAt: 101)
        // A wakes up believing it still holds the lease: its renewal and its publish are refused.
        #expect(try !a.renew(ttl: 1, now: 102))
        #expect(try a.publish(next, fence: fenceA, envelope: envelope, layout: layout) == .fenced)
        #expect(try b.publish(next, fence: fenceB, envelope: envelope, layout: layout) == .published)
        #expect(try a.connection.command("LLEN", "q").integer == 2)
        // Taking the lease does not overwrite when the previous holder was last alive: the new holder reads it to
        // tell how many runs the takeover missed (found by the takeover system test: it replayed none).
        let (runs, alive) = try b.recordedRuns()
        #expect(runs == ["tick": 101])
        #expect(alive == 100.3)
        // Its own renewals record it from then on.
        #expect(try b.renew(ttl: 5, now: 102.5))
        #expect(try b.recordedRuns().alive == 102.5)

        // A's release does not delete B's lease; B's does.
        try a.release(now: 103)
        #expect(try b.holder() == "B:\(fenceB)")
        try b.release(now: 103)
        #expect(try b.holder() == nil)
    }
}
