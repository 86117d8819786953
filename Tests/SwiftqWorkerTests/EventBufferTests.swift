import SwiftqConsumer
import Testing

/// The bounded event buffer's decisions, without I/O: the oldest events go when it is full, drops are counted, a
/// burst of drops is told once, and the writer is woken once per take.
@Suite struct EventBufferTests {
    @Test func wakesTheWriterOncePerTake() {
        var buffer = EventBuffer<Int>(capacity: 10)
        let append1 = buffer.append([1, 2])
        #expect(append1 == .init(wake: true))
        let append2 = buffer.append([3])
        #expect(append2 == .init(wake: false))
        let take1 = buffer.take()
        #expect(take1 == [1, 2, 3])
        let take2 = buffer.take()
        #expect(take2 == [])
        let append3 = buffer.append([4])
        #expect(append3 == .init(wake: true))
        let append4 = buffer.append([Int]())
        #expect(append4 == .init(wake: false))
        let take3 = buffer.take()
        #expect(take3 == [4])
    }

    @Test func dropsTheOldestWhenFullAndCountsThem() {
        var buffer = EventBuffer<Int>(capacity: 3)
        _ = buffer.append([1, 2, 3])
        let append5 = buffer.append([4, 5])
        #expect(append5 == .init(wake: false, dropped: 2, burstStarted: true))
        #expect(Array(buffer.waiting) == [3, 4, 5])
        #expect(buffer.dropped == 2)
        // More than the capacity at once: only the newest of them stay.
        let append6 = buffer.append([6, 7, 8, 9])
        #expect(append6 == .init(wake: false, dropped: 4, burstStarted: false))
        let take4 = buffer.take()
        #expect(take4 == [7, 8, 9])
        #expect(buffer.dropped == 6)
    }

    @Test func aBurstIsToldOnceAndEndsAfterATakeWithoutDrops() {
        var buffer = EventBuffer<Int>(capacity: 2)
        _ = buffer.append([1, 2])
        let append7 = buffer.append([3])
        #expect(append7.burstStarted)
        let append8 = buffer.append([4])
        #expect(!append8.burstStarted)
        _ = buffer.take()
        // Still overloaded between takes: the same burst, not told again.
        _ = buffer.append([5, 6])
        let append9 = buffer.append([7])
        #expect(append9 == .init(wake: false, dropped: 1, burstStarted: false))
        _ = buffer.take()
        // A turn without drops ends the burst; the next drop starts (and tells) a new one.
        _ = buffer.append([8])
        _ = buffer.take()
        _ = buffer.append([9, 10])
        let append10 = buffer.append([11])
        #expect(append10 == .init(wake: false, dropped: 1, burstStarted: true))
        #expect(buffer.dropped == 4)
    }

    @Test func aFullBufferKeepsItsBoundUnderAnyLoad() {
        var buffer = EventBuffer<Int>(capacity: 100)
        for start in stride(from: 0, to: 100_000, by: 7) { _ = buffer.append(Array(start..<(start + 7))) }
        #expect(buffer.waiting.count == 100)
        // The last chunk appended was 99_995..<100_002: the newest 100 events are kept, in order.
        #expect(Array(buffer.waiting) == Array(99_902..<100_002))
        let take5 = buffer.take()
        #expect(buffer.dropped + take5.count == 100_002)
    }

    /// The AMQP writer batches by time: waiting events are due when a full list message's worth waits, or when the
    /// oldest has waited the delay; a take starts the clock again.
    @Test func eventsAreDueWhenAFullBatchWaitsOrTheOldestHasWaitedTheDelay() {
        var buffer = EventBuffer<Int>(capacity: 100)
        let start = ContinuousClock.now
        let delay = Duration.milliseconds(20)
        #expect(!buffer.isDue(now: start, fullBatch: 4, maximumDelay: delay))
        #expect(buffer.dueIn(now: start, maximumDelay: delay) == nil)
        _ = buffer.append([1, 2], now: start)
        #expect(!buffer.isDue(now: start + .milliseconds(5), fullBatch: 4, maximumDelay: delay))
        #expect(buffer.dueIn(now: start + .milliseconds(5), maximumDelay: delay) == .milliseconds(15))
        // Later appends do not move the oldest event's clock.
        _ = buffer.append([3], now: start + .milliseconds(10))
        #expect(buffer.isDue(now: start + .milliseconds(20), fullBatch: 4, maximumDelay: delay))
        #expect(buffer.dueIn(now: start + .milliseconds(25), maximumDelay: delay) == .zero)
        _ = buffer.append([4], now: start + .milliseconds(11))
        #expect(buffer.isDue(now: start + .milliseconds(11), fullBatch: 4, maximumDelay: delay))
        #expect(Array(buffer.take()) == [1, 2, 3, 4])
        #expect(!buffer.isDue(now: start + .seconds(1), fullBatch: 4, maximumDelay: delay))
        _ = buffer.append([5], now: start + .seconds(1))
        #expect(!buffer.isDue(now: start + .seconds(1) + .milliseconds(19), fullBatch: 4, maximumDelay: delay))
        #expect(buffer.isDue(now: start + .seconds(1) + .milliseconds(20), fullBatch: 4, maximumDelay: delay))
    }
}
