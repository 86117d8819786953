import Foundation
import OrderedCollections
import SwiftqAMQP
import SwiftqCore
import Testing

private func text(_ string: String) -> [UInt8] { Array(string.utf8) }

/// Publishes `count` messages to `queue` on channel 1, each body the one byte of its index.
private func publishNumbered(_ count: Int, on connection: AMQPConnection, to queue: String) throws {
    for index in 0..<count {
        try connection.publish(
            channel: 1,
            exchange: "",
            routingKey: queue,
            properties: jsonProperties,
            body: [UInt8(index)]
        )
    }
}

private let jsonProperties = AMQPProperties(
    contentType: "application/json",
    contentEncoding: "utf-8",
    headers: ["task": "swiftq.echo", "id": "t-1", "timelimit": [.null, 5], "stamps": ["s": ["a", 1]]],
    deliveryMode: 2,
    correlationID: "t-1",
    replyTo: "reply-q"
)

@Suite("AMQPConnection against a real RabbitMQ node", .timeLimit(.minutes(2)))
struct AMQPConnectionTests {
    @Test func publishWithConfirmsConsumeAndAck() throws {
        try withQueue { connection, queue in
            try connection.confirmSelect(channel: 1)
            let first = try connection.publish(
                channel: 1,
                exchange: "",
                routingKey: queue,
                properties: jsonProperties,
                body: text("[[2, 3], {}, null]")
            )
            let second = try connection.publish(
                channel: 1,
                exchange: "",
                routingKey: queue,
                properties: AMQPProperties(),
                body: []
            )
            #expect(first == 1)
            #expect(second == 2)
            var confirmed: Set<UInt64> = []
            for event in try events(connection, for: .milliseconds(500)) {
                guard case .confirm(let channel, let ack, let tag, let multiple) = event else { continue }
                #expect(channel == 1 && ack)
                if multiple { confirmed.formUnion(1...tag) } else { confirmed.insert(tag) }
            }
            #expect(confirmed == [1, 2])

            try connection.qos(channel: 1, prefetchCount: 10)
            let tag = try connection.consume(channel: 1, queue: queue, consumerTag: "swiftq-test")
            #expect(tag == "swiftq-test")
            let delivery = try nextDelivery(connection)
            #expect(delivery.channel == 1)
            #expect(delivery.consumerTag == "swiftq-test")
            #expect(delivery.exchange == "")
            #expect(delivery.routingKey == queue)
            #expect(!delivery.redelivered)
            #expect(delivery.properties == jsonProperties)
            #expect(delivery.body == text("[[2, 3], {}, null]"))
            let empty = try nextDelivery(connection)
            #expect(empty.body.isEmpty)
            #expect(empty.properties == AMQPProperties())
            try connection.ack(channel: 1, deliveryTag: delivery.deliveryTag)
            try connection.ack(channel: 1, deliveryTag: empty.deliveryTag)
            #expect(try events(connection, for: .milliseconds(300)).isEmpty)
            #expect(try connection.declareQueue(channel: 1, name: queue).messageCount == 0)
        }
    }

    /// A batch of publishes runs corked (its frames leave together), is uncorked after, and arrives whole.
    @Test func corkedPublishesAreHeldUntilTheBatchEndsAndAllArrive() throws {
        try withQueue { connection, queue in
            func corkOption() -> CInt {
                var value: CInt = -1
                var length = socklen_t(MemoryLayout<CInt>.size)
                _ = getsockopt(connection.descriptor, CInt(IPPROTO_TCP), TCP_CORK, &value, &length)
                return value
            }
            #expect(corkOption() == 0)
            try connection.corked {
                #expect(corkOption() == 1)
                for index in 0..<20 {
                    try connection.publish(
                        channel: 1,
                        exchange: "",
                        routingKey: queue,
                        properties: AMQPProperties(),
                        body: text("event \(index)")
                    )
                }
            }
            #expect(corkOption() == 0)
            _ = try connection.consume(channel: 1, queue: queue, consumerTag: "swiftq-cork")
            var bodies: [String] = []
            for _ in 0..<20 {
                let delivery = try nextDelivery(connection)
                bodies.append(String(decoding: delivery.body, as: UTF8.self))
                try connection.ack(channel: 1, deliveryTag: delivery.deliveryTag)
            }
            #expect(bodies == (0..<20).map { "event \($0)" })
        }
    }

    /// A body larger than the 128 KiB frame size arrives in many body frames, assembled across waits.
    @Test func largeBodyIsAssembled() throws {
        try withQueue { connection, queue in
            let body = (0..<(1 << 20) + 7).map { UInt8(truncatingIfNeeded: $0 &* 31) }
            try connection.publish(channel: 1, exchange: "", routingKey: queue, properties: jsonProperties, body: body)
            _ = try connection.consume(channel: 1, queue: queue)
            // Tiny timeouts: the delivery is completed by whichever call gets its last frame.
            let clock = ContinuousClock()
            let deadline = clock.now.advanced(by: .seconds(5))
            var received: AMQPDelivery?
            while received == nil && clock.now < deadline {
                if case .delivery(let delivery)? = try connection.nextEvent(timeout: .milliseconds(1)) {
                    received = delivery
                }
            }
            #expect(received?.body == body)
        }
    }

    /// A zero timeout takes what has arrived without waiting: a delivery whose three frames (method, header, body)
    /// are all in is one call's event, not three calls', and a call with nothing left returns nil at once.
    @Test func aZeroTimeoutReadsAWholeArrivedDelivery() throws {
        try withQueue { connection, queue in
            _ = try connection.consume(channel: 1, queue: queue)
            #expect(try connection.nextEvent(timeout: .zero) == nil)
            try publishNumbered(3, on: connection, to: queue)
            // All three deliveries' frames arrive meanwhile (the node delivers at once to a consumer with room).
            Thread.sleep(forTimeInterval: 0.5)
            var bodies: [[UInt8]] = []
            for _ in 0..<3 {
                guard case .delivery(let delivery)? = try connection.nextEvent(timeout: .zero) else { break }
                bodies.append(delivery.body)
            }
            #expect(bodies == [[0], [1], [2]])
            #expect(try connection.nextEvent(timeout: .zero) == nil)
        }
    }

    /// `basic.consume`'s arguments reach the broker: an `x-priority` that is not a number is refused by every
    /// RabbitMQ version (so the table was sent), and `x-consumer-timeout` (honoured from 3.11.15, ignored before)
    /// is accepted and the consumer gets its deliveries.
    @Test func consumeSendsItsArguments() throws {
        try withQueue { connection, queue in
            let refused = #expect(throws: AMQPError.self) {
                try connection.consume(channel: 1, queue: queue, arguments: ["x-priority": "high"])
            }
            #expect(refused?.replyCode == 406, "\(String(describing: refused))")
        }
        try withQueue { connection, queue in
            try connection.publish(channel: 1, exchange: "", routingKey: queue, properties: jsonProperties, body: [7])
            _ = try connection.consume(channel: 1, queue: queue, arguments: ["x-consumer-timeout": .int(7_200_000)])
            let delivery = try nextDelivery(connection)
            #expect(delivery.body == [7])
            try connection.ack(channel: 1, deliveryTag: delivery.deliveryTag)
        }
    }

    @Test func rejectWithRequeueRedelivers() throws {
        try withQueue { connection, queue in
            try connection.publish(channel: 1, exchange: "", routingKey: queue, properties: jsonProperties, body: [1])
            _ = try connection.consume(channel: 1, queue: queue)
            let first = try nextDelivery(connection)
            #expect(!first.redelivered)
            try connection.reject(channel: 1, deliveryTag: first.deliveryTag, requeue: true)
            let again = try nextDelivery(connection)
            #expect(again.redelivered)
            #expect(again.body == [1])
            try connection.reject(channel: 1, deliveryTag: again.deliveryTag, requeue: false)
            #expect(try events(connection, for: .milliseconds(300)).isEmpty)
            #expect(try connection.declareQueue(channel: 1, name: queue).messageCount == 0)
        }
    }

    @Test func unackedDeliveriesComeBackRedeliveredAfterTheConnectionCloses() throws {
        try withQueue { connection, queue in
            try connection.publish(channel: 1, exchange: "", routingKey: queue, properties: jsonProperties, body: [7])
            let consumer = try connect()
            _ = try consumer.consume(channel: 1, queue: queue)
            let first = try nextDelivery(consumer)
            #expect(!first.redelivered)
            consumer.close()
            consumer.close()  // idempotent
            #expect(throws: AMQPError.self) { try consumer.ack(channel: 1, deliveryTag: first.deliveryTag) }

            _ = try connection.consume(channel: 1, queue: queue)
            let again = try nextDelivery(connection)
            #expect(again.redelivered)
            #expect(again.body == [7])
            try connection.ack(channel: 1, deliveryTag: again.deliveryTag)
        }
    }

    /// qos 2: a third delivery arrives only after one of the first two is acked.
    @Test func prefetchLimitsUnackedDeliveries() throws {
        try withQueue { connection, queue in
            try publishNumbered(5, on: connection, to: queue)
            try connection.qos(channel: 1, prefetchCount: 2)
            _ = try connection.consume(channel: 1, queue: queue)
            let first = try events(connection, for: .seconds(1)).compactMap { event -> AMQPDelivery? in
                if case .delivery(let delivery) = event { return delivery }
                return nil
            }
            #expect(first.map(\.body) == [[0], [1]])
            try connection.ack(channel: 1, deliveryTag: first[0].deliveryTag)
            let next = try events(connection, for: .milliseconds(700)).compactMap { event -> AMQPDelivery? in
                if case .delivery(let delivery) = event { return delivery }
                return nil
            }
            #expect(next.map(\.body) == [[2]])
        }
    }

    @Test func mandatoryUnroutablePublishIsReturned() throws {
        let connection = try connect()
        try connection.confirmSelect(channel: 1)
        let sequence = try connection.publish(
            channel: 1,
            exchange: "",
            routingKey: uniqueName("nowhere"),
            properties: jsonProperties,
            body: [9],
            mandatory: true
        )
        let received = try events(connection, for: .milliseconds(700))
        var returned = false
        var confirmed = false
        for event in received {
            switch event {
            case .returned(let channel, let code, let text, _, _, let properties, let body):
                #expect(channel == 1 && code == 312 && text == "NO_ROUTE")
                #expect(properties == jsonProperties && body == [9])
                returned = true
            case .confirm(_, let ack, let tag, _):
                #expect(ack && tag == sequence)
                confirmed = true
            default:
                Issue.record("unexpected \(event)")
            }
        }
        #expect(returned && confirmed)
    }

    @Test func deletedQueueCancelsTheConsumer() throws {
        try withQueue { connection, queue in
            let tag = try connection.consume(channel: 1, queue: queue)
            let other = try connect()
            try other.deleteQueue(channel: 1, name: queue)
            let received = try events(connection, for: .milliseconds(700))
            #expect(received.count == 1)
            if case .cancelled(let channel, let cancelled)? = received.first {
                #expect(channel == 1 && cancelled == tag)
            } else {
                Issue.record("expected a cancel, got \(received)")
            }
        }
    }

    @Test func declareBindAndPublishThroughADirectExchange() throws {
        try withQueue { connection, queue in
            try connection.declareExchange(channel: 1, name: queue, type: "direct", durable: true)
            try connection.bindQueue(channel: 1, queue: queue, exchange: queue, routingKey: queue)
            try connection.publish(
                channel: 1,
                exchange: queue,
                routingKey: queue,
                properties: jsonProperties,
                body: [3]
            )
            _ = try connection.consume(channel: 1, queue: queue)
            let delivery = try nextDelivery(connection)
            #expect(delivery.exchange == queue && delivery.body == [3])
            try connection.ack(channel: 1, deliveryTag: delivery.deliveryTag)
        }
    }

    @Test func priorityQueueArgumentsAndPriorityProperty() throws {
        try withQueue(arguments: ["x-max-priority": 10]) { connection, queue in
            var low = jsonProperties
            low.priority = 1
            var high = jsonProperties
            high.priority = 9
            try connection.publish(channel: 1, exchange: "", routingKey: queue, properties: low, body: [1])
            try connection.publish(channel: 1, exchange: "", routingKey: queue, properties: high, body: [9])
            // Let the broker enqueue both before the consumer starts, so that priority decides the order.
            _ = try connection.declareQueue(channel: 1, name: queue, arguments: ["x-max-priority": 10])
            _ = try connection.consume(channel: 1, queue: queue)
            let first = try nextDelivery(connection)
            #expect(first.body == [9] && first.properties.priority == 9)
        }
    }
}

@Suite("AMQPConnection errors", .timeLimit(.minutes(2)))
struct AMQPConnectionErrorTests {
    @Test func wrongPasswordIsALoginErrorWithARemedy() throws {
        var url = try brokerURL()
        url.password = "wrong-\(UUID().uuidString)"
        #expect {
            try AMQPConnection(url: url)
        } throws: { error in
            guard let error = error as? AMQPError, case .login(let code, let text) = error.kind else { return false }
            return code == 403 && text.contains("ACCESS_REFUSED") && !error.isRecoverable
                && error.remedy == "check broker.url's user and password (and the user's permissions on the vhost)"
                && !"\(error)".contains(url.password)
        }
    }

    @Test func missingVhostIsNamed() throws {
        var url = try brokerURL()
        url.virtualHost = "no-such-vhost-\(UUID().uuidString.prefix(6))"
        #expect {
            try AMQPConnection(url: url)
        } throws: { error in
            guard let error = error as? AMQPError, case .login(let code, _) = error.kind else { return false }
            return code == 530 && !error.isRecoverable
                && (error.remedy ?? "").contains("vhost '\(url.virtualHost)' does not exist")
                && (error.remedy ?? "").contains("rabbitmqctl add_vhost")
        }
    }

    @Test func connectionRefusedSaysSo() throws {
        var url = try brokerURL()
        url.port = 1  // nothing listens on port 1 here
        #expect {
            try AMQPConnection(url: url, connectTimeout: .seconds(2))
        } throws: { error in
            guard let error = error as? AMQPError, case .connect(let reason) = error.kind else { return false }
            return reason == "Connection refused" && error.isRecoverable
                && error.remedy == "is RabbitMQ running on 127.0.0.1:1?"
        }
    }

    @Test func tlsToAPlainPortIsATLSError() throws {
        var url = try brokerURL()
        url.usesTLS = true
        #expect {
            try AMQPConnection(url: url, tls: AMQPTLSOptions(verifyPeer: false, verifyHostname: false))
        } throws: { error in
            guard let error = error as? AMQPError, case .tls = error.kind else { return false }
            return true
        }
        let plain = try brokerURL()
        #expect {
            try AMQPConnection(url: plain, tls: AMQPTLSOptions())
        } throws: { error in
            guard let error = error as? AMQPError, case .invalidArgument = error.kind else { return false }
            return true
        }
    }

    /// Redeclaring a durable queue as non-durable, or with another x-max-priority: 406 on that channel only.
    @Test func mismatchedQueueDeclarationIsPreconditionFailed() throws {
        try withQueue(arguments: ["x-max-priority": 5]) { connection, queue in
            #expect {
                try connection.declareQueue(channel: 1, name: queue, durable: false, arguments: ["x-max-priority": 5])
            } throws: { error in
                guard let error = error as? AMQPError,
                    case .channelClosed(let channel, let code, let text, let classID, let methodID) = error.kind
                else { return false }
                return channel == 1 && code == 406 && text.contains("PRECONDITION_FAILED") && classID == 50
                    && methodID == 10 && !error.isRecoverable
                    && (error.remedy ?? "").contains("queue '\(queue)' exists with other properties or arguments")
            }
            // The channel is gone, and says so without a round trip…
            #expect {
                try connection.qos(channel: 1, prefetchCount: 1)
            } throws: { error in
                (error as? AMQPError)?.kind == .channelNotOpen(1)
            }
            // …but the connection works: reopen and try another mismatch.
            try connection.openChannel(1)
            #expect {
                try connection.declareQueue(channel: 1, name: queue, arguments: ["x-max-priority": 10])
            } throws: { error in
                (error as? AMQPError)?.replyCode == 406 && "\(error)".contains("x-max-priority=10")
            }
            try connection.openChannel(2)
            try connection.declareQueue(channel: 2, name: queue, arguments: ["x-max-priority": 5])
        }
    }

    /// A server-initiated channel.close during nextEvent (here: an ack for an unknown delivery tag) is thrown with
    /// its code and text, and the connection stays usable.
    @Test func channelClosedByTheServerIsThrownFromNextEvent() throws {
        let connection = try connect()
        try connection.ack(channel: 1, deliveryTag: 999)
        #expect {
            _ = try events(connection, for: .seconds(1))
        } throws: { error in
            guard let error = error as? AMQPError, case .channelClosed(1, 406, let text, _, _) = error.kind else {
                return false
            }
            return text.contains("unknown delivery tag 999")
        }
        try connection.openChannel(1)
        try connection.qos(channel: 1, prefetchCount: 1)
    }
}

@Suite("AMQP heartbeats (2 s)", .timeLimit(.minutes(2)))
struct AMQPHeartbeatTests {
    /// rabbitmq-c sends heartbeats while it waits inside nextEvent: idling for several intervals in short and long
    /// waits keeps the connection.
    @Test func waitingInNextEventKeepsTheConnectionAlive() throws {
        let connection = try connect(heartbeat: .seconds(2))
        #expect(connection.heartbeat == .seconds(2))
        let clock = ContinuousClock()
        let start = clock.now
        #expect(try connection.nextEvent(timeout: .seconds(5)) == nil)
        #expect(start.duration(to: clock.now) >= .seconds(5))
        for _ in 0..<10 { #expect(try connection.nextEvent(timeout: .milliseconds(300)) == nil) }
        try connection.qos(channel: 1, prefetchCount: 3)
        #expect(connection.isOpen)
    }

    /// No call for more than two heartbeat intervals: the broker gives up on us and the next call says the
    /// connection is gone (a recoverable error), after which every call throws notConnected.
    @Test func silenceForTwoIntervalsLosesTheConnection() throws {
        let connection = try connect(heartbeat: .seconds(2))
        Thread.sleep(forTimeInterval: 7)
        #expect {
            _ = try connection.nextEvent(timeout: .seconds(2))
            try connection.qos(channel: 1, prefetchCount: 1)
        } throws: { error in
            guard let error = error as? AMQPError else { return false }
            return error.isRecoverable
        }
        #expect(!connection.isOpen)
        #expect(connection.descriptor == -1)
        #expect {
            try connection.openChannel(2)
        } throws: { error in
            (error as? AMQPError)?.kind == .notConnected
        }
    }
}
