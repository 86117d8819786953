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
        queue.stop()
        #expect(queue.take(timeout: .seconds(5)).stopped)
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

    /// The bytes waiting in a pipe's read end (FIONREAD): how many wake-ups were written and not yet drained.
    private func pendingBytes(_ descriptor: Int32) -> Int32 {
        var count: Int32 = -1
        _ = ioctl(descriptor, UInt(FIONREAD), &count)
        return count
    }
}
