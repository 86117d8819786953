import Testing

@testable import SwiftqPlatform

#if canImport(Glibc)
import Glibc
#endif

/// The event loop's timers. Every deadline is in the past (or far in the future), so each turn's outcome
/// depends only on ordering, never on how fast the machine is.
@Suite struct EventLoopTimerTests {
    /// An instant that every deadline below is relative to: one hour ago.
    static let past = ContinuousClock.now - .seconds(3600)

    @Test func dueTimersFireInDeadlineOrder() {
        let loop = EventLoop()
        var fired: [Int] = []
        let offsets = [7, 3, 9, 1, 5, 0, 8, 2, 6, 4]
        for offset in offsets {
            loop.schedule(at: Self.past + .milliseconds(offset)) { fired.append(offset) }
        }
        #expect(loop.pendingTimers == offsets.count)
        loop.runOnce(timeout: .zero)
        #expect(fired == Array(0..<10))
        #expect(loop.pendingTimers == 0)
    }

    @Test func timersWithEqualDeadlinesFireInSchedulingOrder() {
        let loop = EventLoop()
        var fired: [Int] = []
        // Interleave two deadlines so the heap must break ties by scheduling order, not by insertion luck.
        for index in 0..<200 {
            let deadline = Self.past + .milliseconds(index % 2)
            loop.schedule(at: deadline) { fired.append(index) }
        }
        loop.runOnce(timeout: .zero)
        let evens = Array(stride(from: 0, to: 200, by: 2))
        let odds = Array(stride(from: 1, to: 200, by: 2))
        #expect(fired == evens + odds)
    }

    @Test func futureTimersDoNotFire() {
        let loop = EventLoop()
        var fired = false
        loop.schedule(after: .seconds(3600)) { fired = true }
        loop.runOnce(timeout: .zero)
        #expect(!fired)
        #expect(loop.pendingTimers == 1)
    }

    @Test func aTimerCancelledBeforeItIsDueDoesNotFire() {
        let loop = EventLoop()
        var fired: [String] = []
        let first = loop.schedule(at: Self.past) { fired.append("first") }
        loop.schedule(at: Self.past + .milliseconds(1)) { fired.append("second") }
        loop.cancel(first)
        #expect(loop.pendingTimers == 1)
        loop.runOnce(timeout: .zero)
        #expect(fired == ["second"])
        #expect(loop.pendingTimers == 0)
        // Cancelling a timer that fired, or one cancelled already, does nothing.
        loop.cancel(first)
        #expect(loop.pendingTimers == 0)
    }

    @Test func aCallbackCancelsAnotherTimerDueInTheSameTurn() {
        let loop = EventLoop()
        var fired: [String] = []
        var victim: EventLoop.TimerID?
        loop.schedule(at: Self.past) {
            fired.append("canceller")
            if let victim { loop.cancel(victim) }
        }
        victim = loop.schedule(at: Self.past + .milliseconds(1)) { fired.append("victim") }
        loop.schedule(at: Self.past + .milliseconds(2)) { fired.append("bystander") }
        loop.runOnce(timeout: .zero)
        #expect(fired == ["canceller", "bystander"])
        #expect(loop.pendingTimers == 0)
    }

    @Test func aCallbackCancelsItself() {
        let loop = EventLoop()
        var count = 0
        var own: EventLoop.TimerID?
        own = loop.schedule(at: Self.past) {
            count += 1
            if let own { loop.cancel(own) }
        }
        loop.runOnce(timeout: .zero)
        loop.runOnce(timeout: .zero)
        #expect(count == 1)
        #expect(loop.pendingTimers == 0)
    }

    @Test func aCallbackReschedulesForTheNextTurn() {
        let loop = EventLoop()
        var fired: [String] = []
        loop.schedule(at: Self.past) {
            fired.append("first")
            // Due at once, and earlier than the timer below; still it waits for the next turn.
            loop.schedule(at: Self.past - .seconds(1)) { fired.append("rescheduled") }
        }
        loop.schedule(at: Self.past + .milliseconds(1)) { fired.append("second") }
        loop.runOnce(timeout: .zero)
        #expect(fired == ["first", "second"])
        #expect(loop.pendingTimers == 1)
        loop.runOnce(timeout: .zero)
        #expect(fired == ["first", "second", "rescheduled"])
        #expect(loop.pendingTimers == 0)
    }

    @Test func aCallbackThatReArmsWithNoDelayRunsOncePerTurn() {
        let loop = EventLoop()
        var count = 0
        func arm() {
            loop.schedule(after: .zero) {
                count += 1
                arm()
            }
        }
        arm()
        for _ in 0..<5 { loop.runOnce(timeout: .zero) }
        #expect(count == 5)
        #expect(loop.pendingTimers == 1)
    }

    @Test func scheduleAndCancelOfManyTimersKeepsStorageBounded() {
        let loop = EventLoop()
        let count = 100_000
        var ids: [EventLoop.TimerID] = []
        ids.reserveCapacity(count)
        var fired = 0
        for index in 0..<count {
            ids.append(loop.schedule(at: ContinuousClock.now + .seconds(3600 + index % 97)) { fired += 1 })
        }
        #expect(loop.pendingTimers == count)
        #expect(loop.timerStorage == count)

        // Cancel every other one: cancelled entries never exceed about half the storage.
        var maximumStorage = 0
        var withinBound = true
        for index in stride(from: 0, to: count, by: 2) {
            loop.cancel(ids[index])
            maximumStorage = max(maximumStorage, loop.timerStorage)
            withinBound = withinBound && loop.timerStorage <= 2 * loop.pendingTimers + 65
        }
        #expect(withinBound)
        #expect(loop.pendingTimers == count / 2)

        for id in ids { loop.cancel(id) }
        #expect(loop.pendingTimers == 0)
        #expect(loop.timerStorage <= 64)
        #expect(maximumStorage <= count)

        // Schedule-then-cancel, one at a time, never grows the storage past the compaction floor.
        var largestStorage = 0
        for _ in 0..<count {
            loop.cancel(loop.schedule(after: .seconds(3600)) { fired += 1 })
            largestStorage = max(largestStorage, loop.timerStorage)
        }
        #expect(largestStorage <= 65)
        #expect(loop.pendingTimers == 0)
        loop.runOnce(timeout: .zero)
        #expect(fired == 0)
    }

    @Test func manyDueTimersAllFireOnce() {
        let loop = EventLoop()
        var fired = 0
        var ids: [EventLoop.TimerID] = []
        for index in 0..<10_000 {
            ids.append(loop.schedule(at: Self.past + .microseconds(index % 13)) { fired += 1 })
        }
        for id in ids[..<5_000] { loop.cancel(id) }
        loop.runOnce(timeout: .zero)
        #expect(fired == 5_000)
        #expect(loop.pendingTimers == 0)
        #expect(loop.timerStorage == 0)
    }

    @Test func aRepeatingTimerStopsWhenCancelled() {
        let loop = EventLoop()
        var count = 0
        let timer = loop.repeating(every: .zero) { count += 1 }
        for _ in 0..<3 { loop.runOnce(timeout: .zero) }
        #expect(count == 3)
        #expect(loop.pendingTimers == 1)
        timer.cancel()
        #expect(loop.pendingTimers == 0)
        for _ in 0..<3 { loop.runOnce(timeout: .zero) }
        #expect(count == 3)
    }

    @Test func aRepeatingTimerCancelledFromItsOwnBodyStops() {
        let loop = EventLoop()
        var count = 0
        var timer: RepeatingTimer?
        timer = loop.repeating(every: .zero) {
            count += 1
            if count == 2 { timer?.cancel() }
        }
        for _ in 0..<5 { loop.runOnce(timeout: .zero) }
        #expect(count == 2)
        #expect(loop.pendingTimers == 0)
    }

    @Test func watchersSeeChangesMadeBetweenTurns() throws {
        let loop = EventLoop()
        let (first, firstWrite) = try Descriptors.pipe(nonBlockingRead: true, nonBlockingWrite: true)
        let (second, secondWrite) = try Descriptors.pipe(nonBlockingRead: true, nonBlockingWrite: true)
        defer { for fd in [first, firstWrite, second, secondWrite] { Descriptors.close(fd) } }
        var byte: UInt8 = 1
        _ = write(firstWrite, &byte, 1)
        _ = write(secondWrite, &byte, 1)

        var woken: [String] = []
        loop.watch(first) { _ in woken.append("first") }
        loop.runOnce(timeout: .zero)
        #expect(woken == ["first"])

        // A watcher added by a handler joins from the next turn on.
        loop.watch(first) { _ in
            woken.append("first again")
            loop.watch(second) { _ in woken.append("second") }
        }
        loop.runOnce(timeout: .zero)
        #expect(woken == ["first", "first again"])
        loop.runOnce(timeout: .zero)
        #expect(woken.suffix(2).sorted() == ["first again", "second"])

        loop.unwatch(first)
        loop.unwatch(second)
        let before = woken.count
        loop.runOnce(timeout: .zero)
        #expect(woken.count == before)

        // Only writability is asked for: a readable pipe still reports as readable, a write end as writable.
        var seen: EventLoop.Readiness = []
        loop.watch(secondWrite, for: .writable) { seen = $0 }
        loop.runOnce(timeout: .zero)
        #expect(seen.contains(.writable))
        loop.setInterest(secondWrite, .readable)
        seen = []
        loop.runOnce(timeout: .zero)
        #expect(seen.isEmpty)
    }
}
