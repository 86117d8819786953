import OrderedCollections
import SwiftqAMQP
import SwiftqConsumer
import SwiftqCore
import SwiftqPool

/// Publishes beat runs to RabbitMQ, with publisher confirms: the beat process's AMQP connection.
///
/// Used when the broker is RabbitMQ; the lease and the record of runs then live in the Redis result backend
/// (``BeatRedisLock``), and a run is recorded under the lease *before* it is published here, so a node that lost the
/// lease cannot publish. Queues are declared as Celery and swiftqd's consumer declare them (a durable direct
/// exchange of the queue's name, a durable queue with `broker.queue_max_priority`/`queue_type`, bound by the name).
/// Heartbeats are off: the connection may sit idle between runs for hours, and a dead one is replaced on the next
/// publish. Blocking; used only from the beat process's loop thread.
final class BeatAMQPPublisher {
    /// The broker's hosts (kombu's failover list); a failed publish moves on to the next (round robin).
    private let urls: [AMQPURL]
    private var hostIndex = 0
    private let tls: AMQPTLSOptions?
    private let queueArguments: OrderedDictionary<String, JSONValue>
    private var connection: AMQPConnection?
    private var declared: Set<String> = []
    private let channel: UInt16 = 1

    init(configuration: Configuration) throws(AMQPError) {
        urls = try AMQPURL.failoverList(parsing: configuration.broker.url)
        tls = configuration.broker.tls.amqpOptions(for: urls[0])
        var arguments: OrderedDictionary<String, JSONValue> = [:]
        if let priority = configuration.broker.queueMaxPriority { arguments["x-max-priority"] = .int(Int64(priority)) }
        if configuration.broker.queueType == .quorum { arguments["x-queue-type"] = .string("quorum") }
        queueArguments = arguments
    }

    /// Publishes one message and waits for the broker's confirm; one reconnect is tried on a broken connection.
    func publish(_ message: TaskMessage, queue: String, priority: Int?) throws {
        do {
            try publishOnce(message, queue: queue, priority: priority)
        } catch {
            connection = nil
            declared = []
            hostIndex = (hostIndex + 1) % urls.count
            try publishOnce(message, queue: queue, priority: priority)
        }
    }

    private func publishOnce(_ message: TaskMessage, queue: String, priority: Int?) throws {
        let connection = try connected()
        if !declared.contains(queue) {
            try connection.declareExchange(channel: channel, name: queue, type: "direct", durable: true)
            _ = try connection.declareQueue(channel: channel, name: queue, durable: true, arguments: queueArguments)
            try connection.bindQueue(channel: channel, queue: queue, exchange: queue, routingKey: queue)
            declared.insert(queue)
        }
        var properties = AMQPProperties()
        properties.contentType = "application/json"
        properties.contentEncoding = "utf-8"
        properties.headers = message.wireHeaders()
        properties.correlationID = message.correlationID ?? message.id
        properties.deliveryMode = 2
        properties.priority = UInt8(clamping: priority ?? 0)
        if let expires = message.expires {
            let milliseconds = max(0, (expires.secondsSince1970 - CeleryTimestamp.now.secondsSince1970) * 1000)
            properties.expiration = String(Int64(milliseconds))
        }
        let sequence = try connection.publish(
            channel: channel,
            exchange: queue,
            routingKey: queue,
            properties: properties,
            body: message.wireBody
        )
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            guard let event = try connection.nextEvent(timeout: .milliseconds(200)) else { continue }
            if case .confirm(_, let ack, let tag, let multiple) = event,
                tag == sequence || (multiple && tag >= sequence)
            {
                guard ack else { throw BeatPublishError(description: "the broker refused the message (basic.nack)") }
                return
            }
        }
        throw BeatPublishError(description: "the broker did not confirm the message within 10s")
    }

    private func connected() throws(AMQPError) -> AMQPConnection {
        if let connection { return connection }
        let fresh = try AMQPConnection(url: urls[hostIndex], tls: tls, heartbeat: .zero, connectionName: "swiftqd beat")
        try fresh.openChannel(channel)
        try fresh.confirmSelect(channel: channel)
        connection = fresh
        return fresh
    }
}

/// A publish the broker did not confirm.
struct BeatPublishError: Error, CustomStringConvertible {
    var description: String
}
