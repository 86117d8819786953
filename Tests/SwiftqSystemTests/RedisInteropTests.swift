import Foundation
import SwiftqCore
import Testing

/// swiftqd consuming from a real redis-server, driven by a stock Python Celery client.
@Suite(.serialized) struct RedisInteropTests {
    /// A daemon consuming from `broker`, storing results in `backend` (same server unless given).
    static func daemon(
        broker: RedisServer,
        backend: RedisServer? = nil,
        concurrency: Int = 2,
        prefetch: Int = 4,
        queues: String = "celery",
        extraYAML: String = "",
        workerYAMLExtra: String = "",
        controlYAMLExtra: String = "",
        binary: String = Binaries.swiftqd
    ) throws -> Daemon {
        try Daemon(
            concurrency: concurrency,
            extraYAML: """
                broker:
                  url: \(broker.url)
                result_backend:
                  url: \((backend ?? broker).url(db: 1))

                """ + extraYAML,
            controlYAML: controlYAMLExtra,
            workerYAML: "  prefetch_multiplier: \(prefetch)\n  queues: \(queues)\n" + workerYAMLExtra,
            binary: binary
        )
    }

    static func request(_ broker: RedisServer, backend: RedisServer? = nil, calls: [JSONValue], timeout: Int = 20)
        -> JSONValue
    {
        [
            "broker": .string(broker.url), "backend": .string((backend ?? broker).url(db: 1)),
            "timeout": .int(Int64(timeout)), "calls": .array(calls),
        ]
    }

    @Test func aPythonClientGetsResultsComputedBySwiftqd() throws {
        let redis = try RedisServer()
        let daemon = try Self.daemon(broker: redis)
        let nested: JSONValue = ["list": [1, 2.5, "drei", nil, true], "dict": ["ключ": ["深い": "值"]]]
        let big = JSONValue.string(String(repeating: "0123456789abcdef", count: 65536))
        let results = try Python.celeryClient(
            Self.request(
                redis,
                calls: [
                    ["task": "swiftq.add", "args": [2, 3]],
                    ["task": "swiftq.add", "args": [1.5, 2]],
                    ["task": "swiftq.echo", "kwargs": ["value": "héllo ✓ 𝄞"]],
                    ["task": "swiftq.echo", "args": [nested]],
                    ["task": "swiftq.echo", "args": [big]],
                    ["task": "swiftq.ping"],
                ]
            )
        )
        #expect(results.count == 6)
        #expect(results[0]["result"] == 5)
        #expect(results[0]["state"] == "SUCCESS")
        #expect(results[1]["result"] == 3.5)
        #expect(results[2]["result"] == "héllo ✓ 𝄞")
        #expect(results[3]["result"] == nested)
        #expect(results[4]["result"] == big, "the 1 MiB argument did not come back intact")
        #expect(results[5]["result"] == "pong")
        let stats = try daemon.stats()
        #expect(stats["tasks"]?["completed"]?.intValue == 6)
    }

    @Test func failuresAndUnknownTasksAreRaisedInPythonAndTheWorkerKeepsServing() throws {
        let redis = try RedisServer()
        let daemon = try Self.daemon(broker: redis)
        let results = try Python.celeryClient(
            Self.request(
                redis,
                calls: [
                    ["task": "swiftq.fail", "args": ["it broke"]],
                    ["task": "swiftq.fail", "args": ["bad value"], "kwargs": ["exc_type": "ValueError"]],
                    ["task": "no.such.task", "args": [1]],
                    ["task": "swiftq.add", "args": [1, 1]],
                ]
            )
        )
        #expect(results[0]["state"] == "FAILURE")
        #expect(results[0]["exception"]?["type"] == "RuntimeError")
        #expect(results[0]["exception"]?["module"] == "builtins")
        #expect(results[0]["exception"]?["message"] == "it broke")
        #expect(results[1]["exception"]?["type"] == "ValueError")
        #expect(results[1]["exception"]?["message"] == "bad value")
        #expect(results[2]["state"] == "FAILURE")
        #expect(results[2]["exception"]?["type"] == "NotRegistered")
        #expect(results[2]["exception"]?["message"]?.stringValue?.contains("no.such.task") == true)
        #expect(results[3]["result"] == 2)
        let stats = try daemon.stats()
        #expect(stats["tasks"]?["failed"]?.intValue == 3)
        #expect(daemon.log.contains("unregistered task no.such.task"))
        // Nothing is left behind in Redis: every message was acked.
        #expect(try redis.cli(["HLEN", "unacked"]).trimmingCharacters(in: .whitespacesAndNewlines) == "0")
        #expect(try redis.cli(["LLEN", "celery"]).trimmingCharacters(in: .whitespacesAndNewlines) == "0")
    }

    /// The stored meta of an unregistered task is byte for byte what a Python worker stores (but for the id and the
    /// date): both workers get the same kind of message from the same Python client, on one Redis.
    @Test func notRegisteredMetaIsByteIdenticalToAPythonWorkers() throws {
        let redis = try RedisServer()
        let python = try Python.sharedTasksWorker(
            broker: redis.url,
            backend: redis.url(db: 1),
            ledger: redis.url,
            queue: "py"
        )
        defer { python.stop() }
        let daemon = try Self.daemon(broker: redis)
        let sent = try Python.celeryClient(
            Self.request(
                redis,
                calls: [
                    ["task": "no.such.task", "args": [1], "options": ["queue": "py"]],
                    ["task": "no.such.task", "args": [1]],
                ]
            )
        )
        #expect(sent.allSatisfy { $0["exception"]?["type"] == "NotRegistered" }, "\(sent)")
        func stored(_ id: String) throws -> String {
            try redis.cli(["-n", "1", "GET", "celery-task-meta-\(id)"]).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        func normalized(_ meta: String, id: String) -> String {
            // The date differs between the two runs: blank its digits, keep its shape.
            meta.replacingOccurrences(of: id, with: "ID").replacingOccurrences(
                of: #""date_done": "[^"]*""#,
                with: #""date_done": "D""#,
                options: .regularExpression
            )
        }
        let pythonID = try #require(sent[0]["id"]?.stringValue)
        let swiftqID = try #require(sent[1]["id"]?.stringValue)
        let fromPython = try stored(pythonID)
        let fromSwiftq = try stored(swiftqID)
        #expect(fromPython.contains("NotRegistered"))
        #expect(normalized(fromSwiftq, id: swiftqID) == normalized(fromPython, id: pythonID))
        #expect(daemon.log.contains("unregistered task no.such.task"))
    }

    @Test func malformedMessagesAreLoggedCountedAndDroppedWhileGoodOnesRun() throws {
        let redis = try RedisServer()
        let daemon = try Self.daemon(broker: redis)
        let validBody = Data("[[], {}, null]".utf8).base64EncodedString()
        let bad = [
            "this is not json",
            #"["a json array"]"#,
            #"{"body": "%%%not-base64%%%", "content-type": "application/json", "content-encoding": "utf-8", "headers": {"task": "swiftq.ping", "id": "bad-b64"}, "properties": {"delivery_tag": "t1", "body_encoding": "base64", "delivery_info": {"exchange": "", "routing_key": "celery"}}}"#,
            #"{"body": "\#(validBody)", "content-type": "application/json", "content-encoding": "utf-8", "headers": {}, "properties": {"delivery_tag": "t2", "body_encoding": "base64", "delivery_info": {"exchange": "", "routing_key": "celery"}}}"#,
            #"{"body": "\#(validBody)", "content-type": "application/x-python-serialize", "content-encoding": "binary", "headers": {"task": "swiftq.ping", "id": "pickled"}, "properties": {"delivery_tag": "t3", "body_encoding": "base64", "delivery_info": {"exchange": "", "routing_key": "celery"}}}"#,
        ]
        for payload in bad { try redis.cli(["LPUSH", "celery", payload]) }
        let results = try Python.celeryClient(Self.request(redis, calls: [["task": "swiftq.add", "args": [20, 22]]]))
        #expect(results.first?["result"] == 42)
        #expect(
            eventually {
                let rejected = (try? daemon.stats())?["tasks"]?["rejected"]
                return (rejected?.objectValue?.values.compactMap(\.intValue).reduce(0, +) ?? 0) >= 5
            }
        )
        #expect(daemon.log.contains("not a kombu envelope"))
        #expect(daemon.log.contains("application/x-python-serialize"))
        #expect(try redis.cli(["LLEN", "celery"]).trimmingCharacters(in: .whitespacesAndNewlines) == "0")
        #expect(try redis.cli(["HLEN", "unacked"]).trimmingCharacters(in: .whitespacesAndNewlines) == "0")
        // A message whose id could be read gets a FAILURE result under that id.
        let stored = try redis.cli(["-n", "1", "GET", "celery-task-meta-pickled"])
        #expect(stored.contains("FAILURE"))
        #expect(try daemon.ctl(["ping"]).status == 0)
    }

    @Test func higherPriorityMessagesAreTakenFirst() throws {
        let redis = try RedisServer()
        // Queue everything before the worker starts: 5 low-priority (9) then 5 high-priority (0) tasks.
        let calls: [JSONValue] =
            (0..<5).map { ["task": "swiftq.echo", "args": [.string("low-\($0)")], "options": ["priority": 9]] }
            + (0..<5).map { ["task": "swiftq.echo", "args": [.string("high-\($0)")], "options": ["priority": 0]] }
        var request = Self.request(redis, calls: calls)
        if case .object(var object) = request {
            object["wait"] = false
            request = .object(object)
        }
        let sent = try Python.celeryClient(request)
        #expect(sent.count == 10)
        let daemon = try Self.daemon(broker: redis, concurrency: 1, prefetch: 1)
        #expect(eventually(timeout: 20) { (try? daemon.stats())?["tasks"]?["completed"]?.intValue == 10 })
        var finished: [(String, Double)] = []
        for (index, entry) in sent.enumerated() {
            let id = try #require(entry["id"]?.stringValue)
            let meta = try JSONValue(parsing: try redis.cli(["-n", "1", "GET", "celery-task-meta-\(id)"]))
            let done = try #require(meta["date_done"]?.stringValue)
            finished.append((index < 5 ? "low" : "high", try #require(CeleryTimestamp(iso8601: done)).secondsSince1970))
        }
        let order = finished.sorted { $0.1 < $1.1 }.map(\.0)
        #expect(order == Array(repeating: "high", count: 5) + Array(repeating: "low", count: 5), "\(order)")
    }

    @Test func killingTheConsumerWhileTasksAreReservedLosesNothing() throws {
        let redis = try RedisServer()
        let daemon = try Self.daemon(broker: redis, concurrency: 2, prefetch: 4)
        var request = Self.request(
            redis,
            calls: (0..<20).map { _ in ["task": "swiftq.sleep", "args": [0.2]] },
            timeout: 60
        )
        if case .object(var object) = request {
            object["wait"] = false
            request = .object(object)
        }
        let sent = try Python.celeryClient(request)
        // Wait until the consumer holds reserved messages, then kill it.
        #expect(eventually { ((try? daemon.stats())?["tasks"]?["received"]?.intValue ?? 0) >= 4 })
        let consumer = try #require(try daemon.consumerPID())
        kill(consumer, SIGKILL)
        // Every task ends with a result, delivered again by the restarted consumer where needed.
        #expect(
            eventually(timeout: 60) {
                sent.allSatisfy { entry in
                    guard let id = entry["id"]?.stringValue,
                        let text = try? redis.cli(["-n", "1", "GET", "celery-task-meta-\(id)"])
                    else { return false }
                    return text.contains("\"SUCCESS\"")
                }
            }
        )
        #expect(daemon.log.contains("back to the broker") || daemon.log.contains("redelivered"))
        #expect(try redis.cli(["HLEN", "unacked"]).trimmingCharacters(in: .whitespacesAndNewlines) == "0")
    }

    @Test func resultOptionsExtendedStartedIgnoredAndExpiry() throws {
        let redis = try RedisServer()
        let daemon = try Self.daemon(
            broker: redis,
            extraYAML: "  expires: 1h\n  extended: true\n",
            workerYAMLExtra: "  track_started: true\n"
        )
        var request = Self.request(
            redis,
            calls: [
                ["task": "swiftq.sleep", "args": [1.5]],
                ["task": "swiftq.add", "args": [1, 2], "options": ["ignore_result": true]],
                ["task": "swiftq.echo", "args": ["x"]],
            ]
        )
        if case .object(var object) = request {
            object["wait"] = false
            request = .object(object)
        }
        let sent = try Python.celeryClient(request)
        let sleepID = try #require(sent[0]["id"]?.stringValue)
        // STARTED is stored while the task runs, with the pid and node of the worker.
        var started: JSONValue?
        #expect(
            eventually {
                started = try? JSONValue(parsing: try redis.cli(["-n", "1", "GET", "celery-task-meta-\(sleepID)"]))
                return started?["status"] == "STARTED"
            }
        )
        #expect(started?["result"]?["hostname"]?.stringValue?.hasPrefix("celery@") == true)
        #expect(started?["result"]?["pid"]?.intValue != nil)
        #expect(eventually { (try? daemon.stats())?["tasks"]?["completed"]?.intValue == 3 })
        let echoID = try #require(sent[2]["id"]?.stringValue)
        let meta = try JSONValue(parsing: try redis.cli(["-n", "1", "GET", "celery-task-meta-\(echoID)"]))
        #expect(meta["status"] == "SUCCESS")
        #expect(meta["name"] == "swiftq.echo")
        #expect(meta["args"] == ["x"])
        #expect(meta["queue"] == "celery")
        #expect(meta["worker"]?.stringValue?.hasPrefix("celery@") == true)
        let ttl = Int(
            try redis.cli(["-n", "1", "TTL", "celery-task-meta-\(echoID)"]).trimmingCharacters(
                in: .whitespacesAndNewlines
            )
        )
        #expect(ttl.map { $0 > 3500 && $0 <= 3600 } == true, "TTL \(String(describing: ttl))")
        // ignore_result: nothing stored at all.
        let ignoredID = try #require(sent[1]["id"]?.stringValue)
        #expect(try redis.cli(["-n", "1", "EXISTS", "celery-task-meta-\(ignoredID)"]).hasPrefix("0"))
    }

    @Test func countdownDelaysAndExpiredTasksAreRevoked() throws {
        let redis = try RedisServer()
        let daemon = try Self.daemon(broker: redis)
        let started = Date()
        let results = try Python.celeryClient(
            Self.request(redis, calls: [["task": "swiftq.echo", "args": ["later"], "options": ["countdown": 2]]])
        )
        #expect(results.first?["result"] == "later")
        #expect(Date().timeIntervalSince(started) >= 1.9, "the countdown was not honoured")
        // An already expired task is revoked, not run.
        let expired = try Python.celeryClient(
            Self.request(redis, calls: [["task": "swiftq.echo", "args": ["never"], "options": ["expires": -5]]])
        )
        #expect(expired.first?["exception"]?["type"] == "TaskRevokedError")
        #expect(expired.first?["state"] == "REVOKED")
        #expect(try daemon.stats()["tasks"]?["rejected"]?["expired"] == 1)
    }
}
