import SwiftqCore
import SwiftqPlatform

/// The consumer's event state: the emitter (once the transport exists) and the worker heartbeat timer.
/// *Owner*: the consumer loop's thread.
package final class ConsumerEvents {
    package var emitter: TaskEventEmitter?
    package var heartbeat: RepeatingTimer?
    /// Whether `worker-online` was sent and `worker-offline` not yet.
    package var workerOnline = false
    /// `sw_ver` of worker events (the supervisor's version; the consumer is the same binary).
    package var softwareVersion = "0"

    package init() {}
}

/// Celery's monitoring events (bootstep "Events"): `worker-online`, `worker-heartbeat` every
/// `events.heartbeat_interval` (kept during a warm shutdown), `worker-offline` before the transport stops, and the
/// task events of ``TaskEventEmitter``.
package extension Consumer {
    /// Bootstep "Events": the emitter watches the core; with `events.enabled`, the worker goes online.
    func startEvents() {
        guard let transport, let core else { return }
        let registry = registry
        let execTasks = Set(configuration.tasks.keys)
        let emitter = TaskEventEmitter(
            dispatcher: EventDispatcher(
                hostname: nodeName,
                exchangeType: transport is AMQPTransport ? .topic : .fanout
            ),
            enabled: configuration.events.enabled,
            broker: transport,
            isKnownTask: { registry.contains($0) || execTasks.contains($0) }
        )
        emitter.softwareVersion = events.softwareVersion
        core.observers.append(emitter)
        events.emitter = emitter
        if configuration.events.enabled { startWorkerEvents() }
    }

    /// The switch the `enable_events` / `disable_events` control commands call: task events on or off at run time.
    /// Turning them on also brings the worker online (Flower broadcasts `enable_events` to see it); worker events
    /// go on after `disable_events`, as Celery's do.
    func setTaskEvents(_ enabled: Bool) {
        guard let emitter = events.emitter else { return }
        if emitter.taskEventsEnabled != enabled {
            logger.info("task events \(enabled ? "enabled" : "disabled")")
        }
        emitter.taskEventsEnabled = enabled
        if enabled && !shuttingDown { startWorkerEvents() }
    }

    /// After a reload: `events.enabled` or `events.heartbeat_interval` changed.
    func eventsReconfigured(previous: Configuration.Events) {
        guard let emitter = events.emitter, previous != configuration.events else { return }
        emitter.dispatcher.hostname = nodeName
        if previous.enabled != configuration.events.enabled {
            setTaskEvents(configuration.events.enabled)
            if !configuration.events.enabled { stopWorkerEvents() }
        } else if events.workerOnline {
            armEventHeartbeat()
        }
    }

    func startWorkerEvents() {
        guard let emitter = events.emitter, !events.workerOnline else { return }
        events.workerOnline = true
        emitter.sendWorker("worker-online", frequency: heartbeatFrequency, active: busyCount, processed: processedCount)
        armEventHeartbeat()
    }

    /// `worker-offline`, and no more heartbeats: before the transport stops (its queue is settled first).
    func stopWorkerEvents() {
        events.heartbeat?.cancel()
        events.heartbeat = nil
        guard let emitter = events.emitter, events.workerOnline else { return }
        events.workerOnline = false
        emitter.sendWorker(
            "worker-offline",
            frequency: heartbeatFrequency,
            active: busyCount,
            processed: processedCount
        )
    }

    private func armEventHeartbeat() {
        events.heartbeat?.cancel()
        events.heartbeat = loop.repeating(every: configuration.events.heartbeatInterval) { [unowned self] in
            events.emitter?.sendWorker(
                "worker-heartbeat",
                frequency: heartbeatFrequency,
                active: busyCount,
                processed: processedCount
            )
        }
    }

    private var heartbeatFrequency: Double { configuration.events.heartbeatInterval.seconds }

    /// Tasks taken since start (Celery's `processed`: every accepted request).
    private var processedCount: Int { core?.machine.counters.received ?? 0 }
}
