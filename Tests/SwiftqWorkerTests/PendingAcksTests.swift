import SwiftqCore
import Testing

@testable import SwiftqConsumer

/// When the AMQP transport sends the acks it decided: together, once a quarter of the window waits or the oldest
/// has waited ``PendingAcks/delay``, never later.
@Suite struct PendingAcksTests {
    let start = ContinuousClock.now

    @Test func aLoneAckWaitsForOthersButNoLongerThanTheDelay() {
        var acks = PendingAcks()
        #expect(!acks.isDue(now: start, prefetch: 256))
        acks.add(7, now: start)
        #expect(acks.due == start + PendingAcks.delay)
        #expect(!acks.isDue(now: start, prefetch: 256))
        #expect(!acks.isDue(now: start + PendingAcks.delay - .microseconds(1), prefetch: 256))
        #expect(acks.isDue(now: start + PendingAcks.delay, prefetch: 256))
    }

    /// The batch's deadline is its oldest ack's: later acks do not push it back.
    @Test func laterAcksDoNotPostponeTheBatch() {
        var acks = PendingAcks()
        acks.add(1, now: start)
        acks.add(2, now: start + .milliseconds(1))
        acks.add(3, now: start + .milliseconds(2))
        #expect(acks.due == start + PendingAcks.delay)
        #expect(acks.isDue(now: start + PendingAcks.delay, prefetch: 256))
    }

    @Test func aQuarterOfTheWindowLeavesAtOnce() {
        var acks = PendingAcks()
        for tag in 1...3 { acks.add(UInt64(tag), now: start) }
        #expect(!acks.isDue(now: start, prefetch: 16))
        acks.add(4, now: start)
        #expect(acks.isDue(now: start, prefetch: 16))
        // Celery's default window on two cores (4 × 2): two by two.
        #expect(PendingAcks.batchSize(prefetch: 8) == 2)
        // A window of one or two: each ack leaves at once.
        #expect(PendingAcks.batchSize(prefetch: 1) == 1)
        #expect(PendingAcks.batchSize(prefetch: 2) == 1)
    }

    /// A large window, or none (`prefetch` 0), still sends a bounded batch at once.
    @Test func largeAndUnlimitedWindowsSendTheLargestBatch() {
        #expect(PendingAcks.batchSize(prefetch: 256) == PendingAcks.largestBatch)
        #expect(PendingAcks.batchSize(prefetch: 10_000) == PendingAcks.largestBatch)
        #expect(PendingAcks.batchSize(prefetch: 0) == PendingAcks.largestBatch)
        var acks = PendingAcks()
        for tag in 1..<PendingAcks.largestBatch { acks.add(UInt64(tag), now: start) }
        #expect(!acks.isDue(now: start, prefetch: 0))
        acks.add(UInt64(PendingAcks.largestBatch), now: start)
        #expect(acks.isDue(now: start, prefetch: 0))
    }

    @Test func takingEmptiesTheBatchAndTheNextOneHasItsOwnDeadline() {
        var acks = PendingAcks()
        acks.add(5, now: start)
        acks.add(3, now: start)
        let flush = acks.take(now: start, prefetch: 256, outstanding: [3, 5], force: true)
        #expect(flush == PendingAcks.Flush(multipleUpTo: 5, runLength: 2, singles: [], acked: [5, 3]))
        #expect(acks.isEmpty)
        #expect(acks.due == nil)
        #expect(acks.take(now: start + .seconds(1), prefetch: 256, outstanding: []) == nil)
        acks.add(9, now: start + .seconds(1))
        #expect(acks.due == start + .seconds(1) + PendingAcks.delay)
    }

    /// Two children finish out of order: what cannot join the run from the oldest outstanding delivery waits for
    /// the acks below it, and then leaves with them in one frame.
    @Test func acksAboveAGapWaitForItAndJoinTheNextRun() throws {
        var acks = PendingAcks()
        var outstanding = Set<UInt64>(1...8)
        for tag: UInt64 in [1, 5, 2, 6] { acks.add(tag, now: start) }
        let takenFirst = acks.take(now: start, prefetch: 16, outstanding: outstanding)
        let first = try #require(takenFirst)
        #expect(first == PendingAcks.Flush(multipleUpTo: 2, runLength: 2, singles: [], acked: [1, 2]))
        #expect(acks.tags == [5, 6])
        #expect(acks.due == start + PendingAcks.delay)
        outstanding.subtract(first.acked)
        let later = start + .microseconds(500)
        for tag: UInt64 in [3, 4] { acks.add(tag, now: later) }
        let takenSecond = acks.take(now: later, prefetch: 16, outstanding: outstanding)
        let second = try #require(takenSecond)
        #expect(second == PendingAcks.Flush(multipleUpTo: 6, runLength: 4, singles: [], acked: [5, 6, 3, 4]))
        #expect(acks.isEmpty)
    }

    /// Held back or not, no ack waits longer than ``PendingAcks/delay``: past it, what a run cannot take leaves alone.
    @Test func heldAcksLeaveAloneByTheirDeadline() throws {
        var acks = PendingAcks()
        acks.add(2, now: start)
        acks.add(3, now: start + .milliseconds(1))
        // Tag 1 is a long task's: no run. Not due yet by count (a quarter of 256) nor by time.
        #expect(acks.take(now: start + .milliseconds(1), prefetch: 256, outstanding: [1, 2, 3]) == nil)
        let takenDue = acks.take(now: start + PendingAcks.delay, prefetch: 256, outstanding: [1, 2, 3])
        let due = try #require(takenDue)
        #expect(due == PendingAcks.Flush(multipleUpTo: nil, runLength: 0, singles: [2], acked: [2]))
        // Tag 3 keeps its own deadline.
        #expect(acks.due == start + .milliseconds(1) + PendingAcks.delay)
        #expect(acks.take(now: start + PendingAcks.delay, prefetch: 256, outstanding: [1, 3]) == nil)
    }

    /// A quarter of the window waiting behind an undecided delivery leaves at once, one by one: holding it would
    /// keep the broker from delivering more.
    @Test func aFullBatchBehindAGapLeavesAtOnce() throws {
        var acks = PendingAcks()
        for tag: UInt64 in [2, 3, 4, 5] { acks.add(tag, now: start) }
        let takenFlush = acks.take(now: start, prefetch: 16, outstanding: [1, 2, 3, 4, 5])
        let flush = try #require(takenFlush)
        #expect(flush.multipleUpTo == nil)
        #expect(flush.singles == [2, 3, 4, 5])
        #expect(flush.acked == [2, 3, 4, 5])
        #expect(acks.isEmpty)
    }

    /// A run of one is a single ack; closing the connection sends everything, held or not.
    @Test func aRunOfOneIsASingleAckAndForceSendsTheRest() throws {
        var acks = PendingAcks()
        for tag: UInt64 in [1, 3] { acks.add(tag, now: start) }
        let takenFlush = acks.take(now: start, prefetch: 256, outstanding: [1, 2, 3], force: true)
        let flush = try #require(takenFlush)
        #expect(flush == PendingAcks.Flush(multipleUpTo: nil, runLength: 1, singles: [1, 3], acked: [1, 3]))
        #expect(flush.frames == 2)
        #expect(acks.isEmpty)
    }
}

/// Which settlement plans may wait for the AMQP thread's next look instead of waking it: those that only ack.
@Suite struct SettlementOnlyAcksTests {
    @Test func aPlainAckOnlyAcks() {
        #expect(Settlement(deliveryTag: "1:7", taskID: "t").onlyAcks)
    }

    /// Anything else in a plan is somebody's business to see done soon: results, publishes, other dispositions,
    /// revokes, chords.
    @Test func aPlanWithMoreThanAnAckIsUrgent() {
        var withResult = Settlement(deliveryTag: "1:7", taskID: "t")
        withResult.result = StoredResult(taskID: "t", meta: Array(#"{"status": "SUCCESS"}"#.utf8))
        #expect(!withResult.onlyAcks)
        var withPublish = Settlement(deliveryTag: "1:7", taskID: "t")
        withPublish.publishes = [OutboundMessage(exchange: "", routingKey: "q", body: Array("[]".utf8))]
        #expect(!withPublish.onlyAcks)
        var afterResult = Settlement(deliveryTag: "1:7", taskID: "t")
        afterResult.afterResult = [OutboundMessage(exchange: "", routingKey: "q", body: Array("[]".utf8))]
        #expect(!afterResult.onlyAcks)
        for disposition in [Settlement.Disposition.requeue, .restore, .reject, .none] {
            #expect(!Settlement(deliveryTag: "1:7", taskID: "t", disposition: disposition).onlyAcks)
        }
        var restoring = Settlement(deliveryTag: "1:7", taskID: "t")
        restoring.restoreHeld = true
        #expect(!restoring.onlyAcks)
        var revoking = Settlement(deliveryTag: "1:7", taskID: "t")
        revoking.revokes = [RevokeRecord(id: "other", at: 1)]
        #expect(!revoking.onlyAcks)
        var chord = Settlement(deliveryTag: "1:7", taskID: "t")
        chord.chordCleanup = ChordClaim(groupID: "g", token: "x")
        #expect(!chord.onlyAcks)
    }
}
