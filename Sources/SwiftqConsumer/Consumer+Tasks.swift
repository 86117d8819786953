import Logging
import OrderedCollections
import SwiftqAMQP
import SwiftqCore
import SwiftqPlatform
import SwiftqPool
import SwiftqRedis

#if canImport(Glibc)
import Glibc
#endif

/// Per task name counters and recent runtimes, for `stats`.
package struct TaskStatistics {
    package var succeeded = 0
    package var failed = 0
    /// The most recent runtimes (seconds), a bounded window for percentiles: a ring of ``window`` entries.
    package var runtimes: [Double] = []
    private var next = 0
    package static let window = 1000
    /// The recent runtime (seconds): an exponentially weighted mean of the last few, quick to follow a task that
    /// turns slow (child prefetch queues only tasks whose recent runtime is short).
    package private(set) var recentRuntime: Double?
    /// The typical runtime (seconds), for the short-task window (``DeliveryMachine/currentWindow``): as
    /// ``recentRuntime``, but a lone outlier, a runtime more than ``outlierFactor`` times it, counts as only that
    /// much. A window that followed every outlier (a task of microseconds whose child was descheduled for 40 ms)
    /// would end its streak or shrink, and on RabbitMQ each change cancels and starts the consumers. Two outliers in
    /// a row are a task that turned slow: it then follows ``recentRuntime`` at once.
    package private(set) var typicalRuntime: Double?
    private var lastWasOutlier = false
    package static let outlierFactor = 4.0

    package mutating func record(runtime: Double, success: Bool) {
        if success { succeeded += 1 } else { failed += 1 }
        let recent = recentRuntime.map { $0 * 0.75 + runtime * 0.25 } ?? runtime
        recentRuntime = recent
        if let typical = typicalRuntime, typical > 0, runtime > typical * Self.outlierFactor {
            typicalRuntime = lastWasOutlier ? recent : typical * 0.75 + typical * Self.outlierFactor * 0.25
            lastWasOutlier = true
        } else {
            typicalRuntime = typicalRuntime.map { $0 * 0.75 + runtime * 0.25 } ?? runtime
            lastWasOutlier = false
        }
        if runtimes.count < Self.window {
            runtimes.append(runtime)
        } else {
            runtimes[next] = runtime
            next = (next + 1) % Self.window
        }
    }

    package func percentile(_ fraction: Double) -> Double? {
        guard !runtimes.isEmpty else { return nil }
        let sorted = runtimes.sorted()
        let index = min(sorted.count - 1, Int((Double(sorted.count) * fraction).rounded(.up)) - 1)
        return sorted[max(0, index)]
    }
}

/// Connecting the transport and routing its events; the decisions about deliveries are the
/// ``DeliveryMachine``'s, carried out by the ``ConsumerCore``.
package extension Consumer {
    /// The prefetch window (Celery's): how many unacked messages may be held at once (reserved, and running ones
    /// not acked yet).
    var prefetchWindow: Int {
        let multiplier = configuration.worker.prefetchMultiplier
        // 0 means no limit, as in Celery; a bound still protects memory. The pool's live size counts (pool_grow).
        // With autoscale, the window is the largest pool's, as Celery's, so that a backlog can show.
        return multiplier == 0 ? 100_000 : multiplier * windowPoolSize
    }

    /// The pool size the windows are worked out for: the live size (pool_grow), or the largest with autoscale.
    var windowPoolSize: Int {
        max(pool?.targetSize ?? configuration.worker.effectiveConcurrency, autoscaler?.maximum ?? 0)
    }

    /// How much larger than ``prefetchWindow`` the window is while short tasks come in: `worker.child_prefetch` per
    /// slot (prefork: the children's own queues; threads: as many), none with the solo pool.
    var childQueueAllowance: Int {
        DeliveryMachine.Settings.childQueueAllowance(configuration.worker, poolSize: windowPoolSize)
    }

    /// The transport for a configuration (the default ``Consumer/makeTransport``): the URL's scheme picks Redis or
    /// RabbitMQ; nothing else in the consumer depends on the choice.
    static func transport(
        for configuration: Configuration,
        nodeName: String,
        daemonID: String?
    ) throws -> any BrokerTransport {
        let prefetchWindow = DeliveryMachine.Settings(configuration: configuration, nodeName: nodeName).window
        var url = configuration.broker.url
        if url == "embedded" { url = Configuration.EmbeddedBroker.url(for: configuration, database: 0) }
        var backend = configuration.resultBackend.url
        if backend == "embedded" { backend = Configuration.EmbeddedBroker.url(for: configuration, database: 1) }
        let expires = configuration.resultBackend.expires == .zero ? nil : configuration.resultBackend.expires
        let isAMQP = url.lowercased().hasPrefix("amqp://") || url.lowercased().hasPrefix("amqps://")
        let usesRPC = backend?.lowercased().hasPrefix("rpc://") == true
        if isAMQP {
            let brokerURLs = try AMQPURL.failoverList(parsing: url)
            return try AMQPTransport(
                urls: brokerURLs,
                tls: configuration.broker.tls.amqpOptions(for: brokerURLs[0]),
                broker: configuration.broker,
                queues: configuration.worker.queues,
                deadLetterQueues: Array(
                    Set(configuration.worker.queues.map(configuration.worker.deadLetterQueue(for:)))
                )
                .sorted(),
                window: configuration.worker.prefetchMultiplier == 0 ? 0 : prefetchWindow,
                nodeName: nodeName,
                rpcResults: usesRPC,
                redisResults: usesRPC
                    ? nil
                    : try backend.map {
                        try RedisTarget(parsing: $0, masterName: configuration.resultBackend.masterName)
                    },
                resultExpires: expires,
                consumeArguments: AMQPConsumerTimeout.consumeArguments(for: configuration)
            )
        } else {
            if usesRPC {
                throw ConsumerStartError(
                    message: "result_backend.url rpc:// sends results as messages over a RabbitMQ broker; "
                        + "with a Redis broker use a redis:// result backend"
                )
            }
            return try RedisTransport(
                broker: try RedisTarget(parsing: url, masterName: configuration.broker.masterName),
                backend: try backend.map {
                    try RedisTarget(parsing: $0, masterName: configuration.resultBackend.masterName)
                },
                queues: configuration.worker.queues,
                node: nodeName,
                daemonID: daemonID,
                resultExpires: expires,
                visibilityTimeout: configuration.broker.visibilityTimeout,
                revokeExpiry: configuration.worker.revokesExpire.seconds
            )
        }
    }

    /// Starts the broker transport (bootstep "Connection") with ``makeTransport``, and the task path on it.
    func startConnection() throws {
        let transport = try makeTransport(configuration, nodeName, daemonID)
        self.transport = transport
        guard let pool else { throw ConsumerStartError(message: "the pool is not running") }
        let registry = registry
        let core = ConsumerCore(
            machine: DeliveryMachine(
                settings: DeliveryMachine.Settings(configuration: configuration, nodeName: nodeName),
                isKnownTask: { registry.contains($0) }
            ),
            broker: transport,
            pool: pool,
            timers: EventLoopTimers(loop: loop),
            logger: logger
        )
        core.onPoolEvent = { [unowned self] event in poolEvent(event) }
        let events = transport.events
        core.takeQueuedBrokerEvents = { [unowned self] in
            for event in events.takeQueued() { handle(event) }
        }
        core.brokerMayWait = { events.setQuiet($0) }
        core.observers.append(metrics)
        core.observers.append(TaskEndLog(logger: logger))
        self.core = core
        loop.watch(transport.events.descriptor) { [unowned self] _ in
            // Deliveries are dispatched by the core as they are received; nothing else here frees a slot.
            for event in transport.events.drain() { handle(event) }
        }
        loadRevokes()  // Consumer+Revokes.swift
        performHeldControlEffects()  // Consumer+Control.swift: revokes and limits set while starting
        transport.setMingle(revokes: configuration.worker.mingle ? core.machine.revoked.ids : nil)
        transport.start()
        startQueueDepthSampling()  // Consumer+QueueDepth.swift
        logger.info(
            "consuming from \(transport.redactedURL)",
            metadata: [
                "queues": "\(configuration.worker.queues.joined(separator: ","))", "prefetch": "\(prefetchWindow)",
            ]
        )
    }

    /// Grants the transport as much credit as the window allows (bootstep "Tasks").
    func replenishCredit() {
        core?.pump()
    }

    func handle(_ event: BrokerEvent) {
        switch event {
        case .delivered(let messages):
            core?.received(messages)
        case .state(let role, let connected, let detail):
            if brokerConnectivity.report(role, connected: connected, detail: detail) {
                if brokerConnected {
                    logger.info("broker: \(brokerDetail)")
                } else {
                    logger.error("broker unreachable: \(brokerDetail); reconnecting")
                }
                supervisor.send(ConsumerMessage.brokerState(connected: brokerConnected, detail: brokerDetail).json)
            }
            metrics.brokerState(connected: brokerConnected)
        case .settled(let tags, let results):
            core?.settled(tags: tags, results: results)
        case .reconnected(let held):
            core?.reconnected(held: held)
        case .restored(let count):
            if count > 0 { logger.info("gave \(count) reserved message(s) back to the broker") }
        case .notice(let text):
            logger.warning("broker: \(text)")
        case .control(let deliveries):
            handleControl(deliveries)  // Consumer+Control.swift
        case .revokesFound(let records, let source):
            mergeFoundRevokes(records, source: source)  // Consumer+Revokes.swift
        case .queueDepths(let depths):
            if let depths { metrics.queueDepths(depths) } else { metrics.queueDepthsUnknown() }
        }
    }
}
