import OrderedCollections
import SwiftqCore
import SwiftqTasks
import Testing

@testable import SwiftqConsumer
@testable import SwiftqPool
@testable import SwiftqWorker

/// The consumer ↔ pool child messages: every one survives its encoder and decoder; malformed ones are typed errors.
@Suite struct PoolMessagesTests {
    static func roundTrip(_ value: JSONValue) throws -> JSONValue {
        try JSONValue(parsing: String(decoding: value.serialized(), as: UTF8.self))
    }

    @Test func everyRequestRoundTrips() throws {
        let requests: [PoolRequest] = [
            .execute(PoolJob(id: "a", name: "swiftq.add", args: [1, 2.5], kwargs: ["x": ["y": nil]])),
            .execute(
                PoolJob(
                    id: "b",
                    name: "shop.report",
                    args: [],
                    kwargs: [:],
                    exec: .init(argv: ["/bin/report", "--fast"], timeout: 2.5)
                )
            ),
            .execute(
                PoolJob(id: "c", name: "t", args: [], kwargs: [:], softTimeLimit: 1.5, hardTimeLimit: nil, retries: 2)
            ),
            .logLevel(.debug),
        ]
        for request in requests {
            #expect(try PoolRequest(decoding: Self.roundTrip(request.json)) == request)
        }
    }

    /// The request context goes with the job, body or not, and the child reads it back as the task's request.
    @Test func theRequestContextReachesTheChild() throws {
        var request = TaskRequest()
        request.rootID = "r1"
        request.parentID = "p1"
        request.group = "g1"
        request.groupIndex = 2
        request.hostname = "celery@host"
        request.deliveryInfo = ["queue": "celery", "redelivered": false]
        request.headers = ["x-test-header": "test-value", "mystamp": ["a", 1]]
        var job = PoolJob(id: "t-1", name: "swiftq.echo", args: [1], kwargs: [:])
        job.request = request
        job.body = Array(#"[[1], {}, {}]"#.utf8)
        guard
            case .execute(let decoded) = try PoolRequest(
                decoding: JSONValue(parsing: PoolRequest.execute(job).serialized)
            )
        else {
            Issue.record("not an execute request")
            return
        }
        #expect(decoded.request == request)
    }

    /// The child leaves the request as text (``PoolJob/requestText``) and the task decodes the same request from it
    /// when it reads it; without a request there is no text and the task sees an empty one.
    @Test func theChildDefersTheRequestUntilTheTaskReadsIt() throws {
        var request = TaskRequest()
        request.rootID = "r\"}1"
        request.groupIndex = 2
        request.deliveryInfo = ["queue": "celery", "redelivered": false, "priority": nil]
        request.headers = ["x-test-header": "{[\"]}", "mystamp": ["a", 1.5, [:]]]
        request.properties = ["app_id": "1234", "priority": 3]
        var job = PoolJob(id: "t-1", name: "swiftq.echo", args: [1], kwargs: [:])
        job.request = request
        job.body = Array(#"[[1], {}, {}]"#.utf8)
        let parsed = try JSONValue.parsing(PoolRequest.execute(job).serialized, deferring: ["request"])
        guard case .execute(let decoded) = try PoolRequest(decoding: parsed.value, requestText: parsed.raw["request"])
        else {
            Issue.record("not an execute request")
            return
        }
        let text = try #require(decoded.requestText, "kept as the text that arrived, not decoded")
        #expect(TaskRequest.Source.text(text).request == request)
        var invocation = TaskInvocation(id: decoded.id, name: decoded.name, args: decoded.args)
        invocation.requestSource = .text(text)
        #expect(invocation.request == request)
        #expect(decoded.args == [1])

        job.request = nil
        let bare = try JSONValue.parsing(PoolRequest.execute(job).serialized, deferring: ["request"])
        guard case .execute(let plain) = try PoolRequest(decoding: bare.value, requestText: bare.raw["request"]) else {
            Issue.record("not an execute request")
            return
        }
        #expect(plain.requestText == nil && plain.request == nil)
        #expect(TaskRequest.Source.text(Array("not json".utf8)).request == TaskRequest())
    }

    /// A job that holds what its request is built from (the consumer's) sends no request to the child, which asks
    /// for it if the task reads it; an exec task's job sends it, built, since its program always gets it. The request
    /// frames both ways survive their encoders and decoders, the child's deferred parse included.
    @Test func aRequestFromItsContextTravelsOnlyWhenAskedForOrForExecTasks() throws {
        var message = TaskMessage(id: "t-1", name: "swiftq.echo", args: [1], kwargs: [:])
        message.rootID = "r-1"
        message.headers = ["id": "t-1", "task": "swiftq.echo", "tenant": "acme"]
        let context = TaskRequest.Context(
            message: message,
            queue: "celery",
            hostname: "celery@host",
            softTimeLimit: 1,
            timeLimit: 2
        )
        var job = PoolJob(id: "t-1", name: "swiftq.echo", args: [1], kwargs: [:])
        job.body = Array(#"[[1], {}, {}]"#.utf8)
        job.requestSource = .context(context)
        #expect(job.request == context.request)
        #expect(context.request.rootID == "r-1" && context.request.hostname == "celery@host")
        #expect(context.request.headers == ["tenant": "acme"])
        #expect(context.request.timeLimit == 2 && context.request.softTimeLimit == 1)
        let frame = try JSONValue(parsing: PoolRequest.execute(job).serialized)
        #expect(frame["request"] == nil, "\(frame)")
        #expect(PoolRequest.execute(job).json["request"] == nil)

        job.exec = PoolJob.ExecSpec(argv: ["/bin/true"], timeout: nil)
        let parsed = try JSONValue.parsing(PoolRequest.execute(job).serialized, deferring: ["request"])
        guard case .execute(let decoded) = try PoolRequest(decoding: parsed.value, requestText: parsed.raw["request"])
        else {
            Issue.record("not an execute request")
            return
        }
        #expect(decoded.request == context.request)
        #expect(PoolRequest.execute(job).json["request"] == context.request.json)

        let answers: [PoolRequest] = [
            .requestContext(id: "t-1", request: context.request), .requestContext(id: "t-2", request: nil),
        ]
        for answer in answers {
            #expect(try PoolRequest(decoding: Self.roundTrip(answer.json)) == answer)
            #expect(answer.serialized == answer.json.serialized())
            let deferred = try JSONValue.parsing(answer.serialized, deferring: ["request"])
            #expect(try PoolRequest(decoding: deferred.value, requestText: deferred.raw["request"]) == answer)
        }
        let ask = PoolReply.requestContext(id: "t-1")
        #expect(try PoolReply(decoding: Self.roundTrip(ask.json)) == ask)
        #expect(ask.json == ["type": "request", "id": "t-1"])
    }

    /// A remote request is asked for once, on the first read; once its task has returned (closed), it is not asked
    /// for any more (a thread the task left behind gets an empty request, not the child's channel).
    @Test func aRemoteRequestIsAskedForOnceAndNeverAfterItsTaskReturned() {
        final class Asked: @unchecked Sendable { var count = 0 }
        let asked = Asked()
        var request = TaskRequest()
        request.rootID = "r-1"
        let remote = TaskRequest.Remote {
            asked.count += 1
            return request
        }
        #expect(TaskRequest.Source.remote(remote).request == request)
        #expect(TaskRequest.Source.remote(remote).request == request)
        #expect(asked.count == 1)
        remote.close()
        #expect(remote.request == request, "what was fetched stays")
        let late = TaskRequest.Remote {
            asked.count += 1
            return request
        }
        late.close()
        #expect(late.request == TaskRequest())
        #expect(asked.count == 1)
    }

    /// The frame and request writers that skip building objects write exactly what the object encoders write.
    @Test func theDirectWritersMatchTheObjectEncoders() throws {
        for value: JSONValue in [nil, 5, 2.5, "x\"é", [1, ["a": [nil, true]]], [:]] {
            let reply = PoolReply.result(id: "t-\"1", outcome: .success(value), runtime: 0.000123)
            #expect(reply.serialized == reply.json.serialized(), "\(value)")
        }
        let failure = PoolReply.result(id: "t-1", outcome: .failure(.typeError("no")), runtime: 1)
        #expect(failure.serialized == failure.json.serialized())
        var request = TaskRequest()
        #expect(
            {
                var bytes: [UInt8] = []; request.serializeJSON(into: &bytes); return bytes
            }() == request.json.serialized()
        )
        request.rootID = "r\"1"
        request.groupIndex = 0
        request.eta = "2026-12-05T12:00:00.000000+00:00"
        request.deliveryInfo = ["queue": "celery", "redelivered": true]
        request.timeLimit = 2.5
        request.softTimeLimit = 1
        request.headers = ["é": [1, nil]]
        var bytes: [UInt8] = []
        request.serializeJSON(into: &bytes)
        #expect(bytes == request.json.serialized())
        // A chord header member's request carries the chord's body (what `addToChord` checks); others leave it out.
        #expect(request.json["chord"] == nil)
        request.chord = ["task": "t.body", "args": [], "options": ["task_id": "b1"]]
        bytes = []
        request.serializeJSON(into: &bytes)
        #expect(bytes == request.json.serialized())
        #expect(TaskRequest(json: try JSONValue(parsing: bytes)) == request)

        var job = PoolJob(id: "t-1", name: "exec.run", args: [1], kwargs: ["k": 2], softTimeLimit: 0.5, retries: 3)
        job.request = request
        job.exec = PoolJob.ExecSpec(argv: ["/bin/true", "x"], timeout: 4)
        job.body = Array(#"[[1], {"k": 2}, {}]"#.utf8)
        guard case .object(var fields) = PoolRequest.execute(job).json else {
            Issue.record("not an object")
            return
        }
        fields["args"] = nil
        fields["kwargs"] = nil
        fields["body"] = try JSONValue(parsing: job.body)
        #expect(try JSONValue(parsing: PoolRequest.execute(job).serialized) == .object(fields))
        var expected = JSONValue.object(fields).serialized()
        expected.removeLast(#"[[1],{"k":2},{}]}"#.utf8.count)
        expected.append(contentsOf: job.body)
        expected.append(UInt8(ascii: "}"))
        #expect(PoolRequest.execute(job).serialized == expected)
    }

    /// `self.request.headers` is what the client added: Celery's own headers are left out, none left is nil.
    @Test func theRequestHeadersAreTheCustomOnes() {
        let message = TaskMessage(
            id: "t-1",
            name: "swiftq.echo",
            retries: 1,
            extraHeaders: ["x-test-header": "test-value", "stamped_headers": ["s"], "s": "v"]
        )
        #expect(TaskRequest.customHeaders(message.headers) == ["x-test-header": "test-value", "s": "v"])
        #expect(TaskRequest.customHeaders(TaskMessage(id: "t-2", name: "swiftq.echo").headers) == nil)
    }

    /// The message body reaches the child as the bytes that arrived: spliced into the frame, not encoded again
    /// (`2.50`, `1e3` and `\u00e9` would each be written differently by an encoder), and decoded there into the
    /// same arguments.
    @Test func theTaskBodyIsPassedThroughAsItArrived() throws {
        let body = Array(#"[[1, 2.50, "\u00e9"], {"k": 1e3, "n": null}, {"callbacks": null}]"#.utf8)
        let message = try TaskMessage.decode(
            contentType: "application/json",
            contentEncoding: "utf-8",
            headers: ["task": "swiftq.echo", "id": "t-1"],
            properties: [:],
            body: body,
            redelivered: false
        )
        #expect(message.body == body)
        var job = PoolJob(id: "t-1", name: "swiftq.echo", args: message.args, kwargs: message.kwargs)
        job.body = message.body
        let frame = PoolRequest.execute(job).serialized
        #expect(
            String(decoding: frame, as: UTF8.self).hasSuffix(#","body":"# + String(decoding: body, as: UTF8.self) + "}")
        )
        #expect(!String(decoding: frame, as: UTF8.self).contains(#""args""#), "arguments encoded a second time")
        guard case .execute(let decoded) = try PoolRequest(decoding: JSONValue(parsing: frame)) else {
            Issue.record("not an execute request")
            return
        }
        #expect(decoded.id == "t-1" && decoded.name == "swiftq.echo")
        #expect(decoded.args == [1, 2.5, "é"])
        #expect(decoded.kwargs == ["k": 1000.0, "n": nil])
        // A body whose arguments Python would refuse is answered as the task's TypeError, as before.
        let bad = Array(#"{"type":"execute","id":"x","task":"swiftq.echo","body":["no", {}, {}]}"#.utf8)
        #expect(throws: PoolRequestError.badArguments(id: "x", .typeError("args must be a list, got string"))) {
            try PoolRequest(decoding: JSONValue(parsing: bad))
        }
        // A job built in code (no body) is encoded as before.
        let plain = PoolRequest.execute(PoolJob(id: "p", name: "swiftq.add", args: [1, 2], kwargs: [:]))
        #expect(plain.serialized == plain.json.serialized())
    }

    @Test func everyReplyRoundTrips() throws {
        var limit = TaskFailure.timeLimitExceeded(seconds: 1)
        limit.traceback = "Traceback: …"
        let replies: [PoolReply] = [
            .hello(pid: 4242, slot: 3),
            .result(id: "a", outcome: .success(["ü": [1, nil, true]]), runtime: 0.25),
            .result(id: "b", outcome: .failure(.valueError("bad")), runtime: 0),
            .result(id: "c", outcome: .failure(limit), runtime: 1),
            .result(id: "d", outcome: .retry(TaskRetry()), runtime: 0.5),
            .result(id: "f", outcome: .reject(TaskReject("nope", requeue: true)), runtime: 0.5),
            .result(id: "g", outcome: .reject(TaskReject()), runtime: 0),
            .result(id: "h", outcome: .ignore, runtime: 0.25),
            .result(
                id: "j",
                outcome: .retry(TaskRetry(countdown: 0, args: [2, 3], kwargs: ["label": "kept"])),
                runtime: 0
            ),
            .result(
                id: "i",
                outcome: .replace(["task": "t.add", "args": [1, 2], "options": ["link": [["task": "t.echo"]]]]),
                runtime: 0.125
            ),
            .result(
                id: "e",
                outcome: .retry(
                    TaskRetry(
                        countdown: 2.5,
                        eta: CeleryTimestamp(iso8601: "2026-12-05T10:00:00.250000+00:00"),
                        maxRetries: 7,
                        cause: TaskFailure(type: "IOError", message: "disk", module: "builtins", traceback: "tb")
                    )
                ),
                runtime: 0.5
            ),
            .error(message: "unknown message type \"teleport\"", id: .null),
        ]
        for reply in replies {
            #expect(try PoolReply(decoding: Self.roundTrip(reply.json)) == reply)
        }
    }

    @Test func requestsThatCannotRunAreTypedErrors() {
        func failure(_ message: JSONValue) -> PoolRequestError? {
            do {
                _ = try PoolRequest(decoding: message)
                return nil
            } catch {
                return error
            }
        }
        #expect(
            failure(["type": "execute", "id": 5])
                == .malformed(.init(type: "execute", problem: .wrongType(field: "id", expected: "a string")), id: 5)
        )
        #expect(
            failure(["type": "execute", "id": "x"])
                == .malformed(.init(type: "execute", problem: .missingField("task")), id: "x")
        )
        #expect(failure(["type": "teleport"]) == .malformed(.init(type: "teleport", problem: .unknownType), id: .null))
        #expect(
            failure(["type": "log_level", "level": "loud"])
                == .malformed(
                    .init(type: "log_level", problem: .wrongType(field: "level", expected: "a log level")),
                    id: .null
                )
        )
        #expect(failure("just text") == .malformed(.init(type: nil, problem: .notAnObject), id: .null))
        // Well-formed but with arguments Python would refuse: answered as the task's TypeError.
        #expect(
            failure(["type": "execute", "id": "x", "task": "swiftq.echo", "args": "notalist"])
                == .badArguments(id: "x", .typeError("args must be a list, got string"))
        )
        #expect(
            failure(["type": "execute", "id": "x", "task": "swiftq.echo", "kwargs": [1]])
                == .badArguments(id: "x", .typeError("kwargs must be a dict, got array"))
        )
    }

    @Test func malformedRepliesAreTypedErrors() {
        func failure(_ message: JSONValue) -> ChannelDecodeError? {
            do {
                _ = try PoolReply(decoding: message)
                return nil
            } catch {
                return error
            }
        }
        #expect(failure(["type": "hello", "pid": 1]) == .init(type: "hello", problem: .missingField("slot")))
        #expect(
            failure(["type": "result", "id": "a", "state": "MAYBE"])
                == .init(
                    type: "result",
                    problem: .wrongType(
                        field: "state",
                        expected: "\"SUCCESS\", \"FAILURE\", \"RETRY\", \"REJECT\", \"IGNORED\" or \"REPLACED\""
                    )
                )
        )
        #expect(
            failure(["type": "result", "id": "a", "state": "SUCCESS"])
                == .init(type: "result", problem: .missingField("result"))
        )
    }
}
