/// Acks decided on one AMQP connection and not sent yet, and when they must leave: together, once a quarter of the
/// prefetch window is waiting or the oldest has waited ``delay`` (see ``AMQPTransport``'s `flushAcks`).
///
/// Why wait at all: each ack frame costs the RabbitMQ node far more than the message it settles (measured with
/// rabbitmq-c draining one queue of Celery messages: ~99 µs of node CPU per message with an ack each, ~60 µs with
/// one `multiple` ack per 32), while nothing in the worker waits for an ack to leave. What a failed connection loses
/// meanwhile is redelivered and recognised as already run (the transport's uncertain acks); a worker killed
/// meanwhile has those messages redelivered, as it would for acks still in a socket buffer that never left.
///
/// *Owner*: the AMQP connection thread (one per connection's session).
package struct PendingAcks: Sendable {
    /// The longest a decided ack waits for others.
    package static let delay: Duration = .milliseconds(2)
    /// The most acks that wait for ``delay``: beyond a quarter of the window (or this many), they leave at once.
    package static let largestBatch = 64

    /// The delivery tags, in the order their acks were decided.
    package private(set) var tags: [UInt64] = []
    /// When the oldest of ``tags`` must leave (nil while none waits).
    package private(set) var due: ContinuousClock.Instant?

    package init() {}

    package var isEmpty: Bool { tags.isEmpty }

    /// One more decided ack; the first of a batch sets when the batch is due.
    package mutating func add(_ tag: UInt64, now: ContinuousClock.Instant) {
        if tags.isEmpty { due = now + Self.delay }
        tags.append(tag)
    }

    /// How many waiting acks leave at once without waiting for ``delay``: a quarter of the prefetch window, so that
    /// the acks held back never keep the broker from delivering (Celery's default window of 4 × concurrency on two
    /// cores sends them two by two), at most ``largestBatch``; with no limit (`prefetch` 0), ``largestBatch``.
    package static func batchSize(prefetch: Int) -> Int {
        prefetch <= 0 ? largestBatch : min(largestBatch, max(1, prefetch / 4))
    }

    /// Whether the waiting acks should be sent now.
    package func isDue(now: ContinuousClock.Instant, prefetch: Int) -> Bool {
        guard let due else { return false }
        return tags.count >= Self.batchSize(prefetch: prefetch) || now >= due
    }

    /// Takes every waiting ack (to send them).
    package mutating func take() -> [UInt64] {
        due = nil
        let taken = tags
        tags.removeAll(keepingCapacity: true)
        return taken
    }
}
