import OrderedCollections
import SwiftqCore

/// The per-consumer delivery timeout swiftqd asks RabbitMQ for (`x-consumer-timeout` in `basic.consume`'s
/// arguments, in milliseconds).
///
/// RabbitMQ closes the channel of a delivery left unacknowledged longer than its consumer timeout (30 minutes by
/// default), which requeues every delivery of that channel. A late-acked task legitimately keeps its delivery for
/// as long as it may run (its hard time limit) plus the time it waited in the prefetch window behind other tasks,
/// so where the configured hard limits could outlast the node's timeout (`broker.consumer_timeout`), swiftqd asks
/// for a longer one on its own consumers. RabbitMQ 3.11.15 and later honour the argument (it wins over the queue's
/// policy and the node's setting); older nodes ignore it, and then only the node's setting helps. Tasks held for
/// their ETA are republished instead (``DeliveryMachine``'s ETA hold limit), whatever the timeout.
package enum AMQPConsumerTimeout {
    /// Time for the delivery to reach a child and the ack to reach the broker, on top of the run itself.
    package static let margin: Duration = .seconds(60)

    /// The argument's value in milliseconds, or `nil` when the node's own timeout suffices: no hard time limit is
    /// configured (a task with none may run forever, and no value would be enough), the node has no timeout
    /// (`broker.consumer_timeout: 0s`), or the longest delivery fits in it.
    package static func milliseconds(for configuration: Configuration) -> Int64? {
        let nodeTimeout = configuration.broker.consumerTimeout
        guard nodeTimeout > .zero else { return nil }
        var limits: [Duration] = []
        if let limit = configuration.taskDefaults.timeLimit { limits.append(limit) }
        for settings in configuration.taskSettings.values {
            if let limit = settings.timeLimit { limits.append(limit) }
        }
        for task in configuration.tasks.values {
            if let limit = task.settings.timeLimit { limits.append(limit) }
            if let limit = task.timeout { limits.append(limit) }
        }
        guard let longest = limits.max() else { return nil }
        // A delivery waits behind at most `prefetch_multiplier` tasks of its child's share of the window, then runs.
        let waits = max(1, configuration.worker.prefetchMultiplier) + 1
        let needed = longest * waits + margin
        guard needed > nodeTimeout else { return nil }
        let (seconds, attoseconds) = needed.components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }

    /// `basic.consume`'s arguments for the task queues.
    package static func consumeArguments(for configuration: Configuration) -> OrderedDictionary<String, JSONValue> {
        guard let milliseconds = milliseconds(for: configuration) else { return [:] }
        return ["x-consumer-timeout": .int(milliseconds)]
    }
}
