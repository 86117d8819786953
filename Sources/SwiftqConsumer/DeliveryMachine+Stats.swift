import OrderedCollections
import SwiftqCore
import SwiftqPool

package extension DeliveryMachine.Settings {
    /// The settings a configuration implies, for the node `nodeName`.
    init(configuration: Configuration, nodeName: String) {
        let worker = configuration.worker
        self.init(
            configuration: configuration,
            worker: worker,
            nodeName: nodeName
        )
        applyTaskPolicies(configuration)
        poisonThreshold = configuration.worker.poisonThreshold
        deadLetterQueue = configuration.worker.deadLetterQueue
        if worker.pool != .solo && worker.childPrefetch > 1 {
            queueRuntimeLimit = worker.childPrefetchMaxRuntime.seconds
        }
        poolSize = worker.effectiveConcurrency
        childQueueAllowance = Self.childQueueAllowance(worker, poolSize: poolSize)
        if childQueueAllowance > 0 { shortRuntimeLimit = worker.childPrefetchMaxRuntime.seconds }
        let broker = configuration.broker.url.lowercased()
        if (broker.hasPrefix("amqp://") || broker.hasPrefix("amqps://")) && configuration.broker.consumerTimeout > .zero
        {
            etaHoldLimit = configuration.broker.consumerTimeout.seconds / 3
        }
    }

    /// How much larger the window is while short tasks come in, for a pool of `poolSize`: `child_prefetch` per
    /// slot with the prefork pool (the children's own queues) and the threads pool (whose tasks run in the
    /// consumer, fed by the same window); none with the solo pool, without child prefetch, or without a window
    /// (`prefetch_multiplier: 0`).
    static func childQueueAllowance(_ worker: Configuration.Worker, poolSize: Int) -> Int {
        guard worker.pool != .solo, worker.childPrefetch > 1, worker.prefetchMultiplier > 0 else { return 0 }
        return poolSize * worker.childPrefetch
    }

    private init(configuration: Configuration, worker: Configuration.Worker, nodeName: String) {
        self.init(
            acksLate: worker.acksLate,
            trackStarted: worker.trackStarted,
            rejectOnWorkerLost: worker.rejectOnWorkerLost,
            storesResults: configuration.resultBackend.url != nil,
            extendedResults: configuration.resultBackend.extended,
            nodeName: nodeName,
            // 0 means no limit, as in Celery; a bound still protects memory.
            window: worker.prefetchMultiplier == 0 ? 100_000 : worker.prefetchMultiplier * worker.effectiveConcurrency,
            defaultQueue: worker.defaultQueue,
            execTasks: Dictionary(
                uniqueKeysWithValues: configuration.tasks.map { name, task in
                    (name, PoolJob.ExecSpec(argv: task.argv, timeout: task.timeout?.seconds))
                }
            )
        )
    }
}

package extension DeliveryMachine {
    /// The `tasks` part of the consumer's `stats`.
    var tasksJSON: JSONValue {
        var names: OrderedDictionary<String, JSONValue> = [:]
        for name in statistics.keys.sorted() {
            let entry = statistics[name]!
            names[name] = .object([
                "succeeded": .int(Int64(entry.succeeded)),
                "failed": .int(Int64(entry.failed)),
                "runtime_p50": entry.percentile(0.5).map { .double($0) } ?? .null,
                "runtime_p99": entry.percentile(0.99).map { .double($0) } ?? .null,
            ])
        }
        var rejected: OrderedDictionary<String, JSONValue> = [:]
        for reason in counters.rejected.keys.sorted() { rejected[reason] = .int(Int64(counters.rejected[reason]!)) }
        return .object([
            "received": .int(Int64(counters.received)),
            "reserved": .int(Int64(ready.count)),
            "held_for_eta": .int(Int64(heldForETA)),
            "active": .int(Int64(running.count)),
            "succeeded": .int(Int64(counters.succeeded)),
            "failed": .int(Int64(counters.failed)),
            "worker_lost": .int(Int64(counters.workerLost)),
            "time_limited": .int(Int64(counters.timeLimited)),
            "revoked": .int(Int64(counters.revoked)),
            "retried": .int(Int64(counters.retried)),
            "dead_lettered": .int(Int64(counters.deadLettered)),
            "eta_republished": .int(Int64(counters.etaRepublished)),
            "rejected": .object(rejected),
            "results_stored": .int(Int64(counters.resultsStored)),
            "acked": .int(Int64(counters.acked)),
            "canvas": .object(
                .init(
                    uniqueKeysWithValues: counters.canvas.sorted { $0.key < $1.key }.map {
                        ($0.key, .int(Int64($0.value)))
                    }
                )
            ),
            "by_name": .object(names),
        ])
    }
}
