import SwiftqCore
import SwiftqTasks

extension DeliveryMachine {
    /// A task asked to be replaced by a signature (``TaskReplace``, Celery's `self.replace(sig)`): one plan publishes
    /// the replacement as Celery prepares it (``Canvas/replacement(of:with:)``: under the task's id, with its callbacks,
    /// errbacks, chord, group and the rest of its chain), then acks the message; the task itself stores no result, as
    /// Celery's `Ignore` (the replacement stores it under the same id). A replacement Celery refuses (an empty chain,
    /// a signature that is part of a chord) fails the task with `ImproperlyConfigured`, as it fails a Python task.
    mutating func replaceByTask(
        _ delivery: Delivery,
        _ signature: JSONValue,
        runtime: Double,
        now: CeleryTimestamp,
        into actions: inout [Action]
    ) {
        let message = delivery.message
        let context = Canvas.Context(finished: message, origin: settings.nodeName, defaultQueue: settings.defaultQueue)
        let outcome: Canvas.Outcome
        switch Canvas.replace(message, with: signature, context: context, now: now, newID: newID) {
        case .failure(let failure):
            complete(
                delivery,
                status: .failure(failure),
                runtime: runtime,
                disposition: failureDisposition(message.name, timedOut: false),
                now: now,
                into: &actions
            )
            return
        case .success(let replacement):
            outcome = replacement
        }
        delivery.state = .settling
        counters.canvas["replaced", default: 0] += 1
        recordStatistics(name: message.name, runtime: runtime, success: true)
        actions.append(
            .log(
                .init(
                    level: .info,
                    text: "replaced by \(signature["task"]?.stringValue ?? "a signature")",
                    taskID: message.id,
                    taskName: message.name
                )
            )
        )
        var plan = Settlement(
            chordSetups: outcome.chordSetups,
            publishes: outcome.publishes,
            deliveryTag: delivery.ackedEarly ? nil : delivery.tag,
            taskID: message.id,
            disposition: delivery.ackedEarly ? .none : .ack
        )
        if settings.storesResults { plan.followingResults = outcome.results }
        recordCanvas(outcome, chordParts: 0, message: message, actions: &actions)
        if let tag = delivery.tag, !delivery.ackedEarly { actions.append(.setRunning(tag: tag, false)) }
        settle(plan, into: &actions)
    }
}
