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

    /// The broker as the transport reaches it: a Redis server or its sentinels; a RabbitMQ host list, tried in order.
    package enum Source: Sendable {
        case redis(RedisTarget)
        case amqp([AMQPURL], AMQPTLSOptions?)
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
            let sample: Result<[String: Int], any Error>
            switch source {
            case .redis(let target):
                sample = Self.sampleRedis(list, target: target, connection: &redis)
            case .amqp(let urls, let tls):
                sample = Self.sampleAMQP(list, urls: urls, tls: tls, connection: &amqp)
            }
            report(sample)
            _ = wake.wait(timeout: interval)
        }
        amqp?.close()
    }

    /// One Redis sample, connecting first when needed; the connection is dropped after an error.
    private static func sampleRedis(
        _ queues: [String],
        target: RedisTarget,
        connection: inout RedisConnection?
    ) -> Result<[String: Int], any Error> {
        do {
            if connection == nil {
                connection = try target.connect(connectTimeout: .seconds(5), commandTimeout: .seconds(5))
            }
            guard let current = connection else { return .success([:]) }
            return .success(try redisDepths(queues, on: current))
        } catch {
            connection = nil
            return .failure(error)
        }
    }

    /// One RabbitMQ sample, connecting first when needed; the connection is closed after an error.
    private static func sampleAMQP(
        _ queues: [String],
        urls: [AMQPURL],
        tls: AMQPTLSOptions?,
        connection: inout AMQPConnection?
    ) -> Result<[String: Int], any Error> {
        do {
            if connection == nil { connection = try connect(urls, tls: tls) }
            guard let current = connection else { return .success([:]) }
            return .success(try amqpDepths(queues, on: current))
        } catch {
            connection?.close()
            connection = nil
            return .failure(error)
        }
    }

    /// The first host of the list that accepts a connection; the last host's error when none does.
    static func connect(_ urls: [AMQPURL], tls: AMQPTLSOptions?) throws(AMQPError) -> AMQPConnection {
        var failure: AMQPError?
        for url in urls {
            switch Result(catching: { () throws(AMQPError) in
                try AMQPConnection(
                    url: url,
                    tls: tls,
                    heartbeat: .zero,
                    connectTimeout: .seconds(5),
                    rpcTimeout: .seconds(5),
                    connectionName: "swiftqd queue depth"
                )
            }) {
            case .success(let connection): return connection
            case .failure(let error): failure = error
            }
        }
        guard let failure else { preconditionFailure("a broker URL list is never empty") }
        throw failure
    }

    /// `LLEN` of every priority list of every queue, in one round trip; a queue with no list at all is reported as 0
    /// (on Redis an empty queue and a missing one look the same).
    static func redisDepths(_ queues: [String], on connection: RedisConnection) throws -> [String: Int] {
        let layout = KombuRedisLayout()
        let steps = KombuRedisLayout.prioritySteps
        var commands: [[RedisArgument]] = []
        for queue in queues {
            for priority in steps {
                let key = RedisArgument(layout.queueKey(queue: queue, priority: priority))
                commands.append(["LLEN", key])
            }
        }
        guard !commands.isEmpty else { return [:] }
        let replies: [RedisReply] = try connection.pipeline(commands)
        var depths: [String: Int] = [:]
        let perQueue = steps.count
        for (index, queue) in queues.enumerated() {
            var total = 0
            for reply in replies[(index * perQueue)..<((index + 1) * perQueue)] {
                if let error = reply.errorMessage {
                    throw RedisError(code: .server, message: "LLEN \(queue): \(error)")
                }
                total += Int(reply.integer ?? 0)
            }
            depths[queue] = total
        }
        return depths
    }

    /// A passive declare per queue on a channel opened for the sample; a missing queue (404, the channel closed) is
    /// left out and the channel opened again.
    static func amqpDepths(_ queues: [String], on connection: AMQPConnection) throws(AMQPError) -> [String: Int] {
        var depths: [String: Int] = [:]
        try connection.openChannel(1)
        for queue in queues {
            switch Result(catching: { () throws(AMQPError) in
                try connection.declareQueue(channel: 1, name: queue, passive: true)
            }) {
            case .success(let declared):
                depths[queue] = Int(declared.messageCount)
            case .failure(let error) where error.replyCode == 404:
                try connection.openChannel(1)
            case .failure(let error):
                throw error
            }
        }
        try? connection.closeChannel(1)
        return depths
    }
}
