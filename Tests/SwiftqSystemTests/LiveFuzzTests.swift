import Foundation
import SwiftqControl
import SwiftqCore
import SwiftqPlatform
import Testing

/// A running daemon fed garbage on both of its inputs: the control socket (random bytes, a line that never ends,
/// connections left silent, a thousand clients at once) and the broker (random list elements, random headers, a
/// huge body, deep nesting). It answers or drops each with a log line, stays healthy, keeps its consumer, and its
/// memory stays bounded.
@Suite(.serialized) struct LiveFuzzTests {
    static func rssKiB(_ pid: Int32) -> Int {
        let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            return Int(line.split(separator: " ", omittingEmptySubsequences: true)[1]) ?? 0
        }
        return 0
    }

    @Test func garbageOnTheControlSocketLeavesTheDaemonHealthy() throws {
        let redis = try RedisServer()
        let daemon = try RedisInteropTests.daemon(broker: redis, concurrency: 1)
        let rssBefore = Self.rssKiB(daemon.pid)
        var random = SystemRandomNumberGenerator()

        // Random bytes, with and without newlines: each line gets an error reply or the connection is closed.
        for round in 0..<200 {
            let client = try ControlClient(path: daemon.socketPath)
            var bytes = (0..<Int.random(in: 1...512, using: &random)).map { _ in UInt8.random(in: 0...255) }
            if round % 2 == 0 { bytes.append(0x0A) }
            _ = try? client.exchange(bytes, timeout: .milliseconds(round % 2 == 0 ? 2000 : 50))
        }
        // A line that never ends: refused once it passes control.max_request_bytes, then closed.
        let endless = try ControlClient(path: daemon.socketPath)
        let huge = [UInt8](repeating: UInt8(ascii: "x"), count: 8 << 20)
        do {
            let reply = try endless.exchange(huge, timeout: .seconds(10))
            if case .failure(let error) = reply.outcome {
                #expect(error.code == .requestTooLarge, "\(error)")
            } else {
                Issue.record("an 8 MiB line was accepted")
            }
        } catch {
            // The daemon may close before the whole write: acceptable, it said why in the log.
        }
        // A client that sends many requests and reads nothing is not read from beyond a bounded backlog: its writes
        // stop going through (EAGAIN on a non-blocking socket) instead of the daemon buffering without end.
        let greedy = try UnixSocket.connect(path: daemon.socketPath)
        _ = fcntl(greedy, F_SETFL, fcntl(greedy, F_GETFL) | O_NONBLOCK)
        let pings = Array(String(repeating: #"{"id":1,"command":"ping"}"# + "\n", count: 100_000).utf8)
        var sent = 0
        let deadline = Date().addingTimeInterval(3)
        while sent < pings.count && Date() < deadline {
            let written = pings[sent...].withUnsafeBytes { write(greedy, $0.baseAddress, min($0.count, 65536)) }
            if written > 0 { sent += written } else { usleep(10_000) }
        }
        #expect(sent < pings.count, "the daemon read \(sent) bytes of requests whose replies nobody reads")
        close(greedy)

        // Three hundred connections opened and left silent: an operator still gets in.
        var silent: [ControlClient] = []
        for _ in 0..<300 { silent.append(try ControlClient(path: daemon.socketPath)) }
        #expect(try daemon.ctl(["stats"]).status == 0, "locked out by silent connections")

        // A thousand clients at once: each gets its answer or a clear refusal, none hangs.
        var clients: [ControlClient] = []
        for _ in 0..<1000 { clients.append(try ControlClient(path: daemon.socketPath)) }
        var answered = 0
        var refused = 0
        for client in clients {
            do {
                _ = try client.call("ping", timeout: .seconds(10))
                answered += 1
            } catch {
                #expect(error.code != .timeout, "a client hung: \(error)")
                refused += 1
            }
        }
        #expect(answered + refused == 1000)
        #expect(answered >= ControlServerLimits.maximumConnections / 2, "answered \(answered), refused \(refused)")
        silent.removeAll()
        clients.removeAll()

        #expect(try daemon.call("ping") != .null)
        #expect(daemon.exitStatus() == nil)
        let growth = Self.rssKiB(daemon.pid) - rssBefore
        #expect(growth < 32 * 1024, "supervisor RSS grew by \(growth) KiB")
        #expect(daemon.log.contains("control socket full"), "evictions are logged")
    }

    @Test func garbageOnTheBrokerIsRejectedAndTheConsumerCarriesOn() throws {
        let redis = try RedisServer()
        let daemon = try RedisInteropTests.daemon(broker: redis, concurrency: 1)
        #expect(eventually(timeout: 20) { (try? daemon.stats())?["broker"]?["connected"] == true })
        let consumer = try #require(try daemon.consumerPID())
        let script = """
            import base64, json, os, random, redis, sys
            r = redis.Redis.from_url(sys.argv[1])
            rnd = random.Random(7)
            def envelope(body, headers=None, content_type="application/json"):
                h = {"lang": "py", "task": "swiftq.add", "id": "x-%d" % rnd.randrange(1 << 30)}
                if headers is not None:
                    h = headers
                return json.dumps({"body": base64.b64encode(body).decode(), "content-encoding": "utf-8",
                    "content-type": content_type, "headers": h,
                    "properties": {"delivery_tag": "t%d" % rnd.randrange(1 << 30), "body_encoding": "base64",
                        "delivery_info": {"exchange": "", "routing_key": "celery"}, "priority": 0}})
            items = []
            for _ in range(200):   # random bytes
                items.append(os.urandom(rnd.randrange(1, 300)))
            for _ in range(200):   # random headers
                keys = ["task", "id", "eta", "expires", "retries", "timelimit", "group_index", "root_id", "shadow"]
                values = [None, 1, -1, 1.5, "", "x", [], {}, [None, "a"], "2026-13-45T99:99:99", 10 ** 30, True]
                h = {k: rnd.choice(values) for k in rnd.sample(keys, rnd.randrange(len(keys)))}
                items.append(envelope(b"[[1, 2], {}, {}]", headers=h))
            items.append(envelope(b"[" * 100000 + b"]" * 100000))                       # deep nesting
            items.append(envelope(b'[["' + b"y" * (16 << 20) + b'"], {}, {}]', headers={  # a 16 MiB argument
                "lang": "py", "task": "swiftq.echo", "id": "huge-body"}))
            items.append(envelope(b"not json at all"))
            items.append(envelope(b"[1, 2, 3]", content_type="application/x-python-serialize"))
            for item in items:
                r.lpush("celery", item)
            print(len(items))
            """
        let pushed = try runCommand(Python.interpreter, ["-c", script, redis.url], timeout: 120)
        #expect(pushed.status == 0, "\(pushed.stderr)")
        // Then a real task: it runs.
        let results = try Python.celeryClient(
            RedisInteropTests.request(redis, calls: [["task": "swiftq.add", "args": [20, 22]]], timeout: 90),
            timeout: 120
        )
        #expect(results.first?["result"] == 42, "\(results)\n\(daemon.log.suffix(3000))")
        #expect(try daemon.consumerPID() == consumer, "the consumer was restarted")
        #expect(daemon.exitStatus() == nil)
        let stats = try daemon.stats()
        let rejected = stats["tasks"]?["rejected"]?.objectValue?.values.compactMap(\.intValue).reduce(0, +) ?? 0
        #expect(rejected >= 200, "rejections counted: \(stats["tasks"] ?? .null)")
        #expect(Self.rssKiB(consumer) < 512 * 1024, "consumer RSS \(Self.rssKiB(consumer)) KiB")
    }
}

/// The control server's connection limit, as the tests see it.
enum ControlServerLimits {
    static let maximumConnections = 128
}
