import DequeModule
import Synchronization

/// The events waiting for the transport's writer, bounded: like Celery's event dispatcher, which buffers what it
/// cannot send yet, but never more than ``capacity`` events. When the writer lags (a slow or unreachable broker,
/// or simply more events than it keeps up with), the oldest are dropped: a monitor loses some history, the worker
/// keeps its memory and its task throughput. Drops are counted (`stats` `events.dropped`,
/// `swiftq_events_dropped_total`) and logged once per burst.
///
/// The writer takes everything buffered at each turn of its loop and publishes it in one batch (one pipelined round
/// trip on Redis, publishes without waiting for confirms on RabbitMQ), instead of one plan per event.
///
/// A burst of drops begins with the first drop and lasts while every take finds events dropped since the one
/// before: under a sustained overload that is one log line, not one per writer turn.
///
/// *Owner*: pure value (the decisions), kept by ``EventOutbox``; unit-tested in `EventBufferTests`.
package struct EventBuffer<Element> {
    /// What appending decided.
    package struct Appended: Equatable, Sendable {
        /// Whether the writer needs waking: the buffer was empty and no wake-up is pending since the last take.
        package var wake = false
        /// Events dropped to make room (the oldest buffered first, then the oldest of those appended).
        package var dropped = 0
        /// Whether these drops start a burst (the caller logs once).
        package var burstStarted = false

        package init(wake: Bool = false, dropped: Int = 0, burstStarted: Bool = false) {
            self.wake = wake
            self.dropped = dropped
            self.burstStarted = burstStarted
        }
    }

    /// The most events kept waiting.
    package let capacity: Int
    package private(set) var waiting: Deque<Element> = []
    /// Events dropped since the start.
    package private(set) var dropped = 0
    private var droppedSinceTake = 0
    private var inBurst = false
    private var wakePending = false
    /// When the oldest waiting event was appended (nil: none waits): a writer that batches by time
    /// (``isDue(now:fullBatch:maximumDelay:)``) takes them once they have waited long enough.
    package private(set) var waitingSince: ContinuousClock.Instant?

    package init(capacity: Int) {
        precondition(capacity > 0, "an event buffer holds at least one event")
        self.capacity = capacity
    }

    /// Adds events in order; the oldest go when there is no room.
    package mutating func append(_ events: some Collection<Element>, now: ContinuousClock.Instant = .now) -> Appended {
        var result = Appended()
        guard !events.isEmpty else { return result }
        if waitingSince == nil { waitingSince = now }
        let overflow = waiting.count + events.count - capacity
        if overflow > 0 {
            let fromWaiting = min(overflow, waiting.count)
            waiting.removeFirst(fromWaiting)
            waiting.append(contentsOf: events.dropFirst(overflow - fromWaiting))
            result.dropped = overflow
            dropped += overflow
            droppedSinceTake += overflow
            if !inBurst {
                inBurst = true
                result.burstStarted = true
            }
        } else {
            waiting.append(contentsOf: events)
        }
        if !wakePending {
            wakePending = true
            result.wake = true
        }
        return result
    }

    /// Everything waiting, oldest first, for one batch: the buffer's own storage, handed over without a copy (the
    /// next append starts a new one). A take that finds nothing dropped since the previous one ends a burst.
    package mutating func take() -> Deque<Element> {
        if droppedSinceTake == 0 { inBurst = false }
        droppedSinceTake = 0
        wakePending = false
        waitingSince = nil
        var taken: Deque<Element> = []
        swap(&taken, &waiting)
        return taken
    }
}

extension EventBuffer {
    /// Whether a writer that batches by time should take the waiting events now: `fullBatch` of them wait (a full
    /// list message), or the oldest has waited `maximumDelay`.
    package func isDue(now: ContinuousClock.Instant, fullBatch: Int, maximumDelay: Duration) -> Bool {
        guard let waitingSince else { return false }
        return waiting.count >= fullBatch || now - waitingSince >= maximumDelay
    }

    /// How long until ``isDue(now:fullBatch:maximumDelay:)`` by time (zero when due; nil when nothing waits): the
    /// writer's longest sleep.
    package func dueIn(now: ContinuousClock.Instant, maximumDelay: Duration) -> Duration? {
        guard let waitingSince else { return nil }
        return max(.zero, maximumDelay - (now - waitingSince))
    }
}

/// An ``EventBuffer`` shared by the consumer loop (which appends) and the transport's writer thread (which takes).
package final class EventOutbox: Sendable {
    /// Events kept waiting at most: at Redis drain rates with task events on (three events per task) about half a
    /// second of them, a few MiB.
    package static let defaultCapacity = 8192

    private let buffer: Mutex<EventBuffer<OutboundMessage>>

    package init(capacity: Int = EventOutbox.defaultCapacity) {
        buffer = Mutex(EventBuffer(capacity: capacity))
    }

    package func append(_ messages: [OutboundMessage]) -> EventBuffer<OutboundMessage>.Appended {
        buffer.withLock { $0.append(messages) }
    }

    /// What waits, with runs of task events joined as Celery's worker sends them (``EventBatches``): the writer
    /// that takes them does the joining, not the consumer loop.
    package func take() -> Deque<OutboundMessage> {
        EventBatches.grouping(buffer.withLock { $0.take() })
    }

    /// ``take()`` when ``EventBuffer/isDue(now:fullBatch:maximumDelay:)`` (full list messages of
    /// ``EventBatches/limit`` events, or the oldest waited `maximumDelay`); nothing otherwise.
    package func takeIfDue(now: ContinuousClock.Instant, maximumDelay: Duration) -> Deque<OutboundMessage> {
        let taken = buffer.withLock { buffer -> Deque<OutboundMessage> in
            guard buffer.isDue(now: now, fullBatch: EventBatches.limit, maximumDelay: maximumDelay) else { return [] }
            return buffer.take()
        }
        return EventBatches.grouping(taken)
    }

    /// How long until the waiting events are due by time; nil when none wait.
    package func dueIn(now: ContinuousClock.Instant, maximumDelay: Duration) -> Duration? {
        buffer.withLock { $0.dueIn(now: now, maximumDelay: maximumDelay) }
    }

    /// Events dropped since the start.
    package var dropped: Int { buffer.withLock { $0.dropped } }
}
