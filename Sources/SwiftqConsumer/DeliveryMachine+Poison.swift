import OrderedCollections
import SwiftqCore
import SwiftqPool
import SwiftqTasks

extension DeliveryMachine {
    /// The header counting how many times a message killed the pool child that ran it. It travels with the message
    /// (the copy put back carries it), so the count survives a restart of swiftqd and a move between workers.
    package static let childKillsHeader = "x-swiftq-child-kills"
    /// Headers a dead-lettered message gets: why, from which queue, and when.
    package static let deadReasonHeader = "x-swiftq-dead-reason"
    package static let deadQueueHeader = "x-swiftq-dead-queue"
    package static let deadAtHeader = "x-swiftq-dead-at"

    /// The dead-letter queue for messages taken from `queue`.
    func deadLetterQueue(for queue: String) -> String { settings.deadLetterQueue ?? "\(queue).dead" }

    /// A message whose child died under it (acks_late + reject_on_worker_lost): below `poison_threshold` kills a copy
    /// with the count raised goes back to its queue (published, then the original acked: never a broker requeue,
    /// so RabbitMQ's quorum-queue delivery limit is never reached by it); at the threshold the copy goes to the
    /// dead-letter queue with the reason, FAILURE is stored, and it never runs again unless an operator puts it
    /// back (`swiftqctl dead requeue`).
    mutating func requeueOrDeadLetter(
        _ delivery: Delivery,
        failure: TaskFailure,
        reason: ExitReason,
        now: CeleryTimestamp,
        into actions: inout [Action]
    ) {
        let message = delivery.message
        let kills = (message.headers[Self.childKillsHeader]?.intValue.map { Int($0) } ?? 0) + 1
        var copy = message
        copy.redelivered = false
        copy.headers[Self.childKillsHeader] = .int(Int64(kills))
        let cause = Self.workerLostText(reason)
        if kills < settings.poisonThreshold {
            actions.append(
                .log(
                    .init(
                        level: .warning,
                        text: "requeueing it (reject_on_worker_lost; child kills: \(kills) of "
                            + "\(settings.poisonThreshold))",
                        taskID: message.id,
                        taskName: message.name
                    )
                )
            )
            delivery.state = .settling
            var plan = Settlement(deliveryTag: delivery.tag, taskID: message.id, disposition: .ack)
            plan.publishes = [Self.outbound(copy, queue: delivery.queue)]
            if let tag = delivery.tag { actions.append(.setRunning(tag: tag, false)) }
            settle(plan, into: &actions)
            return
        }
        let deadQueue = deadLetterQueue(for: delivery.queue)
        let why = "killed its pool child \(kills) time\(kills == 1 ? "" : "s") (last: \(cause))"
        copy.headers[Self.deadReasonHeader] = .string(why)
        copy.headers[Self.deadQueueHeader] = .string(delivery.queue)
        copy.headers[Self.deadAtHeader] = .string(now.iso8601)
        counters.deadLettered += 1
        actions.append(
            .log(
                .init(
                    level: .error,
                    text: "poison message: \(why); moved to the dead-letter queue \(deadQueue)",
                    taskID: message.id,
                    taskName: message.name
                )
            )
        )
        var dead = failure
        dead.message += " Moved to the dead-letter queue \(deadQueue): \(why)."
        // FAILURE first (through the usual path), then the dead-letter copy joins that plan's publishes.
        var collected: [Action] = []
        complete(delivery, status: .failure(dead), runtime: 0, disposition: .ack, now: now, into: &collected)
        for action in collected {
            if case .settle(var plan) = action {
                plan.publishes.insert(Self.outbound(copy, queue: deadQueue), at: 0)
                actions.append(.settle(plan))
            } else {
                actions.append(action)
            }
        }
    }

    /// A task message as kombu would publish it to `queue` through the default exchange.
    static func outbound(_ message: TaskMessage, queue: String) -> OutboundMessage {
        OutboundMessage(
            exchange: "",
            routingKey: queue,
            body: message.wireBody,
            headers: message.wireHeaders(),
            correlationID: message.correlationID ?? message.id,
            replyTo: message.replyTo
        )
    }
}
