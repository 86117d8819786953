import SwiftqAMQP
import SwiftqCore

/// `swiftqctl dead` on RabbitMQ: the dead-letter queue is a plain durable queue swiftqd declares and publishes poison
/// messages to. AMQP has no way to read a queue in place, so messages are consumed with manual acks on a channel of
/// their own: `list` never acks (closing the channel puts them back, in their order); `requeue` acks a message only
/// after the broker confirmed its copy on the queue it came from (a failure in between leaves it in both places
/// rather than in neither); `purge` is `queue.purge`.
extension DeadLetters {
    private static let readChannel: UInt16 = 1
    private static let publishChannel: UInt16 = 2
    /// How long to wait for each message the queue said it holds.
    private static let deliveryWait: Duration = .seconds(5)

    static func amqpConnection(_ url: String) throws(ClientError) -> AMQPConnection {
        do {
            let parsed = try AMQPURL(parsing: url)
            return try AMQPConnection(
                url: parsed,
                tls: parsed.usesTLS ? AMQPTLSOptions() : nil,
                connectionName: "swiftqctl dead"
            )
        } catch {
            throw ClientError(.connection, error.description)
        }
    }

    private var amqp: AMQPConnection? {
        if case .amqp(let connection) = backend { return connection }
        return nil
    }

    /// How many messages `deadQueue` holds (ready ones), by a passive declare; nil when it does not exist (the
    /// channel the broker closed for that is opened again).
    private func readyCount(_ deadQueue: String, on connection: AMQPConnection) throws(AMQPError) -> Int? {
        do {
            return Int(
                try connection.declareQueue(channel: Self.readChannel, name: deadQueue, passive: true).messageCount
            )
        } catch  where error.replyCode == 404 {
            try connection.openChannel(Self.readChannel)
            return nil
        }
    }

    /// Consumes up to `count` deliveries of `deadQueue` on the read channel (unacked), handing each to `body`.
    private func consume(
        _ deadQueue: String,
        count: Int,
        on connection: AMQPConnection,
        _ body: (AMQPDelivery) throws -> Void
    ) throws {
        try connection.qos(channel: Self.readChannel, prefetchCount: UInt16(clamping: count))
        let tag = try connection.consume(channel: Self.readChannel, queue: deadQueue)
        var seen = 0
        while seen < count {
            guard let event = try connection.nextEvent(timeout: Self.deliveryWait) else {
                throw ClientError(.timeout, "\(deadQueue) held \(count) message(s) but only \(seen) arrived")
            }
            guard case .delivery(let delivery) = event, delivery.consumerTag == tag else { continue }
            seen += 1
            try body(delivery)
        }
        try connection.cancel(channel: Self.readChannel, consumerTag: tag)
    }

    func amqpList(_ deadQueue: String) throws(ClientError) -> [Entry] {
        guard let connection = amqp else { return [] }
        do {
            try connection.openChannel(Self.readChannel)
            // Closing the channel gives every unacked message back, in its place.
            defer { try? connection.closeChannel(Self.readChannel) }
            guard let count = try readyCount(deadQueue, on: connection), count > 0 else { return [] }
            var entries: [Entry] = []
            try consume(deadQueue, count: count, on: connection) { delivery in
                if let message = try? delivery.taskMessage() { entries.append(Self.entry(message)) }
            }
            return entries
        } catch let error as ClientError {
            throw error
        } catch {
            throw ClientError(.connection, "cannot read \(deadQueue): \(error)")
        }
    }

    func amqpRequeue(_ deadQueue: String, fallback: String) throws(ClientError) -> Int {
        guard let connection = amqp else { return 0 }
        var moved = 0
        do {
            try connection.openChannel(Self.readChannel)
            try connection.openChannel(Self.publishChannel)
            defer {
                try? connection.closeChannel(Self.readChannel)
                try? connection.closeChannel(Self.publishChannel)
            }
            try connection.confirmSelect(channel: Self.publishChannel)
            guard let count = try readyCount(deadQueue, on: connection), count > 0 else { return 0 }
            try consume(deadQueue, count: count, on: connection) { delivery in
                // Not a task (nothing swiftqd put there): left where it is.
                guard let message = try? delivery.taskMessage() else { return }
                let queue = message.headers["x-swiftq-dead-queue"]?.stringValue ?? fallback
                var properties = delivery.properties
                for header in Self.swiftqHeaders { properties.headers[header] = nil }
                let sequence = try connection.publish(
                    channel: Self.publishChannel,
                    exchange: "",
                    routingKey: queue,
                    properties: properties,
                    body: delivery.body,
                    mandatory: true
                )
                try waitForConfirm(sequence, queue: queue, on: connection)
                try connection.ack(channel: delivery.channel, deliveryTag: delivery.deliveryTag)
                moved += 1
            }
            return moved
        } catch let error as ClientError {
            throw ClientError(error.code, "\(error.message) (requeued \(moved) before)")
        } catch {
            throw ClientError(.connection, "cannot requeue from \(deadQueue): \(error) (requeued \(moved) before)")
        }
    }

    /// Waits for the broker's confirm of a publish; a message returned as unroutable (no such queue) is an error.
    private func waitForConfirm(_ sequence: UInt64, queue: String, on connection: AMQPConnection) throws {
        let deadline = ContinuousClock.now + .seconds(30)
        var returned = false
        while ContinuousClock.now < deadline {
            guard let event = try connection.nextEvent(timeout: .milliseconds(200)) else { continue }
            switch event {
            case .returned(let channel, _, _, _, _, _, _) where channel == Self.publishChannel:
                returned = true
            case .confirm(let channel, let ack, let tag, let multiple)
            where channel == Self.publishChannel && (tag == sequence || (multiple && tag >= sequence)):
                guard ack else { throw ClientError(.connection, "the broker refused the copy for \(queue)") }
                if returned { throw ClientError(.connection, "no queue named \(queue) to requeue to") }
                return
            default:
                continue
            }
        }
        throw ClientError(.timeout, "the broker did not confirm the copy for \(queue) within 30 s")
    }

    func amqpPurge(_ deadQueue: String) throws(ClientError) -> Int {
        guard let connection = amqp else { return 0 }
        do {
            try connection.openChannel(Self.readChannel)
            defer { try? connection.closeChannel(Self.readChannel) }
            guard try readyCount(deadQueue, on: connection) != nil else { return 0 }
            return Int(try connection.purgeQueue(channel: Self.readChannel, name: deadQueue))
        } catch {
            throw ClientError(.connection, "cannot purge \(deadQueue): \(error)")
        }
    }
}
