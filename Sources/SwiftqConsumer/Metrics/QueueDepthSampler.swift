import SwiftqAMQP
import SwiftqCore
import SwiftqPlatform
import SwiftqRedis
import Synchronization

/// Samples how many messages wait in the consumed queues, for `swiftq_queue_depth_messages{queue}`, on a thread and
/// a broker connection of its own, every `metrics.queue_depth_interval`: never on the fetch or write path, so a slow
/// or unreachable broker delays only the sample.
///
/// Redis: the sum of `LLEN` over a queue's priority lists (kombu's `queue`, `queue\x06\x163`, …). RabbitMQ: the
/// message count of a passive `queue.declare` (ready messages; those delivered and unacknowledged are not counted,
/// as on Redis, where reserved messages have left the lists). A queue that does not exist is not reported.
///
/// *Owner*: the sampler's thread owns the connection; ``setQueues(_:)`` may be called from the consumer's loop.
package final class QueueDepthSampler: Sendable {
    /// One sample: waiting messages by queue (missing queues left out); or the error that stopped it.
    package typealias Report = @Sendable (Result<[String: Int], any Error>) -> Void

    private let interval: Duration
    private let queues: Mutex<[String]>
    private let stopped = Mutex(false)
    private let wake = Semaphore()
    private let source: Source
    private let report: Report

    package enum Source: Sendable {
        case redis(RedisURL)
        case amqp(AMQPURL, AMQPTLSOptions?)
    }

    package init(source: Source, queues: [String], interval: Duration, report: @escaping Report) {
        self.source = source
        self.queues = Mutex(queues)
        self.interval = interval
        self.report = report
    }

    package func start() {
        PlatformThread.startOrExit(name: "swiftq-depth") { [self] in run() }
    }

    package func setQueues(_ list: [String]) {
        queues.withLock { $0 = list }
    }

    package func stop() {
        stopped.withLock { $0 = true }
        wake.post()
    }

    private func run() {
        var redis: RedisConnection?
        var amqp: AMQPConnection?
        while !stopped.withLock({ $0 }) {
            let list = queues.withLock { $0 }
            do {
                switch source {
                case .redis(let url):
                    let connection =
                        try redis ?? RedisConnection(url: url, connectTimeout: .seconds(5), commandTimeout: .seconds(5))
                    redis = connection
                    report(.success(try Self.redisDepths(list, on: connection)))
                case .amqp(let url, let tls):
                    let connection =
                        try amqp
                        ?? AMQPConnection(
                            url: url,
                            tls: tls,
                            heartbeat: .zero,
                            connectTimeout: .seconds(5),
                            rpcTimeout: .seconds(5),
                            connectionName: "swiftqd queue depth"
                        )
                    amqp = connection
                    report(.success(try Self.amqpDepths(list, on: connection)))
                }
            } catch {
                redis = nil
                amqp?.close()
                amqp = nil
                report(.failure(error))
            }
            _ = wake.wait(timeout: interval)
        }
        amqp?.close()
    }

    /// `LLEN` of every priority list of every queue, in one round trip; a queue with no list at all is reported as 0
    /// (on Redis an empty queue and a missing one look the same).
    static func redisDepths(_ queues: [String], on connection: RedisConnection) throws -> [String: Int] {
        let layout = KombuRedisLayout()
        let steps = KombuRedisLayout.prioritySteps
        let commands = queues.flatMap { queue in
            steps.map { ["LLEN", RedisArgument(layout.queueKey(queue: queue, priority: $0))] as [RedisArgument] }
        }
        guard !commands.isEmpty else { return [:] }
        let replies = try connection.pipeline(commands)
        var depths: [String: Int] = [:]
        for (index, queue) in queues.enumerated() {
            let lengths = replies[(index * steps.count)..<((index + 1) * steps.count)]
            if let error = lengths.compactMap(\.errorMessage).first {
                throw RedisError(code: .server, message: "LLEN \(queue): \(error)")
            }
            depths[queue] = lengths.reduce(0) { $0 + Int($1.integer ?? 0) }
        }
        return depths
    }

    /// A passive declare per queue on a channel opened for the sample; a missing queue (404, the channel closed) is
    /// left out and the channel opened again.
    static func amqpDepths(_ queues: [String], on connection: AMQPConnection) throws -> [String: Int] {
        var depths: [String: Int] = [:]
        try connection.openChannel(1)
        defer { try? connection.closeChannel(1) }
        for queue in queues {
            do {
                depths[queue] = Int(try connection.declareQueue(channel: 1, name: queue, passive: true).messageCount)
            } catch  where error.replyCode == 404 {
                try connection.openChannel(1)
            }
        }
        return depths
    }
}
