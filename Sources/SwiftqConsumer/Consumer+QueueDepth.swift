import SwiftqAMQP
import SwiftqCore
import SwiftqRedis

/// Queue depth for `/metrics`: a ``QueueDepthSampler`` on a connection of its own, started with the transport when
/// `metrics.listen` is set and `metrics.queue_depth_interval` is not zero. Its samples come back on the transport's
/// event mailbox as ``BrokerEvent/queueDepths(_:)``.
extension Consumer {
    func startQueueDepthSampling() {
        let interval = configuration.metrics.queueDepthInterval
        guard configuration.metrics.listen != nil, interval > .zero, let transport else { return }
        let source: QueueDepthSampler.Source
        do {
            source = try Self.depthSource(configuration)
        } catch {
            logger.warning("queue depth is not sampled: \(error)")
            return
        }
        let events = transport.events
        let sampler = QueueDepthSampler(
            source: source,
            queues: runtimeQueues ?? configuration.worker.queues,
            interval: interval
        ) { result in
            switch result {
            case .success(let depths): events.post(.queueDepths(depths))
            case .failure: events.post(.queueDepths(nil))
            }
        }
        depthSampler = sampler
        sampler.start()
    }

    /// The broker the transport uses, as the sampler reaches it.
    static func depthSource(_ configuration: Configuration) throws -> QueueDepthSampler.Source {
        var url = configuration.broker.url
        if url == "embedded" { url = Configuration.EmbeddedBroker.url(for: configuration, database: 0) }
        let lowered = url.lowercased()
        guard lowered.hasPrefix("amqp://") || lowered.hasPrefix("amqps://") else {
            return .redis(try RedisTarget(parsing: url, masterName: configuration.broker.masterName))
        }
        let amqp = try AMQPURL.failoverList(parsing: url)
        return .amqp(amqp, configuration.broker.tls.amqpOptions(for: amqp[0]))
    }
}
