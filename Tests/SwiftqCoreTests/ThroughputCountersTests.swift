import SwiftqCore
import Testing

@Suite struct ThroughputCountersTests {
    @Test func histogramBucketsArePowersOfTwo() {
        #expect(BatchHistogram.labels == ["1", "2", "3-4", "5-8", "9-16", "17-32", "33-64", "65+"])
        var histogram = BatchHistogram()
        for size in [1, 2, 3, 4, 5, 8, 9, 64, 65, 1000] { histogram.record(size) }
        #expect(histogram.buckets == [1, 1, 2, 2, 1, 0, 1, 2])
        #expect(histogram.batches == 10)
        #expect(histogram.items == 1 + 2 + 3 + 4 + 5 + 8 + 9 + 64 + 65 + 1000)
    }

    @Test func anEmptyBatchIsNotABatch() {
        var histogram = BatchHistogram()
        histogram.record(0)
        #expect(histogram.batches == 0)
        #expect(histogram.mean == nil)
        #expect(histogram.json["mean"] == .null)
        #expect(histogram.json["sizes"] == .object([:]))
    }

    @Test func histogramJSONLeavesOutEmptyBuckets() {
        var histogram = BatchHistogram()
        histogram.record(1)
        histogram.record(3)
        histogram.record(4)
        #expect(
            histogram.json
                == .object([
                    "batches": 3, "items": 8, "mean": .double(8.0 / 3.0), "sizes": .object(["1": 1, "3-4": 2]),
                ])
        )
    }

    @Test func perTaskDividesByTheTasksFinished() {
        let snapshot = ThroughputSnapshot(
            loopWakeups: 30,
            poolFramesSent: 10,
            poolFramesReceived: 10,
            threadWakeups: 25,
            brokerRoundTrips: 5
        )
        let json = snapshot.json(tasks: 10)
        #expect(json["tasks"] == 10)
        #expect(json["pool_frames"] == 20)
        #expect(json["per_task"]?["loop_wakeups"] == .double(3))
        #expect(json["per_task"]?["pool_frames"] == .double(2))
        #expect(json["per_task"]?["thread_wakeups"] == .double(2.5))
        #expect(json["per_task"]?["broker_round_trips"] == .double(0.5))
        // Before the first task there is nothing to divide by.
        #expect(snapshot.json(tasks: 0)["per_task"]?["loop_wakeups"] == .null)
    }

    @Test func countersAddUpAcrossThreads() async {
        let counters = ThroughputCounters()
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<4 {
                group.addTask {
                    for _ in 0..<1000 {
                        counters.loopWokeUp()
                        counters.brokerRoundTrip()
                        counters.record(.ack, size: 2)
                    }
                }
            }
        }
        let snapshot = counters.snapshot
        #expect(snapshot.loopWakeups == 4000)
        #expect(snapshot.brokerRoundTrips == 4000)
        #expect(snapshot.ack.batches == 4000)
        #expect(snapshot.ack.items == 8000)
        #expect(snapshot.reserve.batches == 0)
    }
}
