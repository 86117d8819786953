import Foundation
import SwiftqAMQP
import SwiftqCore
import Testing

@testable import SwiftqConsumer
@testable import SwiftqWorker

/// The RabbitMQ transport's settlement plans and pidbox against the node `SWIFTQ_TEST_AMQP_URL` names
/// (`eval "$(dev/servers start DIR)"`); skipped without it.
@Suite(.serialized) struct AMQPTransportTests {
    static let url = ProcessInfo.processInfo.environment["SWIFTQ_TEST_AMQP_URL"]

    /// Collects events until `done` says so (at most 15 s).
    static func events(_ transport: AMQPTransport, until done: ([BrokerEvent]) -> Bool) -> [BrokerEvent] {
        var seen: [BrokerEvent] = []
        let deadline = ContinuousClock.now + .seconds(15)
        while ContinuousClock.now < deadline {
            seen += transport.events.drain()
            if done(seen) { break }
            usleep(20_000)
        }
        return seen
    }

    static func tasks(_ events: [BrokerEvent]) -> [(id: String, tag: String, queue: String)] {
        events.flatMap { event -> [(id: String, tag: String, queue: String)] in
            guard case .delivered(let messages) = event else { return [] }
            return messages.compactMap { message in
                guard case .task(let task, let tag?, let queue) = message else { return nil }
                return (task.id, tag, queue)
            }
        }
    }

    static func task(id: String, to queue: String) -> OutboundMessage {
        var message = OutboundMessage(exchange: "", routingKey: queue, body: Array(#"[[1, 2], {}, {}]"#.utf8))
        message.headers = ["lang": "py", "task": "swiftq.add", "id": .string(id), "retries": 0]
        message.correlationID = id
        return message
    }

    @Test(.enabled(if: url != nil)) func publishesAreConfirmedBeforeTheAckAndPidboxMessagesAreControl() throws {
        let suffix = String(UInt32.random(in: 0...UInt32.max), radix: 16)
        let (first, second) = ("plans-a-\(suffix)", "plans-b-\(suffix)")
        let node = "plans-\(suffix)@test"
        let transport = try AMQPTransport(
            urls: [try AMQPURL(parsing: try #require(Self.url))],
            tls: nil,
            broker: Configuration().broker,
            queues: [first, second],
            window: 4,
            nodeName: node,
            rpcResults: false,
            redisResults: nil,
            resultExpires: nil
        )
        transport.start()
        defer { transport.stop(restoreHeld: false, timeout: .seconds(5)) }
        let connected = Self.events(transport) { seen in
            seen.contains { if case .state(_, true, _) = $0 { return true } else { return false } }
        }
        #expect(!connected.isEmpty)
        // A plan of its own (no delivery): publish a task, which the transport then receives.
        transport.settle(Settlement(publishes: [Self.task(id: "t-1", to: first)], disposition: .none))
        let received = Self.tasks(Self.events(transport) { !Self.tasks($0).isEmpty })
        let delivery = try #require(received.first)
        #expect(delivery.id == "t-1" && delivery.queue == first)
        // Settling it publishes a follow-up (a retry copy, say) first; the ack comes after its confirm.
        transport.settle(
            Settlement(
                publishes: [Self.task(id: "t-2", to: second)],
                deliveryTag: delivery.tag,
                taskID: "t-1"
            )
        )
        let after = Self.events(transport) { seen in
            Self.tasks(seen).contains { $0.id == "t-2" }
                && seen.contains {
                    if case .settled(let tags, _) = $0 { return tags.contains(delivery.tag) } else { return false }
                }
        }
        let followUp = try #require(Self.tasks(after).first { $0.id == "t-2" })
        #expect(followUp.queue == second)
        transport.settle(Settlement(deliveryTag: followUp.tag, taskID: "t-2"))
        // A pidbox broadcast, as `app.control.broadcast('ping')` publishes it.
        let ping: JSONValue = ["method": "ping", "arguments": [:], "destination": nil]
        transport.settle(
            Settlement(
                publishes: [
                    OutboundMessage(
                        exchange: "celery.pidbox",
                        exchangeType: .fanout,
                        routingKey: "",
                        body: ping.serialized()
                    )
                ],
                disposition: .none
            )
        )
        let control = Self.events(transport) { seen in
            seen.contains { if case .control = $0 { return true } else { return false } }
        }
        let methods = control.flatMap { event -> [String] in
            guard case .control(let deliveries) = event else { return [] }
            return deliveries.compactMap { $0.body["method"]?.stringValue }
        }
        #expect(methods == ["ping"])
        #expect(Self.tasks(control).isEmpty, "a control message was decoded as a task")
    }

    /// A delivery given back (`restore`: the window shrank under it) is rejected with requeue, so RabbitMQ puts it
    /// back in its place and delivers it again, marked redelivered; nothing records it as finished.
    @Test(.enabled(if: url != nil)) func aRestoredDeliveryIsDeliveredAgain() throws {
        let suffix = String(UInt32.random(in: 0...UInt32.max), radix: 16)
        let queue = "restore-\(suffix)"
        let transport = try AMQPTransport(
            urls: [try AMQPURL(parsing: try #require(Self.url))],
            tls: nil,
            broker: Configuration().broker,
            queues: [queue],
            window: 4,
            nodeName: "restore-\(suffix)@test",
            rpcResults: false,
            redisResults: nil,
            resultExpires: nil
        )
        transport.start()
        defer { transport.stop(restoreHeld: false, timeout: .seconds(5)) }
        transport.settle(Settlement(publishes: [Self.task(id: "r-1", to: queue)], disposition: .none))
        let first = try #require(Self.tasks(Self.events(transport) { !Self.tasks($0).isEmpty }).first)
        transport.settle(Settlement(deliveryTag: first.tag, taskID: "r-1", disposition: .restore))
        var redelivered = false
        let again = Self.events(transport) { seen in
            seen.contains { event in
                guard case .delivered(let messages) = event else { return false }
                return messages.contains { message in
                    guard case .task(let task, let tag?, _) = message, task.id == "r-1", tag != first.tag else {
                        return false
                    }
                    redelivered = task.redelivered
                    return true
                }
            }
        }
        #expect(Self.tasks(again).contains { $0.id == "r-1" && $0.tag != first.tag })
        #expect(redelivered)
    }
}

/// Which errors in reply to a channel-wide `basic.qos` mean "the broker refuses it" (RabbitMQ ≥ 4.3 while its
/// deprecated `global_qos` is denied), after which the transport stays per consumer.
@Suite struct ChannelWideQoSRefusalTests {
    @Test func aBrokerCloseInReplyIsARefusal() {
        let denied = AMQPError(
            .connectionClosed(
                replyCode: 541,
                replyText: "INTERNAL_ERROR - Feature `global_qos` is deprecated.",
                classID: 60,
                methodID: 10
            ),
            "closed",
            isRecoverable: false
        )
        #expect(AMQPTransport.refusesChannelWideQoS(denied))
        let channel = AMQPError(
            .channelClosed(channel: 1, replyCode: 530, replyText: "NOT_ALLOWED", classID: 60, methodID: 10),
            "closed",
            isRecoverable: false
        )
        #expect(AMQPTransport.refusesChannelWideQoS(channel))
    }

    @Test func aShutdownOrASocketErrorIsNot() {
        let forced = AMQPError(
            .connectionClosed(replyCode: 320, replyText: "CONNECTION_FORCED", classID: 0, methodID: 0),
            "closed",
            isRecoverable: true
        )
        #expect(!AMQPTransport.refusesChannelWideQoS(forced))
        #expect(!AMQPTransport.refusesChannelWideQoS(AMQPError(.timeout, "timed out", isRecoverable: true)))
        #expect(
            !AMQPTransport.refusesChannelWideQoS(
                AMQPError(.library(status: -9, message: "socket closed"), "lost", isRecoverable: true)
            )
        )
    }
}

/// The RabbitMQ revoke list's messages: one per revoke, persistent, expiring with `worker.revokes_expire`.
@Suite struct AMQPRevokeListTests {
    @Test func revokesBecomeExpiringMessagesAndComeBack() {
        let messages = AMQPTransport.revokeMessages([RevokeRecord(id: "a", at: 1_800_000_000.5)], expiry: 10_800)
        #expect(messages.count == 1)
        #expect(messages[0].exchange == "" && messages[0].routingKey == "swiftq.revoked")
        #expect(messages[0].persistent)
        #expect(messages[0].expiration == "10800000")
        #expect(AMQPTransport.revokeRecord(from: messages[0].body) == RevokeRecord(id: "a", at: 1_800_000_000.5))
        #expect(AMQPTransport.revokeMessages([RevokeRecord(id: "b", at: 1)], expiry: 0)[0].expiration == nil)
        #expect(AMQPTransport.revokeRecord(from: Array("not json".utf8)) == nil)
        #expect(AMQPTransport.revokeRecord(from: Array(#"{"id": "", "at": 1}"#.utf8)) == nil)
    }
}
