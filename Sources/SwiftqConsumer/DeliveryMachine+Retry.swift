import OrderedCollections
import SwiftqCore
import SwiftqPool
import SwiftqTasks

extension DeliveryMachine {
    /// A task asked to run again (or failed with `autoretry`): within `max_retries`, one plan publishes the copy
    /// Celery would (same id, `retries + 1`, ISO `eta`, `parent_id` its own id when it had none, the arguments the task
    /// asked for if any, every other header kept), then stores `RETRY` with the cause, then acks the original; so a crash between the steps leaves
    /// either the original or the copy, never neither. Past `max_retries` the task fails with the cause, or
    /// Celery's `MaxRetriesExceededError` without one.
    mutating func retry(
        _ delivery: Delivery,
        _ request: TaskRetry,
        runtime: Double,
        now: CeleryTimestamp,
        into actions: inout [Action]
    ) {
        let message = delivery.message
        let policy = policy(for: message.name)
        let maxRetries = request.maxRetries ?? policy.maxRetries
        guard message.retries < maxRetries else {
            let failure = request.cause ?? Self.maxRetriesExceeded(message)
            actions.append(
                .log(
                    .init(
                        level: .warning,
                        text: "no retries left (\(message.retries) of \(maxRetries) used): \(failure)",
                        taskID: message.id,
                        taskName: message.name
                    )
                )
            )
            complete(
                delivery,
                status: .failure(failure),
                runtime: runtime,
                disposition: policy.acksOnFailureOrTimeout ? .ack : .reject,
                now: now,
                into: &actions
            )
            return
        }
        let countdown: Double
        if let eta = request.eta {
            countdown = max(0, eta.secondsSince1970 - now.secondsSince1970)
        } else if let given = request.countdown {
            countdown = max(0, given)
        } else {
            countdown = policy.retryDelay(retries: message.retries, random: random)
        }
        let eta = request.eta ?? now.advanced(by: countdown)
        var next = message
        // `retry(args=…, kwargs=…)`: the next run's arguments (the reprs follow, as Celery's new signature's).
        if let args = request.args {
            next.args = args
            next.argsRepr = PythonRepr.argsRepr(args)
        }
        if let kwargs = request.kwargs {
            next.kwargs = kwargs
            next.kwargsRepr = PythonRepr.repr(.object(kwargs))
        }
        next.retries += 1
        next.eta = eta
        if next.parentID == nil || next.parentID?.isEmpty == true { next.parentID = message.id }
        next.redelivered = false
        let copy = OutboundMessage(
            exchange: "",
            routingKey: delivery.queue,
            body: next.wireBody,
            headers: next.wireHeaders(),
            correlationID: next.correlationID ?? next.id,
            replyTo: next.replyTo,
            // Celery's retry keeps the message priority.
            priority: message.received.priority
        )

        delivery.state = .settling
        counters.retried += 1
        let reason = request.cause.map { " (\($0))" } ?? ""
        let delay = PythonRepr.repr(.double(countdown))
        actions.append(
            .log(
                .init(
                    level: .info,
                    text: "retry \(next.retries) of \(maxRetries) in \(delay)s\(reason)",
                    taskID: message.id,
                    taskName: message.name
                )
            )
        )
        var plan = Settlement(
            publishes: [copy],
            deliveryTag: delivery.ackedEarly ? nil : delivery.tag,
            taskID: message.id,
            disposition: delivery.ackedEarly ? .none : .ack
        )
        if settings.storesResults && message.ignoreResult != true {
            // Celery stores the cause as the result (null without one) and a traceback naming the retry.
            let traceback =
                (request.cause?.traceback.map { $0 + "\n" } ?? "")
                + "celery.exceptions.Retry: Retry in \(delay)s"
            let meta = ResultMeta.meta(
                status: "RETRY",
                result: request.cause.map { cause in
                    ResultMeta.exception(
                        type: cause.type,
                        message: cause.arguments ?? [.string(cause.message)],
                        module: cause.module
                    )
                } ?? .null,
                traceback: traceback,
                children: [[.array([.string(message.id), .null]), .null]],
                dateDone: nil,
                request: message,
                extended: nil,
                taskID: message.id
            )
            plan.result = StoredResult(taskID: message.id, meta: meta.pythonSerialized(), replyTo: message.replyTo)
        }
        if let tag = delivery.tag, !delivery.ackedEarly { actions.append(.setRunning(tag: tag, false)) }
        settle(plan, into: &actions)
    }

    /// Celery's `MaxRetriesExceededError("Can't retry <name>[<id>] args:<args> kwargs:<kwargs>")`.
    static func maxRetriesExceeded(_ message: TaskMessage) -> TaskFailure {
        TaskFailure(
            type: "MaxRetriesExceededError",
            message: "Can't retry \(message.name)[\(message.id)] args:\(PythonRepr.argsRepr(message.args)) "
                + "kwargs:\(PythonRepr.repr(.object(message.kwargs)))",
            module: "celery.exceptions"
        )
    }

    /// Celery's `Reject(reason, requeue)` raised by the task: back to the queue (nothing stored), or rejected with
    /// FAILURE `Reject` stored (`exc_message: [reason, false]`, as Celery 5.7). A message acked when it started
    /// cannot be given back: it is only recorded.
    mutating func rejectByTask(
        _ delivery: Delivery,
        _ reject: TaskReject,
        runtime: Double,
        now: CeleryTimestamp,
        into actions: inout [Action]
    ) {
        let message = delivery.message
        counters.rejected["task_rejected", default: 0] += 1
        actions.append(
            .log(
                .init(
                    level: .info,
                    text: "the task rejected its message (requeue: \(reject.requeue)): \(reject.reason)",
                    taskID: message.id,
                    taskName: message.name
                )
            )
        )
        if reject.requeue {
            delivery.state = .settling
            if let tag = delivery.tag, !delivery.ackedEarly {
                actions.append(.setRunning(tag: tag, false))
                settle(Settlement(deliveryTag: tag, taskID: message.id, disposition: .requeue), into: &actions)
            }
            return
        }
        var failure = TaskFailure(type: "Reject", message: reject.reason, module: "celery.exceptions")
        failure.arguments = [.string(reject.reason), .bool(false)]
        complete(delivery, status: .failure(failure), runtime: runtime, disposition: .reject, now: now, into: &actions)
    }

    /// Celery's `Ignore`: the message is acked and nothing is stored.
    mutating func ignoreByTask(_ delivery: Delivery, into actions: inout [Action]) {
        delivery.state = .settling
        guard let tag = delivery.tag, !delivery.ackedEarly else { return }
        actions.append(.setRunning(tag: tag, false))
        settle(Settlement(deliveryTag: tag, taskID: delivery.message.id, disposition: .ack), into: &actions)
    }
}
