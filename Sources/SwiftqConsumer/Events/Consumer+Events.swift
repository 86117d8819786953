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
///
/// As in Celery, the worker events follow `events.heartbeat` (Celery's Heart bootstep, off only with
/// `--without-heartbeat`), not `events.enabled`: task events off (Celery's default) still leaves the worker visible
/// to Flower and `celery events` as online, with heartbeats.
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
        emitter.onDropped = { [unowned self] count, burstStarted in
            metrics.eventsDropped(count)
            if burstStarted {
                logger.warning(
                    """
                    the broker connection does not keep up with the events: dropping the oldest (counted in \
                    stats events.dropped and swiftq_events_dropped_total; logged once per burst)
                    """
                )
            }
        }
        core.observers.append(emitter)
        events.emitter = emitter
        if configuration.events.heartbeat { startWorkerEvents() }
    }

    /// The switch the `enable_events` / `disable_events` control commands call: task events on or off at run time.
    /// Worker events are not touched (Celery's commands change only the dispatcher's `task` group).
    func setTaskEvents(_ enabled: Bool) {
        guard let emitter = events.emitter else { return }
        if emitter.taskEventsEnabled != enabled {
            logger.info("task events \(enabled ? "enabled" : "disabled")")
        }
        emitter.taskEventsEnabled = enabled
    }

    /// After a reload: `events.enabled`, `events.heartbeat` or `events.heartbeat_interval` changed.
    func eventsReconfigured(previous: Configuration.Events) {
        guard let emitter = events.emitter, previous != configuration.events else { return }
        emitter.dispatcher.hostname = nodeName
        if previous.enabled != configuration.events.enabled {
            setTaskEvents(configuration.events.enabled)
        }
        if previous.heartbeat != configuration.events.heartbeat {
            if configuration.events.heartbeat && !shuttingDown { startWorkerEvents() } else { stopWorkerEvents() }
        } else if events.workerOnline && previous.heartbeatInterval != configuration.events.heartbeatInterval {
            armEventHeartbeat()
        }
    }

    func startWorkerEvents() {
        guard let emitter = events.emitter, !events.workerOnline else { return }
        events.workerOnline = true
        emitter.sendWorker(
            "worker-online",
            frequency: heartbeatFrequency,
            active: activeCount,
            processed: processedCount
        )
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
            active: activeCount,
            processed: processedCount
        )
    }

    private func armEventHeartbeat() {
        events.heartbeat?.cancel()
        events.heartbeat = loop.repeating(every: configuration.events.heartbeatInterval) { [unowned self] in
            events.emitter?.sendWorker(
                "worker-heartbeat",
                frequency: heartbeatFrequency,
                active: activeCount,
                processed: processedCount
            )
        }
    }

    private var heartbeatFrequency: Double { configuration.events.heartbeatInterval.seconds }

    /// Tasks taken since start (Celery's `processed`: every accepted request).
    private var processedCount: Int { core?.machine.counters.received ?? 0 }
}
