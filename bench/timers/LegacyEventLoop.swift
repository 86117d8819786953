// The EventLoop of commit 27f18db (before heap timers), renamed, kept only to compare against in this benchmark:
// `git show 27f18db:Sources/SwiftqPlatform/EventLoop.swift`. Not used by swiftq itself.
import SwiftqPlatform

#if canImport(Glibc)
import Glibc
#endif

/// A single-threaded `poll(2)` loop with descriptor watchers and timers: the one place a process waits.
///
/// Every role (supervisor, consumer, pool child) runs one of these on its main thread and does all its
/// work in the callbacks, so each role's state is confined to one thread and needs no locks. Callbacks
/// must not block for long; a pool child's task is the one deliberate exception (it runs one task at a
/// time and has nothing else to do meanwhile).
final class LegacyEventLoop {
    /// What a watcher is woken for.
    struct Readiness: OptionSet, Sendable {
        let rawValue: Int16
        init(rawValue: Int16) { self.rawValue = rawValue }
        /// Data (or end of file, or an error) can be read.
        static let readable = Readiness(rawValue: Int16(POLLIN))
        /// Data can be written.
        static let writable = Readiness(rawValue: Int16(POLLOUT))
    }

    /// Identifies a scheduled timer, to cancel it.
    struct TimerID: Hashable, Sendable {
        fileprivate let value: UInt64
    }

    private struct Watcher {
        var interest: Readiness
        var handler: (Readiness) -> Void
    }

    private struct Timer {
        var deadline: ContinuousClock.Instant
        var body: () -> Void
    }

    private var watchers: [CInt: Watcher] = [:]
    private var timers: [UInt64: Timer] = [:]
    private var nextTimer: UInt64 = 0
    private var stopped = false

    /// Creates an empty loop.
    init() {}

    /// Watches `fd`; `handler` is called with what it is ready for. Replaces an earlier watcher of `fd`.
    /// End of file, hang-up and errors are reported as `.readable`, so a read sees them.
    func watch(_ fd: CInt, for interest: Readiness = .readable, handler: @escaping (Readiness) -> Void) {
        watchers[fd] = Watcher(interest: interest, handler: handler)
    }

    /// Changes what an existing watcher waits for.
    func setInterest(_ fd: CInt, _ interest: Readiness) {
        watchers[fd]?.interest = interest
    }

    /// Stops watching `fd` (it does not close it).
    func unwatch(_ fd: CInt) {
        watchers[fd] = nil
    }

    /// Runs `body` once, after `delay`.
    @discardableResult
    func schedule(after delay: Duration, _ body: @escaping () -> Void) -> TimerID {
        nextTimer += 1
        timers[nextTimer] = Timer(deadline: .now + delay, body: body)
        return TimerID(value: nextTimer)
    }

    /// Runs `body` every `interval` until the returned handle is cancelled.
    func repeating(every interval: Duration, _ body: @escaping () -> Void) -> LegacyRepeatingTimer {
        let handle = LegacyRepeatingTimer(loop: self)
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

    /// Cancels a timer that has not fired yet.
    func cancel(_ timer: TimerID) {
        timers[timer.value] = nil
    }

    /// Runs until ``stop()``.
    func run() {
        stopped = false
        while !stopped { runOnce(timeout: nil) }
    }

    /// Runs until `condition` holds or `timeout` passes; returns whether the condition holds. Used for
    /// bounded waits during startup and shutdown, while signals and children keep being handled. The
    /// condition is checked after every event and at least every `checkInterval`, so it may also depend on
    /// something outside the loop (a socket file appearing).
    @discardableResult
    func run(
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
    func stop() {
        stopped = true
    }

    /// Waits once for readiness or the next timer (or `timeout`), then runs what is due.
    func runOnce(timeout: Duration?) {
        let now = ContinuousClock.now
        var wait = timeout
        if let earliest = timers.values.map(\.deadline).min() {
            let untilTimer = now.duration(to: earliest)
            wait = min(wait ?? untilTimer, untilTimer)
        }
        var milliseconds: Int32 = -1
        if let wait { milliseconds = wait <= .zero ? 0 : Int32(clamping: wait.milliseconds) }

        let order = Array(watchers.keys)
        var pollfds = order.map { pollfd(fd: $0, events: watchers[$0]!.interest.rawValue, revents: 0) }
        let ready = poll(&pollfds, nfds_t(pollfds.count), milliseconds)
        if ready > 0 {
            for entry in pollfds where entry.revents != 0 {
                // A previous handler in this round may have removed or replaced this watcher.
                guard let watcher = watchers[entry.fd] else { continue }
                var readiness: Readiness = []
                if entry.revents & Int16(POLLIN | POLLHUP | POLLERR | POLLNVAL) != 0 { readiness.insert(.readable) }
                if entry.revents & Int16(POLLOUT) != 0 { readiness.insert(.writable) }
                readiness.formIntersection(watcher.interest.union(.readable))
                if entry.revents & Int16(POLLNVAL) != 0 {
                    // A closed descriptor still watched: drop it rather than spin.
                    watchers[entry.fd] = nil
                }
                if !readiness.isEmpty { watcher.handler(readiness) }
            }
        }
        runDueTimers()
    }

    private func runDueTimers() {
        let now = ContinuousClock.now
        let due = timers.filter { $0.value.deadline <= now }.sorted { $0.value.deadline < $1.value.deadline }
        for (id, timer) in due where timers[id] != nil {
            timers[id] = nil
            timer.body()
        }
    }
}

/// A timer that re-arms itself until cancelled; see ``LegacyEventLoop/repeating(every:_:)``.
final class LegacyRepeatingTimer {
    fileprivate weak var loop: LegacyEventLoop?
    fileprivate var current: LegacyEventLoop.TimerID?
    fileprivate private(set) var isCancelled = false

    fileprivate init(loop: LegacyEventLoop) {
        self.loop = loop
    }

    /// Stops the timer.
    func cancel() {
        isCancelled = true
        if let current { loop?.cancel(current) }
    }
}
