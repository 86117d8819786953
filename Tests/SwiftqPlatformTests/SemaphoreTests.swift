import Synchronization
import Testing

@testable import SwiftqPlatform

#if canImport(Glibc)
import Glibc
#endif

/// The monotonic timed wait of ``Semaphore`` and the queues built on it. Nothing here depends on speed: a
/// wait either has a post to take or has none.
@Suite struct SemaphoreTests {
    @Test func aPostedSemaphoreIsTakenOnce() {
        let semaphore = Semaphore()
        semaphore.post()
        #expect(semaphore.wait(timeout: .seconds(5)))
        #expect(!semaphore.wait(timeout: .milliseconds(5)))
    }

    @Test func aWaitWithNoPostTimesOut() {
        let semaphore = Semaphore()
        #expect(!semaphore.wait(timeout: .zero))
        #expect(!semaphore.wait(timeout: .milliseconds(-5)))
        let start = ContinuousClock.now
        #expect(!semaphore.wait(timeout: .milliseconds(20)))
        // A timed wait never ends early (it may end late on a busy machine).
        #expect(ContinuousClock.now - start >= .milliseconds(20))
    }

    @Test func aWorkQueueHandsOverItemsAndTheStop() {
        let queue = WorkQueue<Int>()
        queue.post([1, 2])
        queue.post(3)
        let first = queue.take(timeout: .seconds(5))
        #expect(first.items == [1, 2, 3])
        #expect(!first.stopped)
        #expect(queue.take(timeout: .milliseconds(5)).items.isEmpty)
        // An array posted to an empty queue becomes the queue; later posts go behind it.
        queue.post([4, 5])
        queue.post([6, 7])
        queue.post(8)
        #expect(queue.take(timeout: .seconds(5)).items == [4, 5, 6, 7, 8])
        queue.stop()
        #expect(queue.take(timeout: .seconds(5)).stopped)
    }

    /// A post wakes the thread only when it sleeps: items posted while it works wait for its next take, and a
    /// burst costs one wake-up (one futex call), not one each.
    @Test func aWorkQueueWakesItsThreadOnlyWhenItSleeps() throws {
        let queue = WorkQueue<Int>()
        let working = Semaphore()
        let carryOn = Semaphore()
        let taken = Mutex<[[Int]]>([])
        try PlatformThread.start(name: "workqueue-test") {
            while true {
                let (items, stopped) = queue.take(timeout: .seconds(10))
                if !items.isEmpty {
                    taken.withLock { $0.append(items) }
                    working.post()
                    _ = carryOn.wait(timeout: .seconds(10))
                }
                if stopped { return }
            }
        }
        // Let the thread reach its wait: a post before then finds it awake, which is fine but not this test's case.
        var waited = ContinuousClock.now
        while !queue.isAsleep && waited.duration(to: .now) < .seconds(5) {
            PlatformThread.sleep(for: .milliseconds(1))
        }
        queue.post(1)
        #expect(working.wait(timeout: .seconds(5)))
        #expect(queue.wakeUps == 1)
        // The thread is busy with [1]: these four wake nobody.
        queue.post([2, 3])
        queue.post(4)
        queue.post(5)
        #expect(queue.wakeUps == 1)
        carryOn.post()
        #expect(working.wait(timeout: .seconds(5)))
        #expect(taken.withLock { $0 } == [[1], [2, 3, 4, 5]])
        #expect(queue.wakeUps == 1)
        carryOn.post()
        // Asleep again: the next post wakes it.
        waited = ContinuousClock.now
        while !queue.isAsleep && waited.duration(to: .now) < .seconds(5) {
            PlatformThread.sleep(for: .milliseconds(1))
        }
        queue.post(6)
        #expect(working.wait(timeout: .seconds(5)))
        #expect(queue.wakeUps == 2)
        carryOn.post()
        queue.stop()
    }

    @Test func aWorkQueueHandsItemsOverOneAtATimeAndGivesBackWhatWasNotTaken() {
        let queue = WorkQueue<Int>()
        queue.post([1, 2, 3])
        #expect(queue.takeFirst(timeout: .seconds(5)).item == 1)
        #expect(queue.remove { $0 == 3 })
        #expect(!queue.remove { $0 == 1 }, "already taken")
        #expect(queue.takeFirst(timeout: .seconds(5)).item == 2)
        let none = queue.takeFirst(timeout: .milliseconds(5))
        #expect(none.item == nil && !none.stopped)
        queue.post(4)
        queue.stop()
        let last = queue.takeFirst(timeout: .seconds(5))
        #expect(last.item == 4 && last.stopped, "what was posted before the stop is still handed over")
        #expect(queue.takeFirst(timeout: .seconds(5)) == (nil, true))
    }

    @Test func aMailboxWakesItsDescriptorAndDrains() throws {
        let mailbox = try Mailbox<String>()
        let loop = EventLoop()
        var drained: [String] = []
        loop.watch(mailbox.descriptor) { _ in drained += mailbox.drain() }
        mailbox.post(["a", "b"])
        mailbox.post("c")
        loop.runOnce(timeout: .seconds(5))
        #expect(drained == ["a", "b", "c"])
    }

    /// `wake()` makes the descriptor readable with nothing to drain (the AMQP thread is woken for buffered events
    /// this way); one wake leaves nothing behind once drained, so the next wait sleeps.
    @Test func aMailboxWakeWithoutItems() throws {
        let mailbox = try Mailbox<String>()
        let loop = EventLoop()
        var wakes = 0
        var drained: [String] = []
        loop.watch(mailbox.descriptor) { _ in
            wakes += 1
            drained += mailbox.drain()
        }
        mailbox.wake()
        loop.runOnce(timeout: .seconds(5))
        #expect(wakes == 1)
        #expect(drained.isEmpty)
        loop.runOnce(timeout: .milliseconds(20))
        #expect(wakes == 1)
        // With an item queued, a wake adds nothing: the post's own byte is the only one pending.
        mailbox.post("a")
        mailbox.wake()
        #expect(pendingBytes(mailbox.descriptor) == 1)
        loop.runOnce(timeout: .seconds(5))
        #expect(wakes == 2)
        #expect(drained == ["a"])
        loop.runOnce(timeout: .milliseconds(20))
        #expect(wakes == 2)
    }

    /// `takeQueued()` hands over the items and leaves the pipe alone: its byte still wakes the next wait, whose
    /// `drain()` reads it (and finds nothing more), so a turn woken by something else never reads the pipe in vain.
    @Test func takingQueuedItemsLeavesTheWakeUpForTheNextWait() throws {
        let mailbox = try Mailbox<String>()
        #expect(mailbox.takeQueued().isEmpty)
        mailbox.post(["a", "b"])
        #expect(mailbox.takeQueued() == ["a", "b"])
        #expect(mailbox.takeQueued().isEmpty)
        #expect(pendingBytes(mailbox.descriptor) == 1)
        // That byte is still to be read: the next post needs none of its own.
        mailbox.post("c")
        #expect(pendingBytes(mailbox.descriptor) == 1)
        #expect(mailbox.drain() == ["c"])
        #expect(pendingBytes(mailbox.descriptor) == 0)
        mailbox.post("d")
        #expect(pendingBytes(mailbox.descriptor) == 1)
    }

    /// A quiet reader is not woken by posts that are not urgent; an urgent one wakes it (and takes the quiet ones
    /// with it, in order), and so does turning quiet off with items queued.
    @Test func aQuietReaderIsWokenOnlyForUrgentPosts() throws {
        let mailbox = try Mailbox<String>()
        mailbox.setQuiet(true)
        mailbox.post(["a"], urgent: false)
        mailbox.post(["b"], urgent: false)
        #expect(pendingBytes(mailbox.descriptor) == 0)
        #expect(mailbox.takeQueued() == ["a", "b"])
        mailbox.post(["c"], urgent: false)
        mailbox.post(["d"])
        #expect(pendingBytes(mailbox.descriptor) == 1)
        #expect(mailbox.drain() == ["c", "d"])
        #expect(pendingBytes(mailbox.descriptor) == 0)
        // Items queued quietly when the reader stops being quiet: it is woken for them at once.
        mailbox.post(["e"], urgent: false)
        #expect(pendingBytes(mailbox.descriptor) == 0)
        mailbox.setQuiet(false)
        #expect(pendingBytes(mailbox.descriptor) == 1)
        #expect(mailbox.drain() == ["e"])
        // Not quiet: every post wakes, urgent or not.
        mailbox.post(["f"], urgent: false)
        #expect(pendingBytes(mailbox.descriptor) == 1)
        // Turning quiet off with nothing queued writes nothing.
        #expect(mailbox.drain() == ["f"])
        mailbox.setQuiet(true)
        mailbox.setQuiet(false)
        #expect(pendingBytes(mailbox.descriptor) == 0)
    }

    /// The bytes waiting in a pipe's read end (FIONREAD): how many wake-ups were written and not yet drained.
    private func pendingBytes(_ descriptor: Int32) -> Int32 {
        var count: Int32 = -1
        _ = ioctl(descriptor, UInt(FIONREAD), &count)
        return count
    }
}
