import SwiftqCore
import SwiftqPool
import SwiftqTasks

extension DeliveryMachine {
    /// A task that recorded effects (``TaskEffect``: canvases it sent, members it added to its chord, results it
    /// stored) finished: its outcome is decided as for any task (``finish(_:_:runtime:now:into:)``), and the effects
    /// (``Canvas/effects(_:of:context:storesResults:now:newID:)``) go first in that outcome's plan: chord counters,
    /// then their publishes, then their results, before the task's own publishes, result and ack. One plan, so a
    /// failing step leaves the message unacked and nothing after it done. Effects Celery would refuse (adding to a
    /// chord from a task outside one) fail the task instead, and none of its effects is performed.
    mutating func finish(
        _ delivery: Delivery,
        _ outcome: PoolOutcome,
        runtime: Double,
        effects: [TaskEffect],
        now: CeleryTimestamp,
        into actions: inout [Action]
    ) {
        let message = delivery.message
        let context = Canvas.Context(finished: message, origin: settings.nodeName, defaultQueue: settings.defaultQueue)
        let performed: Canvas.Outcome
        switch Canvas.effects(
            effects,
            of: message,
            context: context,
            storesResults: settings.storesResults,
            now: now,
            newID: newID
        ) {
        case .failure(let failure):
            actions.append(
                .log(
                    .init(
                        level: .error,
                        text: "the task's effects cannot be performed (\(failure)); the task fails",
                        taskID: message.id,
                        taskName: message.name
                    )
                )
            )
            finish(delivery, .failure(failure), runtime: runtime, now: now, into: &actions)
            return
        case .success(let outcome):
            performed = outcome
        }
        counters.canvas["effects", default: 0] += effects.count
        delivery.effectChildren = performed.children
        recordCanvas(performed, chordParts: 0, message: message, actions: &actions)
        var decided: [Action] = []
        finish(delivery, outcome, runtime: runtime, now: now, into: &decided)
        var merged = false
        for action in decided {
            if !merged, case .settle(var plan) = action, plan.taskID == message.id {
                plan.prepend(performed)
                actions.append(.settle(plan))
                merged = true
            } else {
                actions.append(action)
            }
        }
        // An outcome with nothing to settle (an ignored task whose message was acked when it started).
        if !merged {
            var plan = Settlement(deliveryTag: nil, taskID: message.id, disposition: .none)
            plan.prepend(performed)
            settle(plan, into: &actions)
        }
    }
}
