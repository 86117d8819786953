import OrderedCollections
import SwiftqCore
import SwiftqPool
import SwiftqTasks

/// What watches the ``ConsumerCore`` without steering it: told of deliveries before the machine sees them, of
/// revokes before they are carried out, and of pool events after the machine has handled them.
///
/// The core hands over the deliveries concerned, never the machine itself: a struct of that size passed from a
/// class property is copied, field by field, for every call.
package protocol ConsumerCoreObserver: AnyObject {
    func received(_ messages: [InboundMessage], now: CeleryTimestamp)
    /// `waiting`: the deliveries of that id held here and not running yet (those a revoke ends at once).
    func revoking(_ taskID: String, waiting: [DeliveryMachine.Delivery])
    /// `delivery`: for `.started`, looks up the delivery the job runs (nil for other events). Called only by an
    /// observer that will use it: a delivery is a copy of the whole task message, which a worker without events,
    /// metrics or info logs would make for every task for nothing.
    func poolEvent(_ event: PoolEvent, delivery: () -> DeliveryMachine.Delivery?)
}

/// Celery's task and worker events, sent fire-and-forget through the broker transport's bounded event buffer
/// (``EventBuffer``), which its writer empties in one batch per turn, apart from every task's own result and ack plan
/// (an event never delays or orders a task's settlement, and a lost or dropped event loses nothing else).
///
/// Task events follow ``taskEventsEnabled`` (`events.enabled`, switched at run time by `enable_events` /
/// `disable_events`: ``Consumer/setTaskEvents(_:)``); worker events (`worker-online`, `worker-heartbeat`,
/// `worker-offline`) are sent by the consumer while events are on.
///
/// *Owner*: the consumer loop's thread.
package final class TaskEventEmitter: ConsumerCoreObserver {
    package var dispatcher: EventDispatcher
    package var taskEventsEnabled: Bool
    private let broker: any BrokerPort
    /// Whether a task name can run here (registry or exec task): unknown ones get `task-failed` (`NotRegistered`),
    /// as Celery's `on_unknown_task` sends.
    private let isKnownTask: (String) -> Bool
    /// The wall clock in seconds, injectable for tests.
    package var now: () -> Double = { CeleryTimestamp.now.secondsSince1970 }
    /// Events sent, for `stats`.
    package private(set) var sent = 0
    /// Events the transport's buffer dropped (the oldest, while its writer lagged), for `stats`.
    package private(set) var dropped = 0
    /// Told of each drop: how many, and whether they start a burst (logged once per burst).
    package var onDropped: ((_ count: Int, _ burstStarted: Bool) -> Void)?
    /// `sw_ver` of worker events.
    package var softwareVersion = "0"
    /// Hard time limits of running tasks that have one, for the `TimeLimitExceeded(<seconds>)` of `task-failed`.
    private var hardLimits: [String: Double] = [:]

    package init(
        dispatcher: EventDispatcher,
        enabled: Bool,
        broker: any BrokerPort,
        isKnownTask: @escaping (String) -> Bool
    ) {
        self.dispatcher = dispatcher
        self.taskEventsEnabled = enabled
        self.broker = broker
        self.isKnownTask = isKnownTask
    }

    /// Sends events now, as one plan of publishes.
    package func send(_ events: [(type: String, fields: OrderedDictionary<String, JSONValue>)]) {
        guard !events.isEmpty else { return }
        let time = now()
        let messages = events.map { dispatcher.message($0.type, $0.fields, now: time) }
        sent += messages.count
        let appended = broker.publishEvents(messages)
        if appended.dropped > 0 {
            dropped += appended.dropped
            onDropped?(appended.dropped, appended.burstStarted)
        }
    }

    /// A worker event with the heartbeat fields (`worker-online`, `worker-heartbeat`, `worker-offline`).
    package func sendWorker(_ type: String, frequency: Double, active: Int, processed: Int) {
        send([
            (
                type,
                [
                    "freq": .double(frequency),
                    "active": .int(Int64(active)),
                    "processed": .int(Int64(processed)),
                    "loadavg": .array(EventDispatcher.loadAverage),
                    "sw_ident": "swiftq",
                    "sw_ver": .string(softwareVersion),
                    "sw_sys": "Linux",
                ]
            )
        ])
    }

    /// `task-retried`, for the retry path (Celery: `exception` the repr of the retry's reason, `"None"` without one).
    package func taskRetried(_ taskID: String, exception: String?, traceback: String?) {
        guard taskEventsEnabled else { return }
        send([
            (
                "task-retried",
                [
                    "uuid": .string(taskID), "exception": .string(exception ?? "None"),
                    "traceback": traceback.map(JSONValue.string) ?? .null,
                ]
            )
        ])
    }

    // MARK: ConsumerCoreObserver

    package func received(_ messages: [InboundMessage], now: CeleryTimestamp) {
        guard taskEventsEnabled else { return }
        var events: [(type: String, fields: OrderedDictionary<String, JSONValue>)] = []
        for inbound in messages {
            switch inbound {
            case .task(let message, _, _):
                guard isKnownTask(message.name) else {
                    events.append(
                        (
                            "task-failed",
                            [
                                "uuid": .string(message.id),
                                "exception": .string(
                                    EventDispatcher.exceptionRepr(
                                        type: "NotRegistered",
                                        arguments: [.string(message.name)]
                                    )
                                ),
                                "traceback": .null,
                            ]
                        )
                    )
                    continue
                }
                events.append(("task-received", Self.receivedFields(message)))
                if let expires = message.expires, expires <= now {
                    events.append(
                        (
                            "task-revoked",
                            ["uuid": .string(message.id), "terminated": false, "signum": .null, "expired": true]
                        )
                    )
                }
            case .undecodable(let error, _, _):
                guard let id = error.taskID else { continue }
                events.append(("task-rejected", ["uuid": .string(id), "requeue": false]))
            case .malformed:
                continue
            }
        }
        send(events)
    }

    package func revoking(_ taskID: String, waiting: [DeliveryMachine.Delivery]) {
        guard taskEventsEnabled else { return }
        // Only a task held here and not running yet is revoked at once; a running one is revoked when its child is
        // terminated (``poolEvent(_:delivery:)``), one that arrives later when it is received.
        guard !waiting.isEmpty else { return }
        send([("task-revoked", ["uuid": .string(taskID), "terminated": false, "signum": .null, "expired": false])])
    }

    package func poolEvent(_ event: PoolEvent, delivery: () -> DeliveryMachine.Delivery?) {
        guard taskEventsEnabled else { return }
        switch event {
        case .slotReady, .slotExited, .returned:
            return
        case .started(let jobID, _, _):
            if let hard = delivery()?.message.timeLimit.hard {
                hardLimits[jobID] = hard
            }
            send([("task-started", ["uuid": .string(jobID)])])
        case .finished(let jobID, .success(let value), let runtime, _):
            hardLimits[jobID] = nil
            send([
                (
                    "task-succeeded",
                    [
                        "uuid": .string(jobID), "result": .string(PythonRepr.repr(value)),
                        "runtime": .double(runtime),
                    ]
                )
            ])
        case .finished(let jobID, .failure(let failure), _, _):
            hardLimits[jobID] = nil
            send([("task-failed", Self.failedFields(jobID, failure))])
        case .finished(let jobID, .retry(let retry), _, _):
            // Celery's `on_retry`: the repr of the retry's cause, "None" without one.
            hardLimits[jobID] = nil
            let exception = retry.cause.map {
                EventDispatcher.exceptionRepr(type: $0.type, arguments: $0.arguments ?? [.string($0.message)])
            }
            taskRetried(jobID, exception: exception, traceback: retry.cause?.traceback)
        case .finished(let jobID, .reject(let reject), _, _):
            hardLimits[jobID] = nil
            send([("task-rejected", ["uuid": .string(jobID), "requeue": .bool(reject.requeue)])])
        case .finished(let jobID, .ignore, _, _), .finished(let jobID, .replace, _, _):
            // Celery sends no event for an ignored task (a replaced one ends with Ignore).
            hardLimits[jobID] = nil
        case .lost(let jobID, _, _, let reason):
            let hard = hardLimits.removeValue(forKey: jobID)
            switch reason {
            case .shutdown:
                return
            case .terminated(let signal):
                send([
                    (
                        "task-revoked",
                        ["uuid": .string(jobID), "terminated": true, "signum": .int(Int64(signal)), "expired": false]
                    )
                ])
            case .timeLimit:
                send([("task-failed", Self.failedFields(jobID, .timeLimitExceeded(seconds: hard ?? 0)))])
            default:
                let failure = TaskFailure(
                    type: "WorkerLostError",
                    message: "Worker exited prematurely: \(reason).",
                    module: "billiard.exceptions"
                )
                send([("task-failed", Self.failedFields(jobID, failure))])
            }
        }
    }

    // MARK: Fields

    /// `task-received` as Celery's strategy sends it: the argument reprs the client sent (or ours), ids, retries,
    /// ETA and expiry as ISO 8601.
    package static func receivedFields(_ message: TaskMessage) -> OrderedDictionary<String, JSONValue> {
        [
            "uuid": .string(message.id),
            "name": .string(message.name),
            "args": .string(message.argsRepr ?? PythonRepr.argsRepr(message.args)),
            "kwargs": .string(message.kwargsRepr ?? PythonRepr.repr(.object(message.kwargs))),
            "root_id": message.rootID.map(JSONValue.string) ?? .null,
            "parent_id": message.parentID.map(JSONValue.string) ?? .null,
            "retries": .int(Int64(message.retries)),
            "eta": message.eta.map { .string($0.iso8601) } ?? .null,
            "expires": message.expires.map { .string($0.iso8601) } ?? .null,
        ]
    }

    /// `task-failed`: the exception as Python's `repr()`, `Name('message')`, and the traceback.
    package static func failedFields(_ taskID: String, _ failure: TaskFailure) -> OrderedDictionary<String, JSONValue> {
        let exception = EventDispatcher.exceptionRepr(
            type: failure.type,
            arguments: failure.arguments ?? [.string(failure.message)]
        )
        return [
            "uuid": .string(taskID),
            "exception": .string(exception),
            "traceback": failure.traceback.map(JSONValue.string) ?? .null,
        ]
    }
}
