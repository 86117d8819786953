import HeapModule
import SwiftqCore

#if canImport(Glibc)
import Glibc
#endif

/// A single-threaded `poll(2)` loop with descriptor watchers and timers: the one place a process waits.
///
/// Every role (supervisor, consumer, pool child) runs one of these on its main thread and does all its
/// work in the callbacks, so each role's state is confined to one thread and needs no locks. Callbacks
/// must not block for long; a pool child's task is the one deliberate exception (it runs one task at a
/// time and has nothing else to do meanwhile).
public final class EventLoop {
    /// What a watcher is woken for.
    public struct Readiness: OptionSet, Sendable {
        public let rawValue: Int16
        public init(rawValue: Int16) { self.rawValue = rawValue }
        /// Data (or end of file, or an error) can be read.
        public static let readable = Readiness(rawValue: Int16(POLLIN))
        /// Data can be written.
        public static let writable = Readiness(rawValue: Int16(POLLOUT))
    }

    /// Identifies a scheduled timer, to cancel it.
    public struct TimerID: Hashable, Sendable {
        fileprivate let value: UInt64
    }

    private struct Watcher {
        var interest: Readiness
        var handler: (Readiness) -> Void
    }

    /// A heap entry: timers order by deadline, then by scheduling order (`sequence`, also the timer's id),
    /// so timers with equal deadlines fire first in, first out.
    private struct TimerEntry: Comparable {
        var deadline: ContinuousClock.Instant
        var sequence: UInt64

        static func < (lhs: TimerEntry, rhs: TimerEntry) -> Bool {
            lhs.deadline < rhs.deadline || (lhs.deadline == rhs.deadline && lhs.sequence < rhs.sequence)
        }

        static func == (lhs: TimerEntry, rhs: TimerEntry) -> Bool {
            lhs.sequence == rhs.sequence
        }
    }

    /// Heaps this small are never compacted: their cancelled entries cost nothing worth a rebuild.
    private static let compactionFloor = 64

    private var watchers: [CInt: Watcher] = [:]
    /// The `poll(2)` set, rebuilt only when a watcher is added, removed or changes its interest.
    private var pollSet: [pollfd] = []
    private var pollSetIsStale = false
    /// Pending timers by deadline. Cancelling removes only the body: the entry stays until it reaches the
    /// top or until cancelled entries make up more than half the heap, when the heap is rebuilt without them.
    private var timerHeap = Heap<TimerEntry>()
    /// The bodies of the timers that are still pending, by sequence number.
    private var timerBodies: [UInt64: () -> Void] = [:]
    /// Timers scheduled by a callback while due timers run, already due themselves: they wait for the next
    /// turn, so a callback that re-arms itself with no delay cannot keep one turn going for ever.
    private var deferredTimers: [TimerEntry] = []
    private var nextTimer: UInt64 = 0
    private var stopped = false
    /// Who asked to run once more before this turn ends (``atEndOfTurn(_:)``); kept with its capacity, so a turn
    /// allocates nothing for it.
    private var endOfTurn: [any EndOfTurnWork] = []

    /// Creates an empty loop.
    public init() {}

    /// How many timers are scheduled and neither fired nor cancelled.
    public var pendingTimers: Int { timerBodies.count }

    /// How many entries the timer heap holds, cancelled ones included (for tests of its compaction).
    var timerStorage: Int { timerHeap.count + deferredTimers.count }

    /// Watches `fd`; `handler` is called with what it is ready for. Replaces an earlier watcher of `fd`.
    /// End of file, hang-up and errors are reported as `.readable`, so a read sees them.
    public func watch(_ fd: CInt, for interest: Readiness = .readable, handler: @escaping (Readiness) -> Void) {
        if watchers[fd]?.interest != interest { pollSetIsStale = true }
        watchers[fd] = Watcher(interest: interest, handler: handler)
    }

    /// Changes what an existing watcher waits for.
    public func setInterest(_ fd: CInt, _ interest: Readiness) {
        guard let current = watchers[fd]?.interest, current != interest else { return }
        watchers[fd]?.interest = interest
        pollSetIsStale = true
    }

    /// Stops watching `fd` (it does not close it).
    public func unwatch(_ fd: CInt) {
        if watchers.removeValue(forKey: fd) != nil { pollSetIsStale = true }
    }

    /// Calls `work.endOfTurn()` once before the current turn ends, after every handler and due timer of the turn
    /// (work added by then runs too). For output that handlers add to piece by piece and that is written better
    /// as one: the frames for one pool child. Asking again before the turn ends is the caller's to avoid.
    public func atEndOfTurn(_ work: any EndOfTurnWork) {
        endOfTurn.append(work)
    }

    /// Runs `body` once, after `delay`.
    @discardableResult
    public func schedule(after delay: Duration, _ body: @escaping () -> Void) -> TimerID {
        schedule(at: .now + delay, body)
    }

    /// Runs `body` once, at `deadline` (at the next turn if it has passed). Timers with equal deadlines run
    /// in the order they were scheduled.
    @discardableResult
    public func schedule(at deadline: ContinuousClock.Instant, _ body: @escaping () -> Void) -> TimerID {
        nextTimer += 1
        let entry = TimerEntry(deadline: deadline, sequence: nextTimer)
        timerBodies[entry.sequence] = body
        timerHeap.insert(entry)
        return TimerID(value: entry.sequence)
    }

    /// Runs `body` every `interval` until the returned handle is cancelled.
    public func repeating(every interval: Duration, _ body: @escaping () -> Void) -> RepeatingTimer {
        let handle = RepeatingTimer(loop: self)
        func arm() {
            handle.current = schedule(after: interval) {
                guard !handle.isCancelled else { return }
                body()
                if !handle.isCancelled { arm() }
            }
        }
        arm()
        return handle
    }

    /// Cancels a timer that has not fired yet (cancelling a fired or cancelled timer does nothing).
    public func cancel(_ timer: TimerID) {
        guard timerBodies.removeValue(forKey: timer.value) != nil else { return }
        compactTimersIfNeeded()
    }

    /// Runs until ``stop()``.
    public func run() {
        stopped = false
        while !stopped { runOnce(timeout: nil) }
    }

    /// Runs until `condition` holds or `timeout` passes; returns whether the condition holds. Used for
    /// bounded waits during startup and shutdown, while signals and children keep being handled. The
    /// condition is checked after every event and at least every `checkInterval`, so it may also depend on
    /// something outside the loop (a socket file appearing).
    @discardableResult
    public func run(
        until condition: () -> Bool,
        timeout: Duration,
        checkInterval: Duration = .milliseconds(50)
    ) -> Bool {
        let deadline = ContinuousClock.now + timeout
        while !condition() {
            let left = ContinuousClock.now.duration(to: deadline)
            if left <= .zero || stopped { return condition() }
            runOnce(timeout: min(left, checkInterval))
        }
        return true
    }

    /// Makes ``run()`` return after the current iteration.
    public func stop() {
        stopped = true
    }

    /// Waits once for readiness or the next timer (or `timeout`), then runs what is due.
    public func runOnce(timeout: Duration?) {
        var wait = timeout
        if let earliest = nextTimerDeadline() {
            let untilTimer = ContinuousClock.now.duration(to: earliest)
            wait = min(wait ?? untilTimer, untilTimer)
        }
        var milliseconds: Int32 = -1
        if let wait { milliseconds = wait <= .zero ? 0 : Int32(clamping: wait.milliseconds) }

        if pollSetIsStale { rebuildPollSet() }
        let ready = poll(&pollSet, nfds_t(pollSet.count), milliseconds)
        ThroughputCounters.shared.loopWokeUp()
        if ready > 0 {
            // Handlers may change the watchers; the set they change is rebuilt at the next turn, and this
            // one (shared, not copied) is read as poll returned it.
            let polled = pollSet
            for entry in polled where entry.revents != 0 {
                // A previous handler in this round may have removed or replaced this watcher.
                guard let watcher = watchers[entry.fd] else { continue }
                var readiness: Readiness = []
                if entry.revents & Int16(POLLIN | POLLHUP | POLLERR | POLLNVAL) != 0 { readiness.insert(.readable) }
                if entry.revents & Int16(POLLOUT) != 0 { readiness.insert(.writable) }
                readiness.formIntersection(watcher.interest.union(.readable))
                if entry.revents & Int16(POLLNVAL) != 0 {
                    // A closed descriptor still watched: drop it rather than spin.
                    unwatch(entry.fd)
                }
                if !readiness.isEmpty { watcher.handler(readiness) }
            }
        }
        runDueTimers()
        runEndOfTurn()
    }

    private func runEndOfTurn() {
        // By index: work may add more while this runs.
        var index = 0
        while index < endOfTurn.count {
            endOfTurn[index].endOfTurn()
            index += 1
        }
        endOfTurn.removeAll(keepingCapacity: true)
    }

    private func rebuildPollSet() {
        pollSet.removeAll(keepingCapacity: true)
        for (fd, watcher) in watchers {
            pollSet.append(pollfd(fd: fd, events: watcher.interest.rawValue, revents: 0))
        }
        pollSetIsStale = false
    }

    /// The deadline of the earliest pending timer, dropping cancelled entries from the top of the heap.
    private func nextTimerDeadline() -> ContinuousClock.Instant? {
        while let top = timerHeap.min {
            if timerBodies[top.sequence] != nil { return top.deadline }
            timerHeap.removeMin()
        }
        return nil
    }

    /// Runs the timers due now, earliest first. Timers that callbacks schedule meanwhile and that are already
    /// due wait for the next turn; timers that callbacks cancel meanwhile do not run.
    private func runDueTimers() {
        let now = ContinuousClock.now
        let firstScheduledMeanwhile = nextTimer + 1
        while let top = timerHeap.min, top.deadline <= now {
            timerHeap.removeMin()
            if top.sequence >= firstScheduledMeanwhile {
                deferredTimers.append(top)
                continue
            }
            guard let body = timerBodies.removeValue(forKey: top.sequence) else { continue }
            body()
        }
        if !deferredTimers.isEmpty {
            for entry in deferredTimers { timerHeap.insert(entry) }
            deferredTimers.removeAll(keepingCapacity: true)
        }
        compactTimersIfNeeded()
    }

    /// Rebuilds the heap without its cancelled entries once they are more than half of it, so that
    /// scheduling and cancelling many timers keeps the storage proportional to the pending ones.
    private func compactTimersIfNeeded() {
        // While due timers run, some pending timers are in `deferredTimers` rather than in the heap: this
        // then counts too few cancelled entries, never too many, and the rebuild keeps every pending one.
        let cancelled = timerHeap.count - timerBodies.count
        guard timerHeap.count > Self.compactionFloor, cancelled > timerHeap.count / 2 else { return }
        timerHeap = Heap(timerHeap.unordered.filter { timerBodies[$0.sequence] != nil })
    }
}

/// What ``EventLoop/atEndOfTurn(_:)`` calls back: a class, so that asking allocates nothing.
public protocol EndOfTurnWork: AnyObject {
    /// Called once on the loop's thread, before the turn it was asked in ends.
    func endOfTurn()
}

/// A timer that re-arms itself until cancelled; see ``EventLoop/repeating(every:_:)``.
public final class RepeatingTimer {
    fileprivate weak var loop: EventLoop?
    fileprivate var current: EventLoop.TimerID?
    fileprivate private(set) var isCancelled = false

    fileprivate init(loop: EventLoop) {
        self.loop = loop
    }

    /// Stops the timer.
    public func cancel() {
        isCancelled = true
        if let current { loop?.cancel(current) }
    }
}
