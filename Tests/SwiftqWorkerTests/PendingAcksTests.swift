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

    @Test func takingEmptiesTheBatchInOrderAndTheNextOneHasItsOwnDeadline() {
        var acks = PendingAcks()
        acks.add(5, now: start)
        acks.add(3, now: start)
        #expect(acks.take() == [5, 3])
        #expect(acks.isEmpty)
        #expect(acks.due == nil)
        #expect(!acks.isDue(now: start + .seconds(1), prefetch: 256))
        acks.add(9, now: start + .seconds(1))
        #expect(acks.due == start + .seconds(1) + PendingAcks.delay)
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
