import SwiftqCore

extension DeliveryMachine {
    /// `celery.chord_unlock` is a task of the consumer, not of the pool: it needs the result backend. When it is
    /// due, one plan reads the header's results from the Redis backend (the thread that holds it, see
    /// ``ChordStep/run(_:backend:resultExpires:notice:)``) and publishes, before the ack, either the body applied to
    /// the joined results, or the `ChordError` and the body's errbacks, or, while the header is not ready, the copy
    /// of itself that polls again after `interval` (Celery's `self.retry(countdown=interval)`; `max_retries` null
    /// polls for ever). A crash before the ack leaves the message, which polls again.
    static func isChordUnlock(_ name: String) -> Bool { name == Canvas.chordUnlockTask }

    mutating func runChordUnlock(_ delivery: Delivery, now: CeleryTimestamp, into actions: inout [Action]) {
        let message = delivery.message
        deliveries[delivery.key] = nil
        delivery.state = .settling
        guard settings.storesResults else {
            let reason = "chord_unlock needs a result backend to read the chord header from"
            settleUnlock(unlockFailed(delivery, reason, now: now), failure: reason, message: message, into: &actions)
            return
        }
        let interval = message.kwargs["interval"]?.doubleValue ?? Canvas.chordUnlockInterval
        let maxRetries = message.kwargs["max_retries"]?.intValue.map { Int($0) }
        var retryCopy: OutboundMessage?
        var cannotRetry: JSONValue?
        if let maxRetries, message.retries >= maxRetries {
            let failure = Self.maxRetriesExceeded(message)
            cannotRetry = ResultMeta.exception(
                type: failure.type,
                message: [.string(failure.message)],
                module: failure.module
            )
        } else {
            var next = message
            next.retries += 1
            next.eta = now.advanced(by: max(0, interval))
            if next.parentID == nil || next.parentID?.isEmpty == true { next.parentID = message.id }
            next.redelivered = false
            retryCopy = OutboundMessage(
                exchange: "",
                routingKey: delivery.queue,
                body: next.wireBody,
                headers: next.wireHeaders(),
                correlationID: next.correlationID ?? next.id,
                replyTo: next.replyTo
            )
        }
        let context = Canvas.Context(finished: message, origin: settings.nodeName, defaultQueue: settings.defaultQueue)
        switch Canvas.chordUnlock(message, retry: retryCopy, cannotRetry: cannotRetry, context: context) {
        case .success(let unlock):
            var plan = Settlement(deliveryTag: delivery.tag, taskID: message.id, disposition: .ack)
            plan.chordUnlock = unlock
            counters.canvas["chord_unlock_polls", default: 0] += 1
            actions.append(
                .log(
                    .init(
                        level: .debug,
                        text: "chord_unlock: polling chord \(unlock.groupID) (poll \(message.retries + 1))",
                        taskID: message.id,
                        taskName: message.name
                    )
                )
            )
            settleUnlock(plan, failure: nil, message: message, into: &actions)
        case .failure(let error):
            let plan = unlockFailed(delivery, error.text, now: now)
            settleUnlock(plan, failure: error.text, message: message, into: &actions)
        }
    }

    /// A chord_unlock that cannot run: rejected with `ValueError(reason)` stored (if results are kept for it).
    private mutating func unlockFailed(_ delivery: Delivery, _ reason: String, now: CeleryTimestamp) -> Settlement {
        let message = delivery.message
        var plan = Settlement(deliveryTag: delivery.tag, taskID: message.id, disposition: .reject)
        counters.rejected["chord_unlock_invalid", default: 0] += 1
        if settings.storesResults && message.ignoreResult != true {
            let meta = ResultMeta.failure(
                taskID: message.id,
                excType: "ValueError",
                excMessage: [.string(reason)],
                excModule: "builtins",
                traceback: nil,
                dateDone: now,
                request: message,
                extended: nil
            )
            plan.result = StoredResult(taskID: message.id, meta: meta.pythonSerialized(), replyTo: message.replyTo)
        }
        return plan
    }

    private mutating func settleUnlock(
        _ plan: Settlement,
        failure: String?,
        message: TaskMessage,
        into actions: inout [Action]
    ) {
        if let failure {
            counters.failed += 1
            actions.append(
                .log(
                    .init(
                        level: .error,
                        text: "cannot run chord_unlock (\(failure)); rejecting it",
                        taskID: message.id,
                        taskName: message.name
                    )
                )
            )
        }
        settle(plan, into: &actions)
    }
}
