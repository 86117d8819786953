/// Acks decided on one AMQP connection and not sent yet, and which of them leave when (see ``AMQPTransport``'s
/// `flushAcks`): none waits longer than ``delay``, and until then an ack that cannot join a `multiple` ack waits
/// for the acks below it, so that most acks leave as one frame.
///
/// Why wait at all: each ack frame costs the RabbitMQ node far more than the message it settles (measured with
/// rabbitmq-c draining one queue of Celery messages: ~99 µs of node CPU per message with an ack each, ~60 µs with
/// one `multiple` ack per 32), while nothing in the worker waits for an ack to leave. What a failed connection loses
/// meanwhile is redelivered and recognised as already run (the transport's uncertain acks); a worker killed
/// meanwhile has those messages redelivered, as it would for acks still in a socket buffer that never left.
///
/// Why hold back what a `multiple` ack cannot cover: two children finish their tasks out of order, so the acks
/// decided by a turn are rarely one run from the oldest outstanding delivery. Sent at once, the rest went one frame
/// each (the drain's mean ack frame covered ~8.5 acks). Held until the acks below them are decided — usually a
/// turn or two later — they join the next run.
///
/// *Owner*: the AMQP connection thread (one per connection's session).
package struct PendingAcks: Sendable {
    /// The longest a decided ack waits for others.
    package static let delay: Duration = .milliseconds(2)
    /// The most acks that wait for ``delay``: beyond a quarter of the window (or this many), they leave at once.
    package static let largestBatch = 64

    /// What one flush sends: one `multiple` ack up to ``multipleUpTo`` (covering ``runLength`` deliveries), then
    /// ``singles`` one by one.
    package struct Flush: Equatable, Sendable {
        package var multipleUpTo: UInt64?
        package var runLength = 0
        package var singles: [UInt64] = []
        /// Every delivery tag this flush acks, the run's and the singles, in the order their acks were decided.
        package var acked: [UInt64] = []
        /// How many ack frames this flush sends.
        package var frames: Int { (multipleUpTo == nil ? 0 : 1) + singles.count }
    }

    /// The delivery tags, in the order their acks were decided, each with when it must leave.
    private var waiting: [(tag: UInt64, due: ContinuousClock.Instant)] = []

    package init() {}

    package var isEmpty: Bool { waiting.isEmpty }
    /// The waiting delivery tags, in the order their acks were decided.
    package var tags: [UInt64] { waiting.map(\.tag) }
    /// When the oldest waiting ack must leave (nil while none waits).
    package var due: ContinuousClock.Instant? { waiting.first?.due }

    /// One more decided ack, due ``delay`` from `now`.
    package mutating func add(_ tag: UInt64, now: ContinuousClock.Instant) {
        waiting.append((tag, now + Self.delay))
    }

    /// How many waiting acks leave at once without waiting for ``delay``: a quarter of the prefetch window, so that
    /// the acks held back never keep the broker from delivering (Celery's default window of 4 × concurrency on two
    /// cores sends them two by two), at most ``largestBatch``; with no limit (`prefetch` 0), ``largestBatch``.
    package static func batchSize(prefetch: Int) -> Int {
        prefetch <= 0 ? largestBatch : min(largestBatch, max(1, prefetch / 4))
    }

    /// Whether some waiting acks should be sent now.
    package func isDue(now: ContinuousClock.Instant, prefetch: Int) -> Bool {
        guard let due else { return false }
        return waiting.count >= Self.batchSize(prefetch: prefetch) || now >= due
    }

    /// Takes the acks that leave now, if any are due (`force`: every one, the connection is about to close), given
    /// the connection's `outstanding` deliveries (delivered, not yet acked or rejected; the waiting acks among them).
    ///
    /// The run of waiting acks that starts at the oldest outstanding delivery leaves as one `multiple` ack (a
    /// `multiple` ack covers every lower tag, so only a run with no gap qualifies). Of the others, those past their
    /// deadline leave one by one and the rest wait for the acks below them, unless nothing else would leave: then
    /// (a quarter of the window waits behind an undecided delivery, a long task's) they all leave.
    package mutating func take(
        now: ContinuousClock.Instant,
        prefetch: Int,
        outstanding: Set<UInt64>,
        force: Bool = false
    ) -> Flush? {
        guard force ? !isEmpty : isDue(now: now, prefetch: prefetch) else { return nil }
        let decided = Set(waiting.lazy.map(\.tag))
        var flush = Flush()
        var runEnd: UInt64?
        for tag in outstanding.sorted() {
            guard decided.contains(tag) else { break }
            runEnd = tag
            flush.runLength += 1
        }
        if let runEnd, flush.runLength > 1 { flush.multipleUpTo = runEnd }
        var kept: [(tag: UInt64, due: ContinuousClock.Instant)] = []
        for entry in waiting {
            if let runEnd, entry.tag <= runEnd {
                flush.acked.append(entry.tag)
                if flush.multipleUpTo == nil { flush.singles.append(entry.tag) }
            } else if force || now >= entry.due {
                flush.acked.append(entry.tag)
                flush.singles.append(entry.tag)
            } else {
                kept.append(entry)
            }
        }
        if runEnd == nil && flush.singles.isEmpty {
            // Due by count, and none could join a run or is past its deadline: all leave.
            flush.singles = kept.map(\.tag)
            flush.acked = flush.singles
            kept = []
        }
        flush.singles.sort()
        waiting = kept
        return flush
    }
}
