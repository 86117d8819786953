import SwiftqAMQP
import SwiftqCore
import SwiftqRedis

/// The dead-letter queues of a broker (Redis or RabbitMQ), where swiftqd puts poison messages (a message that killed
/// its pool child `worker.poison_threshold` times): list them, put them back on the queue they came from, or drop
/// them. What `swiftqctl dead` does.
public final class DeadLetters {
    /// One dead message.
    public struct Entry: Sendable {
        public var message: TaskMessage
        /// Why it is here (`x-swiftq-dead-reason`).
        public var reason: String?
        /// The queue it came from (`x-swiftq-dead-queue`).
        public var queue: String?
        /// When it was moved (`x-swiftq-dead-at`, ISO 8601).
        public var deadAt: String?
    }

    /// Headers swiftqd adds to a poison message; a requeue removes them, so the message starts with a clean count.
    public static let swiftqHeaders = [
        "x-swiftq-child-kills", "x-swiftq-dead-reason", "x-swiftq-dead-queue", "x-swiftq-dead-at",
    ]

    /// The broker's connection: Redis (kombu's lists) or RabbitMQ (``DeadLetters+AMQP.swift``).
    enum Backend {
        case redis(RedisConnection, KombuRedisBroker)
        case amqp(AMQPConnection)
    }

    let backend: Backend

    /// Connects to the broker: Redis (`redis://`, `rediss://`, `redis+socket://`) or RabbitMQ (`amqp://`,
    /// `amqps://`).
    public init(broker url: String) throws(ClientError) {
        let lowered = url.lowercased()
        if lowered.hasPrefix("amqp://") || lowered.hasPrefix("amqps://") {
            backend = .amqp(try Self.amqpConnection(url))
            return
        }
        guard lowered.hasPrefix("redis") else {
            throw ClientError(
                .connection,
                "expected a redis://, rediss://, redis+socket://, amqp:// or amqps:// broker"
            )
        }
        let connection = try clientConnection(url)
        backend = .redis(connection, KombuRedisBroker(connection: connection))
    }

    /// The messages in `deadQueue`, oldest first; entries that are not task messages are skipped.
    public func list(_ deadQueue: String) throws(ClientError) -> [Entry] {
        guard case .redis(let connection, _) = backend else { return try amqpList(deadQueue) }
        let raw: [RedisReply]
        do {
            raw = try connection.command("LRANGE", RedisArgument(deadQueue), "0", "-1").array ?? []
        } catch {
            throw ClientError(.connection, "cannot read \(deadQueue): \(error)")
        }
        // LPUSH puts the newest first.
        return raw.reversed().compactMap { reply in reply.bytes.flatMap(Self.entry) }
    }

    /// Moves every message of `deadQueue` back to the queue it came from (else `fallback`), without swiftqd's
    /// poison headers; returns how many. A message is pushed before it is removed, so a failure in between leaves
    /// it in both places rather than in neither.
    public func requeue(_ deadQueue: String, fallback: String) throws(ClientError) -> Int {
        guard case .redis(let connection, let broker) = backend else {
            return try amqpRequeue(deadQueue, fallback: fallback)
        }
        var moved = 0
        while true {
            let tail: [UInt8]
            do {
                guard let bytes = try connection.command("LINDEX", RedisArgument(deadQueue), "-1").bytes else { break }
                tail = bytes
            } catch {
                throw ClientError(.connection, "cannot read \(deadQueue): \(error)")
            }
            do {
                if var entry = Self.entry(tail) {
                    let queue = entry.queue ?? fallback
                    for header in Self.swiftqHeaders { entry.message.headers[header] = nil }
                    let envelope = entry.message.redisEnvelope(queue: queue, replyTo: entry.message.replyTo)
                    try broker.publish(envelope: envelope, exchange: "", type: .direct, routingKey: queue, priority: 0)
                }
                _ = try connection.command("LREM", RedisArgument(deadQueue), "-1", RedisArgument(tail))
            } catch {
                throw ClientError(.connection, "cannot requeue from \(deadQueue): \(error)")
            }
            moved += 1
        }
        return moved
    }

    /// Drops every message of `deadQueue`; returns how many there were.
    public func purge(_ deadQueue: String) throws(ClientError) -> Int {
        guard case .redis(let connection, _) = backend else { return try amqpPurge(deadQueue) }
        do {
            let replies = try connection.pipeline([
                ["LLEN", RedisArgument(deadQueue)], ["DEL", RedisArgument(deadQueue)],
            ])
            return Int(replies.first?.integer ?? 0)
        } catch {
            throw ClientError(.connection, "cannot purge \(deadQueue): \(error)")
        }
    }

    static func entry(_ bytes: [UInt8]) -> Entry? {
        guard let envelope = try? RedisEnvelope.decode(bytes), let message = try? TaskMessage.decode(envelope) else {
            return nil
        }
        return entry(message)
    }

    static func entry(_ message: TaskMessage) -> Entry {
        Entry(
            message: message,
            reason: message.headers["x-swiftq-dead-reason"]?.stringValue,
            queue: message.headers["x-swiftq-dead-queue"]?.stringValue,
            deadAt: message.headers["x-swiftq-dead-at"]?.stringValue
        )
    }
}
