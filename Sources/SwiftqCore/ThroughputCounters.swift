import OrderedCollections
import Synchronization

/// What the task path costs, counted where the cost is paid: the consumer's loop turns, the frames to and from the
/// pool, the wake-ups from one thread to another, the broker round trips and the sizes of the reserve, ack and
/// result-store batches. `stats` divides them by the tasks finished (`throughput.per_task`), and `bench/run` by
/// the tasks of each scenario, so that a change to the hot path shows in what it was meant to save, not only in
/// tasks/s.
///
/// One instance per process (``shared``): the consumer's loop, its pool and its transport threads all add to it,
/// and only the consumer reports it. *Owner*: nobody; every field is an atomic or behind its own lock, and
/// incrementing one is the whole API, so that code on the hot path changes by one line per counted point.
package final class ThroughputCounters: Sendable {
    /// The process's counters.
    package static let shared = ThroughputCounters()

    /// Turns of the consumer's event loop that woke for something (a descriptor or a timer).
    package let loopWakeups = Atomic<Int>(0)
    /// Frames written to pool children (jobs, log levels).
    package let poolFramesSent = Atomic<Int>(0)
    /// Frames read from pool children (results, hellos).
    package let poolFramesReceived = Atomic<Int>(0)
    /// Wake-ups of one thread by another: a mailbox's wake-up byte to the loop, a semaphore post to a
    /// transport thread.
    package let threadWakeups = Atomic<Int>(0)
    /// Request/reply exchanges with the broker or the result backend: one per command or pipeline (Redis), one
    /// per synchronous method or confirm wait (AMQP).
    package let brokerRoundTrips = Atomic<Int>(0)
    private let batches = Mutex(Batches())

    private struct Batches {
        var reserve = BatchHistogram()
        var ack = BatchHistogram()
        var store = BatchHistogram()
    }

    /// Which batch a size is recorded for.
    package enum Batch: Sendable {
        /// Messages taken from the broker by one reserve.
        case reserve
        /// Deliveries acknowledged by one ack command.
        case ack
        /// Results written to the backend by one store.
        case store
    }

    package init() {}

    /// One loop turn that woke for something.
    @inline(__always) package func loopWokeUp() { loopWakeups.add(1, ordering: .relaxed) }
    /// One frame to a pool child.
    @inline(__always) package func poolFrameSent() { poolFramesSent.add(1, ordering: .relaxed) }
    /// One frame from a pool child.
    @inline(__always) package func poolFrameReceived() { poolFramesReceived.add(1, ordering: .relaxed) }
    /// One thread woken by another.
    @inline(__always) package func threadWokeUp() { threadWakeups.add(1, ordering: .relaxed) }
    /// One request/reply exchange with a broker or backend.
    @inline(__always) package func brokerRoundTrip() { brokerRoundTrips.add(1, ordering: .relaxed) }

    /// Records one batch of `size` items (an empty batch is not a batch).
    package func record(_ batch: Batch, size: Int) {
        guard size > 0 else { return }
        batches.withLock { batches in
            switch batch {
            case .reserve: batches.reserve.record(size)
            case .ack: batches.ack.record(size)
            case .store: batches.store.record(size)
            }
        }
    }

    /// The counters now.
    package var snapshot: ThroughputSnapshot {
        let histograms = batches.withLock { $0 }
        return ThroughputSnapshot(
            loopWakeups: loopWakeups.load(ordering: .relaxed),
            poolFramesSent: poolFramesSent.load(ordering: .relaxed),
            poolFramesReceived: poolFramesReceived.load(ordering: .relaxed),
            threadWakeups: threadWakeups.load(ordering: .relaxed),
            brokerRoundTrips: brokerRoundTrips.load(ordering: .relaxed),
            reserve: histograms.reserve,
            ack: histograms.ack,
            store: histograms.store
        )
    }
}

/// Sizes of batches in power-of-two buckets (`1`, `2`, `3-4`, `5-8`, … `65+`), with their count and sum.
package struct BatchHistogram: Sendable, Equatable {
    /// Upper bounds of the buckets; the last bucket takes everything above the last bound.
    package static let bounds = [1, 2, 4, 8, 16, 32, 64]
    /// Batches per bucket (one more bucket than bounds).
    package private(set) var buckets = [Int](repeating: 0, count: bounds.count + 1)
    package private(set) var batches = 0
    package private(set) var items = 0

    package init() {}

    package mutating func record(_ size: Int) {
        guard size > 0 else { return }
        batches += 1
        items += size
        buckets[Self.bounds.firstIndex { size <= $0 } ?? Self.bounds.count] += 1
    }

    /// Items per batch (nil before the first batch).
    package var mean: Double? { batches == 0 ? nil : Double(items) / Double(batches) }

    /// The bucket labels, in order: `1`, `2`, `3-4`, …, `65+`.
    package static var labels: [String] {
        var labels: [String] = []
        var previous = 0
        for bound in bounds {
            labels.append(bound == previous + 1 ? "\(bound)" : "\(previous + 1)-\(bound)")
            previous = bound
        }
        labels.append("\(previous + 1)+")
        return labels
    }

    /// `{"batches": n, "items": n, "mean": x, "sizes": {"1": n, "2": n, "3-4": n, …}}` (empty buckets left out).
    package var json: JSONValue {
        var sizes: OrderedDictionary<String, JSONValue> = [:]
        for (label, count) in zip(Self.labels, buckets) where count > 0 { sizes[label] = .int(Int64(count)) }
        return .object([
            "batches": .int(Int64(batches)), "items": .int(Int64(items)), "mean": mean.map { .double($0) } ?? .null,
            "sizes": .object(sizes),
        ])
    }
}

/// ``ThroughputCounters`` read at one moment: what `stats` shows as `throughput`.
package struct ThroughputSnapshot: Sendable, Equatable {
    package var loopWakeups = 0
    package var poolFramesSent = 0
    package var poolFramesReceived = 0
    package var threadWakeups = 0
    package var brokerRoundTrips = 0
    package var reserve = BatchHistogram()
    package var ack = BatchHistogram()
    package var store = BatchHistogram()

    package init(
        loopWakeups: Int = 0,
        poolFramesSent: Int = 0,
        poolFramesReceived: Int = 0,
        threadWakeups: Int = 0,
        brokerRoundTrips: Int = 0,
        reserve: BatchHistogram = BatchHistogram(),
        ack: BatchHistogram = BatchHistogram(),
        store: BatchHistogram = BatchHistogram()
    ) {
        self.loopWakeups = loopWakeups
        self.poolFramesSent = poolFramesSent
        self.poolFramesReceived = poolFramesReceived
        self.threadWakeups = threadWakeups
        self.brokerRoundTrips = brokerRoundTrips
        self.reserve = reserve
        self.ack = ack
        self.store = store
    }

    /// Pool frames both ways.
    package var poolFrames: Int { poolFramesSent + poolFramesReceived }

    /// The counters, and each divided by `tasks` (the tasks finished; `per_task` is null before the first).
    package func json(tasks: Int) -> JSONValue {
        func perTask(_ value: Int) -> JSONValue { tasks > 0 ? .double(Double(value) / Double(tasks)) : .null }
        return .object([
            "tasks": .int(Int64(tasks)),
            "loop_wakeups": .int(Int64(loopWakeups)),
            "pool_frames": .int(Int64(poolFrames)),
            "pool_frames_sent": .int(Int64(poolFramesSent)),
            "pool_frames_received": .int(Int64(poolFramesReceived)),
            "thread_wakeups": .int(Int64(threadWakeups)),
            "broker_round_trips": .int(Int64(brokerRoundTrips)),
            "per_task": .object([
                "loop_wakeups": perTask(loopWakeups),
                "pool_frames": perTask(poolFrames),
                "thread_wakeups": perTask(threadWakeups),
                "broker_round_trips": perTask(brokerRoundTrips),
            ]),
            "batches": .object(["reserve": reserve.json, "ack": ack.json, "store": store.json]),
        ])
    }
}
