import SwiftqControl
import SwiftqCore
import Testing

@Suite struct LineFramerTests {
    @Test func dripFedBytesYieldTheSameLines() {
        let stream = Array("{\"a\":1}\r\n\n{\"b\":\"x y\"}\nrest".utf8)
        var framer = LineFramer(limit: 64)
        var lines: [[UInt8]] = []
        for byte in stream {
            framer.append([byte])
            while case .line(let line)? = framer.next() { lines.append(line) }
        }
        #expect(lines.map { String(decoding: $0, as: UTF8.self) } == ["{\"a\":1}", "", "{\"b\":\"x y\"}"])
        #expect(framer.pendingByteCount == 4)
    }

    @Test func aPartialLineOverTheLimitIsReportedBeforeItsNewline() {
        var framer = LineFramer(limit: 8)
        framer.append(Array("12345678".utf8))
        #expect(framer.next() == nil)
        framer.append([UInt8(ascii: "9")])
        #expect(framer.next() == .tooLong)
    }

    @Test func aCompleteLineOverTheLimitIsTooLong() {
        var framer = LineFramer(limit: 4)
        framer.append(Array("ok\n123456\n".utf8))
        #expect(framer.next() == .line(Array("ok".utf8)))
        #expect(framer.next() == .tooLong)
    }

    @Test func manyLinesInOneChunk() {
        var framer = LineFramer(limit: 100)
        framer.append(Array(String(repeating: "line\n", count: 2000).utf8))
        var count = 0
        while case .line(let line)? = framer.next() {
            #expect(line == Array("line".utf8))
            count += 1
        }
        #expect(count == 2000)
        #expect(framer.pendingByteCount == 0)
    }
}

@Suite struct ControlRequestTests {
    @Test func parsesAFullRequest() throws {
        let request = try ControlRequest(line: Array(#"{"id":"a-1","command":"stats","arguments":{"x":[1]}}"#.utf8))
        #expect(request.id == "a-1")
        #expect(request.command == "stats")
        #expect(request.arguments["x"] == [1])
    }

    @Test func idAndArgumentsAreOptional() throws {
        let request = try ControlRequest(line: Array(#"{"command":"ping"}"#.utf8))
        #expect(request.id == .null)
        #expect(request.arguments.isEmpty)
    }

    @Test(arguments: [
        ("not json", "invalid_json"),
        ("", "invalid_json"),
        ("[]", "invalid_request"),
        ("\"ping\"", "invalid_request"),
        (#"{"id":3}"#, "invalid_request"),
        (#"{"id":3,"command":7}"#, "invalid_request"),
        (#"{"id":3,"command":"ping","arguments":"x"}"#, "invalid_request"),
    ])
    func rejectsMalformedRequests(line: String, code: String) {
        do {
            _ = try ControlRequest(line: Array(line.utf8))
            Issue.record("accepted \(line)")
        } catch {
            #expect(error.code.rawValue == code)
            #expect(!error.message.isEmpty)
        }
    }

    @Test func keepsTheIdOfAnInvalidRequestForTheErrorReply() {
        do {
            _ = try ControlRequest(line: Array(#"{"id":42,"command":null}"#.utf8))
        } catch {
            #expect(error.id == 42)
        }
    }

    @Test func requestsAndRepliesRoundTripThroughTheirLines() throws {
        let request = ControlRequest(id: 9, command: "shutdown", arguments: ["mode": "cold"])
        #expect(request.line.last == 0x0A)
        #expect(try ControlRequest(line: request.line.dropLast()) == request)

        let success = ControlReply.success(id: 9, ["pong": true])
        #expect(try ControlReply(line: success.line.dropLast()) == success)
        #expect(String(decoding: success.line, as: UTF8.self) == "{\"id\":9,\"ok\":true,\"result\":{\"pong\":true}}\n")

        let failure = ControlReply.failure(id: 9, ControlError(.unknownCommand, "no such command", id: 9))
        #expect(
            String(decoding: failure.line, as: UTF8.self)
                == "{\"id\":9,\"ok\":false,\"error\":{\"code\":\"unknown_command\",\"message\":\"no such command\"}}\n"
        )
        let parsed = try ControlReply(line: failure.line.dropLast())
        guard case .failure(let error) = parsed.outcome else {
            Issue.record("not a failure")
            return
        }
        #expect(error.code == .unknownCommand)
        #expect(error.message == "no such command")
    }

    @Test func aReplyWithoutOkIsInvalid() {
        #expect(throws: ControlError.self) { try ControlReply(line: Array(#"{"id":1}"#.utf8)) }
    }
}
