import SwiftqCore

/// RabbitMQ's `consumer_timeout` and tasks held for their ETA (`broker.consumer_timeout`).
///
/// The broker closes a channel whose delivery stayed unacknowledged longer than its consumer timeout (30 minutes by
/// default), and every unacknowledged delivery of the channel goes back to its queue: running tasks could then not be
/// acknowledged, and the held task would come back only to be held, and lose the channel, again. So a held delivery
/// is never kept longer than ``Settings/etaHoldLimit`` (a third of the timeout): when its hold timer fires and the
/// task is due later than that, it is published again as it is (same id, headers and ETA; the transport waits for
/// the broker's confirm) and the held delivery is acked in the same plan. The copy arrives as a new delivery, with the
/// broker's clock started again, and is held in turn. A task due within the limit is held on until its ETA (at most
/// two thirds of the timeout in all).
extension DeliveryMachine {
    /// How long the first hold timer of a task due in `wait` seconds runs.
    func holdTimer(wait: Double) -> Double {
        guard let limit = settings.etaHoldLimit else { return wait }
        return min(wait, limit)
    }

    /// A hold timer fired before the task's ETA (only with ``Settings/etaHoldLimit``): held on, or published again.
    /// Returns nil when the task is due (it goes to the ready queue as usual).
    mutating func holdTimerFired(
        _ delivery: Delivery,
        token: UInt64,
        now: CeleryTimestamp,
        isStale: (String) -> Bool
    ) -> [Action]? {
        guard let limit = settings.etaHoldLimit, let eta = delivery.message.eta else { return nil }
        let remaining = eta.secondsSince1970 - now.secondsSince1970
        guard remaining > 0 else { return nil }
        if remaining <= limit {
            heldByTimer[token] = delivery.key
            return [.startTimer(token: token, seconds: remaining)]
        }
        deliveries[delivery.key] = nil
        let message = delivery.message
        var actions: [Action] = [.setHeldForETA(heldOutsideWindow)]
        guard let tag = delivery.tag else { return actions }
        actions.append(.setRunning(tag: tag, false))
        if isStale(tag) {
            // Its connection is gone: the broker has put it back already, and it comes again. Publishing a copy
            // now would make two.
            actions.append(
                .log(
                    .init(
                        level: .info,
                        text: "dropping a held task from a lost broker connection; the broker redelivers it",
                        taskID: message.id,
                        taskName: message.name
                    )
                )
            )
            return actions
        }
        counters.etaRepublished += 1
        actions.append(
            .log(
                .init(
                    level: .info,
                    text:
                        "held for \(PythonRepr.repr(.double(limit)))s (a third of broker.consumer_timeout) and due in "
                        + "\(Int(remaining.rounded(.up)))s: published again for its ETA, the held delivery acked",
                    taskID: message.id,
                    taskName: message.name
                )
            )
        )
        var copy = message
        copy.redelivered = false
        settle(
            Settlement(
                publishes: [Self.outbound(copy, queue: delivery.queue)],
                deliveryTag: tag,
                taskID: message.id,
                disposition: .ack
            ),
            into: &actions
        )
        return actions
    }
}
