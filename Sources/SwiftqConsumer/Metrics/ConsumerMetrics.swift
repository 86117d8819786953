import Prometheus
import SwiftqCore
import SwiftqPool

/// The consumer's Prometheus metrics, kept in swift-prometheus's registry (which writes the text exposition format),
/// fed by watching the task path (``ConsumerCoreObserver``), the pool's exits and the broker's state. Gauges that
/// describe the present (prefetch in use, busy and idle children) are set when the text is rendered.
///
/// Task names come from messages, so labels are bounded as `stats` bounds its table: past
/// ``DeliveryMachine/maximumTaskNames`` names, others count as ``DeliveryMachine/otherTasksName``.
///
/// *Owner*: the consumer loop's thread (the registry itself is thread-safe; the name table is not).
package final class ConsumerMetrics: ConsumerCoreObserver {
    package let registry = PrometheusCollectorRegistry()
    /// Whether task events are counted: only while `metrics.listen` is set (nobody reads them otherwise, and they
    /// cost several hash lookups per task). The supervisor keeps the listener it started with across reloads, and
    /// the configuration it sends says so.
    package var countsTasks = true {
        didSet { if !countsTasks { running.removeAll() } }
    }
    private var names: Set<String> = []
    /// Task name and queue of running jobs, for the events that only carry the job id.
    private var running: [String: (task: String, queue: String)] = [:]
    /// Runtime buckets in seconds: Celery tasks run from milliseconds to hours.
    static let runtimeBuckets: [Double] = [
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600,
    ]

    private let prefetchInUse: Gauge
    private let prefetchWindow: Gauge
    private let heldForETA: Gauge
    private let brokerConnected: Gauge
    private let brokerReconnects: Counter
    private let eventsDroppedCounter: Counter
    private var wasConnected = false

    package init() {
        prefetchInUse = registry.makeGauge(
            descriptor: Self.name(
                "prefetch_in_use",
                "messages",
                "Messages held in the prefetch window (ready, and running ones not acked yet)"
            )
        )
        prefetchWindow = registry.makeGauge(
            descriptor: Self.name("prefetch_window", "messages", "Size of the prefetch window")
        )
        heldForETA = registry.makeGauge(
            descriptor: Self.name("held_for_eta", "messages", "Messages held for their ETA or countdown")
        )
        brokerConnected = registry.makeGauge(
            descriptor: Self.name("broker_connected", "bool", "1 while the broker connection is up")
        )
        brokerReconnects = registry.makeCounter(
            descriptor: Self.name("broker_reconnects", "total", "Broker connections re-established after a loss")
        )
        eventsDroppedCounter = registry.makeCounter(
            descriptor: Self.name(
                "events_dropped",
                "total",
                "Celery events dropped (the oldest) while the broker connection lagged behind them"
            )
        )
    }

    /// Events the transport's bounded buffer dropped: `swiftq_events_dropped_total`.
    package func eventsDropped(_ count: Int) {
        eventsDroppedCounter.increment(by: Int64(count))
    }

    private static func name(_ metric: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "swiftq", metricName: metric, unitName: unit, helpText: help)
    }

    private func label(_ task: String) -> String {
        if names.contains(task) { return task }
        guard names.count < DeliveryMachine.maximumTaskNames else { return DeliveryMachine.otherTasksName }
        names.insert(task)
        return task
    }

    private struct CounterKey: Hashable {
        var state: String
        var task: String
        var queue: String
    }

    /// The task counters and runtime histograms made so far. Making one builds its descriptor's name and looks it
    /// up in the registry under its lock, several times per task on the consumer loop; the cache does it once per
    /// label set (bounded like the labels: task names by ``label(_:)``, queues by the configuration).
    private var counters: [CounterKey: Counter] = [:]
    private var runtimes: [String: ValueHistogram] = [:]

    /// Counts one task event: `swiftq_tasks_<state>_total{task,queue}`.
    package func count(_ state: String, task: String, queue: String) {
        let key = CounterKey(state: state, task: label(task), queue: queue)
        if let counter = counters[key] {
            counter.increment()
            return
        }
        let counter = registry.makeCounter(
            descriptor: Self.name("tasks_\(state)", "total", "Tasks \(state), by task name and queue"),
            labels: [("task", key.task), ("queue", queue)]
        )
        counters[key] = counter
        counter.increment()
    }

    private func runtime(_ seconds: Double, task: String) {
        let name = label(task)
        if let histogram = runtimes[name] {
            histogram.record(seconds)
            return
        }
        let histogram = registry.makeValueHistogram(
            descriptor: Self.name("task_runtime", "seconds", "Task runtime in the pool, by task name"),
            labels: [("task", name)],
            buckets: Self.runtimeBuckets
        )
        runtimes[name] = histogram
        histogram.record(seconds)
    }

    /// A pool child exited: `swiftq_pool_child_exits_total{reason}`.
    package func childExited(_ reason: ExitReason) {
        registry.makeCounter(
            descriptor: Self.name("pool_child_exits", "total", "Pool child exits, by reason"),
            labels: [("reason", reason.name)]
        ).increment()
    }

    /// The broker connection went up or down.
    package func brokerState(connected: Bool) {
        brokerConnected.set(Int64(connected ? 1 : 0))
        if connected && !wasConnected && reconnectable { brokerReconnects.increment() }
        if connected { reconnectable = true }
        wasConnected = connected
    }

    /// Set after the first connection: later ones are reconnects.
    private var reconnectable = false

    /// `swiftq_queue_depth_messages{queue}` of the queues sampled last (``QueueDepthSampler``).
    private var depthGauges: [String: Gauge] = [:]

    /// A queue-depth sample: each sampled queue's gauge is set; queues no longer sampled (cancelled, or gone on
    /// RabbitMQ) are removed, so that a stale depth is never shown as current.
    package func queueDepths(_ depths: [String: Int]) {
        for (queue, gauge) in depthGauges where depths[queue] == nil {
            registry.unregisterGauge(gauge)
            depthGauges[queue] = nil
        }
        for (queue, depth) in depths {
            if let gauge = depthGauges[queue] {
                gauge.set(Int64(depth))
                continue
            }
            let descriptor: MetricNameDescriptor = Self.name(
                "queue_depth",
                "messages",
                "Messages waiting in a consumed queue (sampled every metrics.queue_depth_interval)"
            )
            let gauge: Gauge = registry.makeGauge(descriptor: descriptor, labels: [("queue", queue)])
            depthGauges[queue] = gauge
            gauge.set(Int64(depth))
        }
    }

    /// A failed sample: the gauges are removed (an unknown depth is not shown as the last known one).
    package func queueDepthsUnknown() {
        queueDepths([:])
    }

    /// The text exposition format, with the present-state gauges set first.
    package func render(machine: DeliveryMachine?, pool: (any WorkPool)?) -> String {
        if let machine {
            prefetchInUse.set(Int64(machine.heldInWindow))
            prefetchWindow.set(Int64(machine.settings.window))
            heldForETA.set(Int64(machine.heldForETA))
        }
        if let pool {
            let busy = machine?.running.count ?? 0
            registry.makeGauge(
                descriptor: Self.name("pool", "processes", "Pool children by state"),
                labels: [("state", "busy")]
            ).set(Int64(busy))
            registry.makeGauge(
                descriptor: Self.name("pool", "processes", "Pool children by state"),
                labels: [("state", "idle")]
            ).set(Int64(pool.idleSlots))
        }
        return registry.emitToString()
    }

    // MARK: ConsumerCoreObserver

    package func received(_ messages: [InboundMessage], now: CeleryTimestamp) {
        guard countsTasks else { return }
        for inbound in messages {
            switch inbound {
            case .task(let message, _, let queue):
                count("received", task: message.name, queue: queue)
            case .undecodable(let error, _, let queue):
                count("rejected", task: error.taskName ?? "(undecodable)", queue: queue)
            case .malformed(_, let queue):
                count("rejected", task: "(malformed)", queue: queue)
            }
        }
    }

    package func revoking(_ taskID: String, waiting: [DeliveryMachine.Delivery]) {
        guard countsTasks else { return }
        for delivery in waiting { count("revoked", task: delivery.message.name, queue: delivery.queue) }
    }

    package func poolEvent(_ event: PoolEvent, delivery: () -> DeliveryMachine.Delivery?) {
        switch event {
        case .slotReady, .returned:
            return
        case .slotExited(_, _, let reason):
            childExited(reason)
        case .started(let jobID, _, _):
            guard countsTasks, let delivery = delivery() else { return }
            running[jobID] = (delivery.message.name, delivery.queue)
            count("started", task: delivery.message.name, queue: delivery.queue)
        case .finished(let jobID, let outcome, let seconds, _):
            guard !running.isEmpty, let job = running.removeValue(forKey: jobID) else { return }
            if case .success = outcome {
                count("succeeded", task: job.task, queue: job.queue)
            } else {
                count("failed", task: job.task, queue: job.queue)
            }
            runtime(seconds, task: job.task)
        case .lost(let jobID, _, _, let reason):
            guard !running.isEmpty, let job = running.removeValue(forKey: jobID) else { return }
            switch reason {
            case .shutdown: return
            case .terminated: count("revoked", task: job.task, queue: job.queue)
            default: count("failed", task: job.task, queue: job.queue)
            }
        }
    }
}
