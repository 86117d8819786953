import Foundation
import SwiftqControl
import SwiftqCore
import SwiftqPlatform
import Testing

/// The control socket against a running daemon: garbage in, error replies out, other clients unaffected.
@Suite(.serialized) struct ControlSocketTests {
    @Test func malformedUnknownAndOversizedRequestsGetErrorRepliesWhileAnotherClientIsServed() throws {
        let daemon = try Daemon(concurrency: 1, controlYAML: "  max_request_bytes: 4096\n")
        let bystander = try ControlClient(path: daemon.socketPath)
        let client = try ControlClient(path: daemon.socketPath)

        let garbage = try client.exchange(Array("this is not json\n".utf8), timeout: .seconds(5))
        #expect(garbage.outcome == .failure(ControlError(.invalidJSON, messageOf(garbage))))
        #expect(try bystander.call("ping")["pong"]?.boolValue == true)

        // The same connection keeps working after garbage.
        #expect(try client.call("ping")["pong"]?.boolValue == true)

        let notObject = try client.exchange(Array("[1,2,3]\n".utf8), timeout: .seconds(5))
        #expect(errorCode(notObject) == "invalid_request")

        let unknown = try client.exchange(Array(#"{"id":7,"command":"frobnicate"}"#.utf8) + [10], timeout: .seconds(5))
        #expect(errorCode(unknown) == "unknown_command")
        #expect(unknown.id == .int(7))
        #expect(messageOf(unknown).contains("frobnicate"))

        let badArguments = try client.exchange(
            Array(#"{"id":8,"command":"ping","arguments":[1]}"#.utf8) + [10],
            timeout: .seconds(5)
        )
        #expect(errorCode(badArguments) == "invalid_request")
        #expect(badArguments.id == .int(8))

        let invalidUTF8 = try client.exchange([0x22, 0xFF, 0xFE, 0x22, 0x0A], timeout: .seconds(5))
        #expect(errorCode(invalidUTF8) == "invalid_json")

        // Oversized: one line beyond max_request_bytes, with no newline in sight.
        let oversized = try client.exchange(Array(repeating: UInt8(ascii: "x"), count: 5000), timeout: .seconds(5))
        #expect(errorCode(oversized) == "request_too_large")
        #expect(throws: ControlError.self) { try client.call("ping") }

        // The daemon and the bystander are unaffected.
        #expect(try bystander.call("ping")["pong"]?.boolValue == true)
        daemon.waitUntilHealthy()
        #expect(try daemon.ctl(["ping"]).status == 0)
        #expect(try daemon.stats()["pid"]?.intValue == Int64(daemon.pid))
    }

    @Test func aClientThatVanishesMidRequestDoesNotDisturbTheDaemon() throws {
        let daemon = try Daemon(concurrency: 1)
        for _ in 0..<20 {
            let fd = try UnixSocket.connect(path: daemon.socketPath)
            try Descriptors.writeAll(fd, Array(#"{"id":1,"command":"st"#.utf8))
            Descriptors.close(fd)
        }
        let fd = try UnixSocket.connect(path: daemon.socketPath)
        try Descriptors.writeAll(fd, Array(#"{"command":"stats"}"#.utf8) + [10])
        Descriptors.close(fd)
        daemon.waitUntilHealthy()
        #expect(try daemon.ctl(["ping"]).status == 0)
    }

    /// `echo '{"command":"stats"}' | socat - UNIX-CONNECT:…`: the client half-closes right after its request,
    /// and must still get the answer, even one that waits for the consumer.
    @Test func aClientThatHalfClosesStillGetsItsAnswers() throws {
        let daemon = try Daemon(concurrency: 1)
        let fd = try UnixSocket.connect(path: daemon.socketPath)
        defer { Descriptors.close(fd) }
        try Descriptors.writeAll(fd, Array("{\"id\":1,\"command\":\"stats\"}\n{\"id\":2,\"command\":\"ping\"}\n".utf8))
        shutdown(fd, Int32(SHUT_WR))
        var received: [UInt8] = []
        while Descriptors.waitReadable(fd, timeout: .seconds(5)) {
            let chunk = try Descriptors.read(fd, maximum: 65536)
            if chunk.isEmpty { break }
            received += chunk
        }
        let lines = received.split(separator: 0x0A).map { try? ControlReply(line: $0) }
        #expect(lines.count == 2)
        #expect(Set(lines.compactMap { $0?.id }) == [1, 2])
        #expect(lines.allSatisfy { if case .success = $0?.outcome { true } else { false } })
    }

    @Test func pipelinedRequestsAreAnsweredInOrder() throws {
        let daemon = try Daemon(concurrency: 1)
        let client = try ControlClient(path: daemon.socketPath)
        let requests = (1...5).map { ControlRequest(id: .int(Int64($0)), command: $0 == 3 ? "help" : "ping").line }
        let first = try client.exchange(requests.flatMap { $0 }, timeout: .seconds(5))
        #expect(first.id == .int(1))
        for expected in 2...5 {
            #expect(try client.readReply(timeout: .seconds(5)).id == .int(Int64(expected)))
        }
    }

    @Test func aPeerUIDThatIsNotAllowedIsRefused() throws {
        // The socket file is world-writable here so that only the SO_PEERCRED check stands in the way.
        let daemon = try Daemon(concurrency: 1, controlYAML: "  mode: \"0666\"\n")
        let asNobody = try pingAsNobody(daemon, supplementaryGroup: nil)
        #expect(asNobody.status == 69, "\(asNobody.stdout) \(asNobody.stderr)")
        #expect(asNobody.stderr.contains("not allowed"))
        #expect(daemon.log.contains("control connection refused"))
        #expect(daemon.log.contains("uid=65534"))
        // Root (this test) is still served.
        daemon.waitUntilHealthy()
        #expect(try daemon.ctl(["ping"]).status == 0)
    }

    @Test func anAllowedUIDIsServed() throws {
        let daemon = try Daemon(concurrency: 1, controlYAML: "  mode: \"0666\"\n  allow_uids: [65534]\n")
        let asNobody = try pingAsNobody(daemon, supplementaryGroup: nil)
        #expect(asNobody.status == 0, "\(asNobody.stdout) \(asNobody.stderr)")
    }

    @Test func anAllowedSupplementaryGroupIsServed() throws {
        let daemon = try Daemon(concurrency: 1, controlYAML: "  mode: \"0666\"\n  allow_gids: [4242]\n")
        let withGroup = try pingAsNobody(daemon, supplementaryGroup: 4242)
        #expect(withGroup.status == 0, "\(withGroup.stdout) \(withGroup.stderr)")
    }

    @Test func socketFileGetsTheConfiguredMode() throws {
        let daemon = try Daemon(concurrency: 1, controlYAML: "  mode: \"0600\"\n")
        let attributes = try FileManager.default.attributesOfItem(atPath: daemon.socketPath)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
    }

    @Test func aSecondDaemonOnTheSameSocketRefusesToStart() throws {
        let daemon = try Daemon(concurrency: 1)
        let second = try runCommand(Binaries.swiftqd, ["--config", daemon.configPath], timeout: 20)
        #expect(second.status == 1)
        #expect(second.stderr.contains("another process is serving it"))
        daemon.waitUntilHealthy()
        #expect(try daemon.ctl(["ping"]).status == 0)
    }

    /// Runs `swiftqctl ping` as uid/gid 65534 (with one supplementary group, or none) through `setpriv`.
    func pingAsNobody(_ daemon: Daemon, supplementaryGroup: Int?) throws -> CommandResult {
        daemon.waitUntilHealthy()
        let groups = supplementaryGroup.map { "--groups=\($0)" } ?? "--clear-groups"
        return try runCommand(
            "/usr/bin/setpriv",
            ["--reuid=65534", "--regid=65534", groups, Binaries.swiftqctl, "--socket", daemon.socketPath, "ping"]
        )
    }

    func errorCode(_ reply: ControlReply) -> String? {
        if case .failure(let error) = reply.outcome { return error.code.rawValue }
        return nil
    }

    func messageOf(_ reply: ControlReply) -> String {
        if case .failure(let error) = reply.outcome { return error.message }
        return ""
    }
}
