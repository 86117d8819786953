import OrderedCollections
import SwiftqAMQP
import SwiftqCore
import SwiftqRedis

/// Where a client publishes task messages.
protocol TaskPublisher: AnyObject {
    func publish(_ message: TaskMessage, queue: String, priority: Int?) throws(ClientError)
}

/// Where a client reads results from: the stored meta of a task, or `nil` while there is none. `wait` is how long
/// the reader may block for one to arrive (a message-based backend waits on its connection; a key-value backend
/// answers at once and is polled).
protocol ResultReader: AnyObject {
    func meta(taskID: String, wait: Duration) throws(ClientError) -> JSONValue?
}

// MARK: - Redis

/// A client's Redis connection: 5 s to connect, 10 s per command.
func clientConnection(_ url: String) throws(ClientError) -> RedisConnection {
    do {
        return try RedisConnection(
            url: try RedisURL(parsing: url),
            connectTimeout: .seconds(5),
            commandTimeout: .seconds(10)
        )
    } catch {
        throw ClientError(.connection, "\(error)")
    }
}

/// Publishes kombu Redis envelopes (`LPUSH` to the queue's list, or its priority list).
final class RedisTaskPublisher: TaskPublisher {
    private let broker: KombuRedisBroker
    private let replyTo: String

    init(url: String, replyTo: String) throws(ClientError) {
        broker = KombuRedisBroker(connection: try clientConnection(url))
        self.replyTo = replyTo
    }

    func publish(_ message: TaskMessage, queue: String, priority: Int?) throws(ClientError) {
        let envelope = message.redisEnvelope(queue: queue, priority: priority ?? 0, replyTo: replyTo)
        do {
            try broker.publish(envelope: envelope, queue: queue, priority: priority ?? 0)
        } catch {
            throw ClientError(.connection, "cannot publish \(message.name): \(error)")
        }
    }
}

/// Reads `celery-task-meta-<id>` from a Redis result backend.
final class RedisResultReader: ResultReader {
    private let backend: RedisResultBackend

    init(url: String) throws(ClientError) {
        backend = RedisResultBackend(connection: try clientConnection(url))
    }

    func meta(taskID: String, wait: Duration) throws(ClientError) -> JSONValue? {
        do {
            guard let bytes = try backend.get(taskID: taskID) else { return nil }
            return try JSONValue(parsing: bytes)
        } catch {
            throw ClientError(.connection, "cannot read the result of \(taskID): \(error)")
        }
    }
}

// MARK: - RabbitMQ

/// One AMQP connection used as Python's client uses its own: tasks are published (with publisher confirms) to the
/// default exchange with the queue's name as routing key, after declaring the queue as Celery does; with the
/// `rpc://` backend, results come back as messages on this client's reply queue (named by its `reply_to`).
final class AMQPClientSession: TaskPublisher, ResultReader {
    private let connection: AMQPConnection
    private let replyTo: String
    private let readsResults: Bool
    private var declared: Set<String> = []
    /// The latest state received for each task (STARTED, then SUCCESS …); replies for other tasks wait here.
    private var received: [String: JSONValue] = [:]
    private let publishChannel: UInt16 = 1
    private let replyChannel: UInt16 = 2

    init(url: String, replyTo: String, rpcResults: Bool) throws(ClientError) {
        self.replyTo = replyTo
        readsResults = rpcResults
        do {
            let parsed = try AMQPURL(parsing: url)
            connection = try AMQPConnection(
                url: parsed,
                tls: parsed.usesTLS ? AMQPTLSOptions() : nil,
                connectionName: "swiftq client"
            )
            try connection.openChannel(publishChannel)
            try connection.confirmSelect(channel: publishChannel)
            if rpcResults {
                // Celery's rpc backend: a reply queue per client, deleted once its consumer goes away, and
                // expiring anyway after a day, as result_expires.
                try connection.openChannel(replyChannel)
                _ = try connection.declareQueue(
                    channel: replyChannel,
                    name: replyTo,
                    durable: false,
                    autoDelete: true,
                    arguments: ["x-expires": .int(86_400_000)]
                )
                _ = try connection.consume(channel: replyChannel, queue: replyTo)
            }
        } catch {
            throw ClientError(.connection, error.description)
        }
    }

    func publish(_ message: TaskMessage, queue: String, priority: Int?) throws(ClientError) {
        var properties = AMQPProperties()
        properties.contentType = "application/json"
        properties.contentEncoding = "utf-8"
        properties.headers = message.wireHeaders()
        properties.correlationID = message.correlationID ?? message.id
        properties.replyTo = replyTo
        properties.deliveryMode = 2
        properties.priority = UInt8(clamping: priority ?? 0)
        if let expires = message.expires {
            let milliseconds = max(0, (expires.secondsSince1970 - CeleryTimestamp.now.secondsSince1970) * 1000)
            properties.expiration = String(Int64(milliseconds))
        }
        do {
            if !declared.contains(queue) {
                // What Celery declares for a queue (and the worker too): a durable direct exchange of the same
                // name, a durable queue, bound by its name.
                try connection.declareExchange(channel: publishChannel, name: queue, type: "direct", durable: true)
                _ = try connection.declareQueue(channel: publishChannel, name: queue, durable: true)
                try connection.bindQueue(channel: publishChannel, queue: queue, exchange: queue, routingKey: queue)
                declared.insert(queue)
            }
            let sequence = try connection.publish(
                channel: publishChannel,
                exchange: "",
                routingKey: queue,
                properties: properties,
                body: message.wireBody
            )
            try waitForConfirm(sequence)
        } catch let error as ClientError {
            throw error
        } catch {
            throw ClientError(.connection, "cannot publish \(message.name): \(error)")
        }
    }

    /// Reads events until the broker confirms publish `sequence` (replies that arrive meanwhile are kept).
    private func waitForConfirm(_ sequence: UInt64) throws {
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            guard let event = try connection.nextEvent(timeout: .milliseconds(200)) else { continue }
            switch event {
            case .confirm(_, let ack, let tag, let multiple) where tag == sequence || (multiple && tag >= sequence):
                guard ack else { throw ClientError(.connection, "the broker refused the task (basic.nack)") }
                return
            case .delivery(let delivery):
                try keep(delivery)
            default:
                continue
            }
        }
        throw ClientError(.timeout, "the broker did not confirm the task within 30 s")
    }

    private func keep(_ delivery: AMQPDelivery) throws {
        try connection.ack(channel: delivery.channel, deliveryTag: delivery.deliveryTag)
        guard let meta = try? JSONValue(parsing: delivery.body) else { return }
        guard let id = delivery.properties.correlationID ?? meta["task_id"]?.stringValue else { return }
        received[id] = meta
    }

    func meta(taskID: String, wait: Duration) throws(ClientError) -> JSONValue? {
        guard readsResults else {
            throw ClientError(.noBackend, "no result backend configured")
        }
        if let meta = received[taskID], Self.isFinal(meta) { return meta }
        let deadline = ContinuousClock.now + wait
        do {
            repeat {
                let remaining = max(.zero, deadline - .now)
                guard let event = try connection.nextEvent(timeout: remaining) else { break }
                if case .delivery(let delivery) = event {
                    try keep(delivery)
                    if let meta = received[taskID], Self.isFinal(meta) { return meta }
                }
            } while ContinuousClock.now < deadline
        } catch {
            throw ClientError(.connection, "cannot read the result of \(taskID): \(error)")
        }
        return received[taskID]
    }

    private static func isFinal(_ meta: JSONValue) -> Bool {
        ["SUCCESS", "FAILURE", "REVOKED"].contains(meta["status"]?.stringValue ?? "")
    }
}

/// The `rpc://` backend as seen by someone who did not send the task (`swiftqctl result`): its results were sent
/// to the sender's reply queue, so there is nothing to read.
final class UnreadableRPCResults: ResultReader {
    func meta(taskID: String, wait: Duration) throws(ClientError) -> JSONValue? {
        throw ClientError(
            .noBackend,
            "rpc:// results are messages for the client that sent the task; "
                + "reading them later needs a redis:// result backend"
        )
    }
}
