import Foundation
import SwiftqCore
import Testing

extension Python {
    /// Runs event_capture.py (a stock `app.events.Receiver` feeding `celery.events.state.State`) with a request.
    static func eventCapture(_ request: JSONValue, timeout: Double = 120) throws -> JSONValue {
        let result = try runCommand(
            interpreter,
            [scripts + "/event_capture.py", "-"],
            input: Data(request.serialized()),
            timeout: timeout
        )
        guard result.status == 0, let line = result.stdout.split(separator: "\n").last else {
            throw TestSetupError("event_capture.py failed (\(result.status)): \(result.stderr)\n\(result.stdout)")
        }
        return try JSONValue(parsing: String(line))
    }
}

/// Celery's monitoring events from swiftqd, read by Celery's own receiver and state on Redis and RabbitMQ.
@Suite(.serialized) struct EventsTests {
    static let eventsYAML = """
        events:
          enabled: true
          heartbeat_interval: 500ms

        """

    static let calls: [JSONValue] = [
        ["task": "swiftq.add", "args": [2, 3]],
        ["task": "swiftq.fail", "args": ["bad value"], "kwargs": ["exc_type": "ValueError"]],
    ]

    /// What both transports must show: the lifecycle of each task in `State`, Celery's field types, heartbeats at
    /// the interval, and `worker-offline` at the end of a warm shutdown.
    static func check(_ captured: JSONValue, node: String) {
        #expect(captured["online"] == true, "no worker event reached the receiver")
        let ids = captured["ids"]?.arrayValue?.compactMap(\.stringValue) ?? []
        #expect(ids.count == 2)
        guard ids.count == 2 else { return }
        // worker-online went out before the receiver subscribed (pub/sub keeps nothing): its heartbeats show it.
        let add = captured["tasks"]?[ids[0]]
        #expect(add?["state"] == "SUCCESS")
        #expect(add?["name"] == "swiftq.add")
        // The client's `argsrepr` (Celery's `send_task` with a list gives `[2, 3]`).
        #expect(add?["args"] == "[2, 3]")
        #expect(add?["kwargs"] == "{}")
        #expect(add?["result"] == "5")
        #expect((add?["runtime"]?.doubleValue ?? -1) >= 0)
        #expect(add?["received"]?.doubleValue != nil)
        #expect(add?["started"]?.doubleValue != nil)
        #expect(add?["worker"]?.stringValue == node)
        let fail = captured["tasks"]?[ids[1]]
        #expect(fail?["state"] == "FAILURE")
        #expect(fail?["name"] == "swiftq.fail")
        #expect(fail?["exception"] == "ValueError('bad value')")
        #expect(fail?["failed"]?.doubleValue != nil)

        // This node's events only: on the shared RabbitMQ node the `celeryev` exchange also carries the heartbeats
        // of every other test's workers (a worker sends them by default, as Celery's Heart does).
        let events = (captured["events"]?.arrayValue ?? []).filter { $0["values"]?["hostname"]?.stringValue == node }
        func types(_ kind: String) -> [JSONValue] { events.filter { $0["type"]?.stringValue == kind } }
        for kind in ["task-received", "task-started", "task-succeeded", "task-failed", "worker-offline"] {
            #expect(!types(kind).isEmpty, "no \(kind)")
        }
        // Celery's field types: what Python's json gives for what Celery's dispatcher sends.
        let common = ["hostname": "str", "utcoffset": "float", "pid": "int", "clock": "int", "timestamp": "float"]
        for event in events {
            let fields = event["fields"]
            for (key, type) in common {
                #expect(fields?[key]?.stringValue == type, "\(event["type"] ?? "?").\(key)")
            }
        }
        if let received = types("task-received").first?["fields"] {
            for key in ["uuid", "name", "args", "kwargs"] { #expect(received[key] == "str", "task-received.\(key)") }
            #expect(received["retries"] == "int")
            #expect(received["eta"] == "NoneType")
        }
        if let succeeded = types("task-succeeded").first?["fields"] {
            #expect(succeeded["result"] == "str")
            #expect(succeeded["runtime"] == "float")
        }
        if let failed = types("task-failed").first?["fields"] {
            #expect(failed["exception"] == "str")
        }
        if let heartbeat = types("worker-heartbeat").first?["fields"] {
            #expect(heartbeat["freq"] == "float")
            #expect(heartbeat["active"] == "int")
            #expect(heartbeat["processed"] == "int")
            #expect(heartbeat["loadavg"] == "list")
        }
        // The Lamport clock goes forward with every event.
        let clocks = events.compactMap { $0["values"]?["clock"]?.intValue }
        #expect(clocks == clocks.sorted() && Set(clocks).count == clocks.count)
        // Heartbeats at the interval (500 ms), as sent: the events' own timestamps. The receiver's clock
        // (`local_received`) also measures the receiver: on a loaded machine a stalled receiver took two heartbeats
        // at once (gaps 0.0001, 0.48, 0.50 s), which says nothing about the worker, so only their median is checked.
        let heartbeats = types("worker-heartbeat")
        let sent = heartbeats.compactMap { $0["values"]?["timestamp"]?.doubleValue }
        let received = heartbeats.compactMap { $0["local_received"]?.doubleValue }
        #expect(sent.count >= 3 && received.count == sent.count)
        let sentGaps = zip(sent.dropFirst(), sent).map { $0 - $1 }
        let mean = sentGaps.reduce(0, +) / Double(max(1, sentGaps.count))
        #expect(mean > 0.35 && mean < 0.75, "heartbeat gaps as sent \(sentGaps)")
        let receivedGaps = zip(received.dropFirst(), received).map { $0 - $1 }.sorted()
        let median = receivedGaps.isEmpty ? 0 : receivedGaps[receivedGaps.count / 2]
        #expect(median > 0.35 && median < 0.75, "heartbeat gaps as received \(receivedGaps)")
        #expect(types("worker-heartbeat").first?["values"]?["freq"] == 0.5)
        // The warm shutdown ends with worker-offline.
        #expect(captured["offline"] == true)
        #expect(captured["workers"]?[node]?["sw_ident"] == "swiftq")
    }

    @Test func celerysReceiverSeesTheLifecycleOfTasksOnRedis() throws {
        let redis = try RedisServer()
        let daemon = try RedisInteropTests.daemon(broker: redis, extraYAML: Self.eventsYAML)
        let node = try #require(try daemon.stats()["hostname"]?.stringValue)
        let captured = try Python.eventCapture([
            "broker": .string(redis.url), "backend": .string(redis.url(db: 1)), "calls": .array(Self.calls),
            "heartbeats": 3, "terminate_pid": .int(Int64(daemon.pid)),
        ])
        Self.check(captured, node: node)
    }

    /// Many tasks at once: their events go through the transport's bounded buffer in batches (one pipelined round
    /// trip per writer turn), and every one reaches Celery's receiver, in clock order, none dropped.
    @Test func aBurstOfTasksReachesTheReceiverWholeThroughTheBatchedEventPath() throws {
        let redis = try RedisServer()
        let daemon = try RedisInteropTests.daemon(broker: redis, concurrency: 2, extraYAML: Self.eventsYAML)
        let count = 300
        let calls: [JSONValue] = (0..<count).map { ["task": "swiftq.add", "args": [.int(Int64($0)), 1]] }
        let captured = try Python.eventCapture(
            [
                "broker": .string(redis.url), "backend": .string(redis.url(db: 1)), "calls": .array(calls),
                "heartbeats": 1,
            ],
            timeout: 120
        )
        let ids = captured["ids"]?.arrayValue?.compactMap(\.stringValue) ?? []
        #expect(ids.count == count)
        let states = ids.map { captured["tasks"]?[$0]?["state"]?.stringValue ?? "missing" }
        #expect(states.allSatisfy { $0 == "SUCCESS" }, "\(Dictionary(grouping: states) { $0 }.mapValues(\.count))")
        let events = captured["events"]?.arrayValue ?? []
        for kind in ["task-received", "task-started", "task-succeeded"] {
            let seen = events.filter { $0["type"]?.stringValue == kind }.count
            #expect(seen == count, "\(kind): \(seen)")
        }
        let clocks = events.compactMap { $0["values"]?["clock"]?.intValue }
        #expect(clocks == clocks.sorted() && Set(clocks).count == clocks.count)
        let stats = try daemon.stats()["events"]
        #expect(stats?["dropped"] == 0, "\(String(describing: stats))")
        #expect((stats?["sent"]?.intValue ?? 0) >= 3 * count, "\(String(describing: stats))")
        // Each of the Redis transport's connections shows its own state.
        let connections = try daemon.stats()["broker"]?["connections"]
        #expect(connections?["fetch"]?["connected"] == true, "\(String(describing: connections))")
        #expect(connections?["write"]?["connected"] == true, "\(String(describing: connections))")
    }

    @Test func celerysReceiverSeesTheLifecycleOfTasksOnRabbitMQ() throws {
        let node = try RabbitMQNode.shared()
        let redis = try RedisServer()
        let queue = uniqueQueueName()
        let daemon = try RabbitMQInteropTests.daemon(
            broker: node.url,
            backend: redis.url(db: 1),
            queue: queue,
            brokerYAML: Self.eventsYAML,
            // A node name of its own: other tests' daemons on the shared node publish to `celeryev` under the
            // default name meanwhile, and their clocks would interleave with this one's.
            workerYAML: "  hostname: events-\(queue)@test\n"
        )
        let name = try #require(try daemon.stats()["hostname"]?.stringValue)
        #expect(name == "events-\(queue)@test")
        let captured = try Python.eventCapture([
            "broker": .string(node.url), "backend": .string(redis.url(db: 1)), "queue": .string(queue),
            "calls": .array(Self.calls), "heartbeats": 3, "terminate_pid": .int(Int64(daemon.pid)),
        ])
        Self.check(captured, node: name)
    }

    /// Celery's Heart bootstep sends `worker-online`, `worker-heartbeat` and `worker-offline` whether or not task
    /// events are on (only `--without-heartbeat` stops them): with `events.enabled: false` (the default) the worker
    /// is online in Celery's `State`, with heartbeats, and no `task-*` event is sent.
    @Test func workerEventsAreSentWithTaskEventsOffAsCelerysAre() throws {
        let redis = try RedisServer()
        let daemon = try RedisInteropTests.daemon(broker: redis, extraYAML: "events:\n  heartbeat_interval: 500ms\n")
        let node = try #require(try daemon.stats()["hostname"]?.stringValue)
        let captured = try Python.eventCapture([
            "broker": .string(redis.url), "backend": .string(redis.url(db: 1)),
            "calls": [["task": "swiftq.add", "args": [1, 2]]], "heartbeats": 2,
            "terminate_pid": .int(Int64(daemon.pid)),
        ])
        #expect(captured["online"] == true, "no worker event reached the receiver")
        let types = (captured["events"]?.arrayValue ?? []).compactMap { $0["type"]?.stringValue }
        #expect(types.filter { $0 == "worker-heartbeat" }.count >= 2, "\(types)")
        #expect(!types.contains { $0.hasPrefix("task-") }, "\(types)")
        #expect(captured["offline"] == true)
        #expect(captured["workers"]?[node]?["freq"] == 0.5)
    }

    /// `events.heartbeat: false` is Celery's `--without-heartbeat`: with task events off too, nothing is sent.
    @Test func noEventsAreSentWithoutHeartbeatAndTaskEvents() throws {
        let redis = try RedisServer()
        let daemon = try RedisInteropTests.daemon(broker: redis, extraYAML: "events:\n  heartbeat: false\n")
        let results = try Python.celeryClient(
            RedisInteropTests.request(redis, calls: [["task": "swiftq.add", "args": [1, 2]]])
        )
        #expect(results.first?["result"] == 3)
        let events = try daemon.stats()["events"]
        #expect(events?["enabled"] == false)
        #expect(events?["worker_online"] == false)
        #expect(events?["sent"] == 0)
    }

    @Test func theSupervisorSendsWorkerOfflineWhenTheConsumerIsKilled() throws {
        let redis = try RedisServer()
        let daemon = try RedisInteropTests.daemon(broker: redis, extraYAML: Self.eventsYAML)
        let stats = try daemon.stats()
        let node = try #require(stats["hostname"]?.stringValue)
        let consumer = try #require(
            stats["children"]?.arrayValue?.first { $0["role"] == "consumer" }?["pid"]?.intValue
        )
        let captured = try Python.eventCapture([
            "broker": .string(redis.url), "backend": .string(redis.url(db: 1)), "calls": [],
            "heartbeats": 1, "kill_pid": .int(consumer),
        ])
        #expect(captured["offline"] == true, "no worker-offline after the consumer was killed")
        let offline = captured["events"]?.arrayValue?.first { $0["type"] == "worker-offline" }
        #expect(offline?["values"]?["hostname"]?.stringValue == node)
        #expect(offline?["values"]?["pid"]?.intValue == consumer)
        #expect(offline?["fields"]?["timestamp"] == "float")
        // The worker was restarted and is online again.
        #expect(eventually(timeout: 20) { (try? daemon.stats())?["events"]?["worker_online"] == true })
    }
}
