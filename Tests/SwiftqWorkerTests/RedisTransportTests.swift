import Foundation
import OrderedCollections
import SwiftqCore
import SwiftqRedis
import Testing

@testable import SwiftqConsumer
@testable import SwiftqWorker

/// Pure parts of the transport contract: envelopes for publishes, pidbox requests.
@Suite struct SettlementEncodingTests {
    @Test func anOutboundMessageIsAKombuEnvelopeThatRoutesBackToItsQueue() throws {
        var message = OutboundMessage(exchange: "", routingKey: "retry-queue", body: Array(#"[[1], {}, {}]"#.utf8))
        message.headers = ["id": "abc", "task": "tasks.add"]
        message.priority = 6
        message.correlationID = "abc"
        let envelope = try RedisEnvelope.decode(message.redisEnvelope(deliveryTag: "tag-1"))
        #expect(envelope.body == message.body)
        #expect(envelope.routingKey == "retry-queue")
        #expect(envelope.exchange == "")
        #expect(envelope.priority == 6)
        #expect(envelope.deliveryTag == "tag-1")
        #expect(envelope.headers["task"] == "tasks.add")
        #expect(envelope.properties["delivery_mode"] == 2)
    }

    /// The reserve script reads the tag of kombu's layout with a pattern, without decoding the envelope: a payload
    /// that ends the way the pattern reads but is not JSON is recorded under that tag, and must come to the loop as
    /// undecodable under it, which rejects it (acks it away) instead of leaving it in `unacked`.
    @Test func aRecordedPayloadThatIsNotJSONIsUndecodableUnderItsTag() {
        let payload =
            #"{"body": W10=, "properties": {"delivery_info": {"exchange": "", "routing_key": "q"}, "#
            + #""delivery_tag": "t"}}"#
        let reserved = ReservedMessage(queueKey: "q", queue: "q", payload: Array(payload.utf8), deliveryTag: "t")
        guard case .undecodable(_, let tag, let queue) = RedisTransport.inbound(reserved) else {
            Issue.record("not undecodable: \(RedisTransport.inbound(reserved))")
            return
        }
        #expect(tag == "t")
        #expect(queue == "q")
    }

    @Test func aPidboxEnvelopeIsAControlDelivery() throws {
        let body: JSONValue = [
            "method": "ping", "arguments": [:], "destination": nil, "pattern": nil, "matcher": nil,
            "ticket": "t-1", "reply_to": ["exchange": "reply.celery.pidbox", "routing_key": "r-1"],
        ]
        let request = OutboundMessage(
            exchange: "celery.pidbox",
            exchangeType: .fanout,
            routingKey: "",
            body: body.serialized()
        )
        let delivery = try #require(
            RedisTransport.control(request.redisEnvelope(deliveryTag: "d"), source: "/0.celery.pidbox")
        )
        #expect(delivery.body["method"] == "ping")
        #expect(delivery.body["reply_to"]?["routing_key"] == "r-1")
        #expect(delivery.source == "/0.celery.pidbox")
        #expect(RedisTransport.control(Array("not json".utf8), source: "x") == nil)
        #expect(ControlDelivery(json: Array(#"{"id": 1}"#.utf8), source: "x") == nil)
    }

    @Test func incarnationIDsAreRandomHex() {
        let first = randomHex()
        #expect(first.count == 32)
        #expect(first.allSatisfy { $0.isHexDigit })
        #expect(first != randomHex())
    }
}

/// The Redis transport's settlement plans against a private redis-server: publishes, then the result, then the
/// ack; a publish that cannot be routed stops its plan with the message still unacked.
@Suite(.serialized) struct RedisTransportTests {
    final class Server {
        let directory: String
        let socket: String
        let process = Process()

        init() throws {
            var template = Array("/tmp/swiftq-transport-XXXXXX".utf8CString)
            guard let made = mkdtemp(&template) else { throw CancellationError() }
            directory = String(cString: made)
            socket = directory + "/redis.sock"
            process.executableURL = URL(fileURLWithPath: "/usr/bin/redis-server")
            process.arguments = [
                "--port", "0", "--unixsocket", socket, "--save", "", "--appendonly", "no", "--dir", directory,
            ]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            for _ in 0..<100 {
                if (try? RedisConnection(url: url(0), connectTimeout: .seconds(1), commandTimeout: .seconds(1))) != nil
                {
                    return
                }
                usleep(50_000)
            }
        }

        func url(_ database: Int) -> RedisURL { RedisURL(endpoint: .unix(path: socket), database: database) }

        func connect(_ database: Int = 0) throws -> RedisConnection {
            try RedisConnection(url: url(database), connectTimeout: .seconds(2), commandTimeout: .seconds(5))
        }

        deinit {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            try? FileManager.default.removeItem(atPath: directory)
        }
    }

    /// Waits for events until `done` says so (at most 10 s); returns all seen.
    static func events(
        _ transport: RedisTransport,
        until done: ([BrokerEvent]) -> Bool
    ) -> [BrokerEvent] {
        var seen: [BrokerEvent] = []
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            seen += transport.events.drain()
            if done(seen) { break }
            usleep(20_000)
        }
        return seen
    }

    static func delivered(_ events: [BrokerEvent]) -> [String] {
        events.flatMap { event -> [String] in
            guard case .delivered(let messages) = event else { return [] }
            return messages.compactMap { message in
                if case .task(_, let tag, _) = message { return tag }
                return nil
            }
        }
    }

    static func settled(_ events: [BrokerEvent]) -> [String] {
        events.flatMap { event -> [String] in
            guard case .settled(let tags, _) = event else { return [] }
            return tags
        }
    }

    /// A transport consuming `in` on `server` (results in database 1), not started.
    static func transport(_ server: Server, node: String) throws -> RedisTransport {
        try RedisTransport(
            broker: .server(server.url(0)),
            backend: .server(server.url(1)),
            queues: ["in"],
            node: node,
            resultExpires: nil,
            visibilityTimeout: .seconds(3600)
        )
    }

    func run(_ body: (Server, RedisTransport, RedisConnection) throws -> Void) throws {
        let server = try Server()
        let transport = try Self.transport(server, node: "plans@test")
        transport.start()
        defer { transport.stop(restoreHeld: false, timeout: .seconds(5)) }
        let client = try server.connect()
        try client.command("LPUSH", "in", RedisArgument(envelope(id: "task-1")))
        transport.grant(1)
        let tags = Self.delivered(Self.events(transport) { !Self.delivered($0).isEmpty })
        #expect(tags.count == 1)
        try body(server, transport, client)
    }

    func envelope(id: String) -> [UInt8] {
        var message = OutboundMessage(exchange: "", routingKey: "in", body: Array(#"[[], {}, {}]"#.utf8))
        message.headers = ["lang": "py", "task": "swiftq.add", "id": .string(id)]
        return message.redisEnvelope(deliveryTag: id + "-tag")
    }

    /// The fetcher sends the next reserve while it decodes a whole batch: the credit is taken when a reserve is
    /// sent and what it did not find given back, so exactly what was granted is delivered, each message once, across
    /// batches of 64 and a short last one; more credit delivers the rest.
    @Test func reservesSentAheadTakeExactlyTheCreditGranted() throws {
        let server = try Server()
        let transport = try Self.transport(server, node: "credit@test")
        let client = try server.connect()
        let count = 300
        _ = try client.pipeline((0..<count).map { ["LPUSH", "in", RedisArgument(envelope(id: "t\($0)"))] })
        transport.start()
        defer { transport.stop(restoreHeld: false, timeout: .seconds(5)) }
        transport.grant(130)
        var seen = Self.events(transport) { Self.delivered($0).count >= 130 }
        usleep(300_000)
        seen += transport.events.drain()
        #expect(Self.delivered(seen).count == 130)
        #expect(try client.command("LLEN", "in").integer == Int64(count - 130))
        transport.grant(count - 130 + 10)
        let before = seen
        seen += Self.events(transport) { Self.delivered(before + $0).count >= count }
        let tags = Self.delivered(seen)
        #expect(tags.count == count)
        #expect(Set(tags) == Set((0..<count).map { "t\($0)-tag" }))
        #expect(try client.command("LLEN", "in").integer == 0)
        // The 10 left over are still there: a message pushed now is delivered.
        try client.command("LPUSH", "in", RedisArgument(envelope(id: "late")))
        #expect(Self.delivered(Self.events(transport) { Self.delivered($0) == ["late-tag"] }) == ["late-tag"])
    }

    /// A delivery given back (`restore`: the window shrank under it) goes to the head of its queue, next in line,
    /// marked redelivered, and is reported settled.
    @Test func aRestoredDeliveryIsNextInLine() throws {
        try run { server, transport, client in
            try client.command("LPUSH", "in", RedisArgument(envelope(id: "behind")))
            transport.settle([Settlement(deliveryTag: "task-1-tag", taskID: "task-1", disposition: .restore)])
            let settled = Self.settled(Self.events(transport) { Self.settled($0) == ["task-1-tag"] })
            #expect(settled == ["task-1-tag"])
            let head = try #require(try client.command("LINDEX", "in", "-1").bytes)
            let value = try JSONValue(parsing: head)
            #expect(value["headers"]?["id"] == "task-1")
            #expect(value["headers"]?["redelivered"] == true)
            #expect(try client.command("LLEN", "in").integer == 2)
            #expect(try client.command("HLEN", "unacked").integer == 0)
        }
    }

    @Test func publishesThenTheResultThenTheAck() throws {
        try run { server, transport, client in
            transport.settle(
                Settlement(
                    publishes: [OutboundMessage(exchange: "", routingKey: "out", body: Array("retry".utf8))],
                    result: StoredResult(taskID: "task-1", meta: Array(#"{"status": "RETRY"}"#.utf8)),
                    deliveryTag: "task-1-tag",
                    taskID: "task-1"
                )
            )
            let events = Self.events(transport) { Self.settled($0).contains("task-1-tag") }
            #expect(Self.settled(events) == ["task-1-tag"])
            let pushed = try client.command("LRANGE", "out", "0", "-1").array ?? []
            #expect(pushed.count == 1)
            let published = try RedisEnvelope.decode(try #require(pushed.first?.bytes))
            #expect(published.body == Array("retry".utf8))
            #expect(try server.connect(1).command("GET", "celery-task-meta-task-1").string == #"{"status": "RETRY"}"#)
            #expect(try client.command("HLEN", "unacked").integer == 0)
        }
    }

    /// Celery 5.7's revoke of tasks this worker does not hold: REVOKED where nothing started them, the state of one
    /// another worker started (STARTED, a custom PROGRESS) or finished kept; stored before the same batch's reply.
    @Test func aRevokeMarksOnlyTasksNobodyStartedAsRevoked() throws {
        try run { server, transport, client in
            let backend = try server.connect(1)
            let stored = [("started", "STARTED"), ("progress", "PROGRESS"), ("done", "SUCCESS"), ("retry", "RETRY")]
            for (id, status) in stored {
                let meta = #"{"status": "\#(status)"}"#
                try backend.command("SET", RedisArgument("celery-task-meta-" + id), RedisArgument(meta))
            }
            var revoke = Settlement(disposition: .none)
            let now = CeleryTimestamp.now
            revoke.revokedUnlessStarted = ["started", "progress", "done", "retry", "new"].map {
                RevokedResults.result(taskID: $0, now: now)
            }
            let reply = OutboundMessage(exchange: "", routingKey: "replies", body: Array("ok".utf8))
            transport.settle([revoke, Settlement(publishes: [reply], disposition: .none)])
            let deadline = ContinuousClock.now + .seconds(10)
            while try client.command("LLEN", "replies").integer == 0, ContinuousClock.now < deadline { usleep(20_000) }
            func status(_ id: String) throws -> String? {
                let bytes = try backend.command("GET", RedisArgument("celery-task-meta-" + id)).bytes
                return try bytes.flatMap { try JSONValue(parsing: $0)["status"]?.stringValue }
            }
            // The reply is out, so the revoke's results are stored.
            #expect(try client.command("LLEN", "replies").integer == 1)
            #expect(try status("new") == "REVOKED")
            #expect(try status("retry") == "REVOKED")
            #expect(try status("started") == "STARTED")
            #expect(try status("progress") == "PROGRESS")
            #expect(try status("done") == "SUCCESS")
        }
    }

    /// The same next to RabbitMQ: the result writer stores the revoke's results, then hands the plan back emptied.
    @Test func theResultWriterMarksOnlyTasksNobodyStartedAsRevoked() throws {
        let server = try Server()
        let backend = try server.connect(1)
        try backend.command("SET", "celery-task-meta-started", RedisArgument(#"{"status": "STARTED"}"#))
        final class Forwarded: @unchecked Sendable {
            let lock = NSLock()
            var plans: [Settlement] = []
        }
        let forwarded = Forwarded()
        let writer = ResultWriter(
            url: .server(server.url(1)),
            expires: nil,
            forward: { plans, _ in forwarded.lock.withLock { forwarded.plans += plans } },
            report: { _ in }
        )
        writer.start()
        defer { writer.stop(timeout: .seconds(5)) }
        var revoke = Settlement(disposition: .none)
        revoke.revokedUnlessStarted = ["started", "new"].map { RevokedResults.result(taskID: $0, now: .now) }
        writer.post([revoke])
        let deadline = ContinuousClock.now + .seconds(10)
        while forwarded.lock.withLock({ forwarded.plans.isEmpty }), ContinuousClock.now < deadline { usleep(20_000) }
        let plans = forwarded.lock.withLock { forwarded.plans }
        #expect(plans.count == 1)
        #expect(plans.first?.revokedUnlessStarted.isEmpty == true)
        let stored = try ["new", "started"].map { id in
            try backend.command("GET", RedisArgument("celery-task-meta-" + id)).bytes
                .map { String(decoding: $0, as: UTF8.self) } ?? ""
        }
        #expect(stored[0].contains(#""status": "REVOKED""#))
        #expect(stored[1] == #"{"status": "STARTED"}"#)
    }

    @Test func anUnroutablePublishStopsThePlanAndLeavesTheMessageUnacked() throws {
        try run { server, transport, client in
            transport.settle(
                Settlement(
                    publishes: [OutboundMessage(exchange: "nobody-bound", routingKey: "x", body: Array("lost".utf8))],
                    result: StoredResult(taskID: "task-1", meta: Array(#"{"status": "RETRY"}"#.utf8)),
                    deliveryTag: "task-1-tag",
                    taskID: "task-1"
                )
            )
            let events = Self.events(transport) { seen in
                seen.contains { event in
                    if case .notice(let text) = event { return text.contains("stopped") }
                    return false
                }
            }
            #expect(Self.settled(events).isEmpty)
            // A later plan still goes through: the writer is not stuck on the stopped one.
            transport.settle(Settlement(deliveryTag: nil, taskID: nil, disposition: .none))
            usleep(200_000)
            let stored = try server.connect(1).command("EXISTS", "celery-task-meta-task-1").integer
            let unacked = try client.command("HLEN", "unacked").integer
            #expect(stored == 0)
            #expect(unacked == 1)
        }
    }
}
