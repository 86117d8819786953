import Foundation
import SwiftqCore
import SwiftqPlatform
import Testing

@testable import SwiftqPool

/// Child prefetch with real pool children (`swiftqd _pool-child`): jobs that wait in a busy child's queue start only
/// when the child reaches them, are taken back unrun when asked (withdraw, terminate, a child's death), and nothing
/// more waits behind a job that overruns the runtime limit.
@Suite(.serialized) struct ChildPrefetchTests {
    /// A prefork pool of real children on a loop this test runs, recording every event.
    final class PoolUnderTest {
        let loop = EventLoop()
        let pool: PreforkPool
        var events: [PoolEvent] = []

        init(size: Int, prefetch: Int, maxRuntime: Duration = .seconds(30)) throws {
            ignoreBrokenPipes()
            pool = PreforkPool(
                size: size,
                loop: loop,
                policy: RestartPolicy(),
                logLevel: .warning,
                executable: Binaries.swiftqd
            )
            pool.setChildPrefetch(prefetch, maxRuntime: maxRuntime)
            pool.onEvent = { [unowned self] event in events.append(event) }
            try pool.start()
            #expect(loop.run(until: { self.pool.idleSlots == size }, timeout: .seconds(20)))
        }

        deinit {
            let pool = self.pool
            pool.onEvent = nil
            pool.stop(cold: true)
            _ = loop.run(until: { pool.isStopped }, timeout: .seconds(5))
        }

        func job(_ id: String, sleep seconds: Double? = nil, mayQueue: Bool = true) -> PoolJob {
            var job =
                seconds.map { PoolJob(id: id, name: "swiftq.sleep", args: [.double($0)], kwargs: [:]) }
                ?? PoolJob(id: id, name: "swiftq.ping", args: [], kwargs: [:])
            job.mayQueue = mayQueue
            return job
        }

        @discardableResult
        func waitFor(_ timeout: Duration = .seconds(20), _ condition: @escaping ([PoolEvent]) -> Bool) -> Bool {
            loop.run(until: { condition(self.events) }, timeout: timeout)
        }

        /// The events about `id`, by kind: "started", "finished", "lost", "returned".
        func kinds(_ id: String) -> [String] {
            events.compactMap { event in
                switch event {
                case .started(let jobID, _, _) where jobID == id: "started"
                case .finished(let jobID, _, _, _) where jobID == id: "finished"
                case .lost(let jobID, _, _, _) where jobID == id: "lost"
                case .returned(let jobID) where jobID == id: "returned"
                default: nil
                }
            }
        }

        /// Where the first event about `id` of `kind` is in the event list.
        func position(_ id: String, _ kind: String) -> Int? {
            events.firstIndex { event in
                switch event {
                case .started(let jobID, _, _): kind == "started" && jobID == id
                case .finished(let jobID, _, _, _): kind == "finished" && jobID == id
                case .lost(let jobID, _, _, _): kind == "lost" && jobID == id
                case .returned(let jobID): kind == "returned" && jobID == id
                default: false
                }
            }
        }
    }

    @Test func queuedJobsStartWhenTheChildReachesThemAndAWithdrawnOneNeverRuns() throws {
        let pool = try PoolUnderTest(size: 1, prefetch: 3)
        #expect(pool.pool.queueableSlots == 0, "an idle child has no queue room to offer: it takes a job first")
        #expect(pool.pool.submit(pool.job("a", sleep: 0.4)) != nil)
        #expect(pool.pool.queueableSlots == 2)
        #expect(pool.pool.submit(pool.job("b")) != nil)
        #expect(pool.pool.submit(pool.job("c")) != nil)
        #expect(pool.pool.queueableSlots == 0)
        #expect(pool.pool.submit(pool.job("d")) == nil, "the child holds child_prefetch jobs at most")
        #expect(pool.pool.snapshot.first?.queued == 2)
        // Only the running job started.
        #expect(pool.kinds("a") == ["started"])
        #expect(pool.kinds("b").isEmpty && pool.kinds("c").isEmpty)
        pool.pool.withdraw(jobID: "c")
        pool.pool.withdraw(jobID: "a")  // Running: left alone.
        #expect(pool.waitFor { _ in pool.kinds("b") == ["started", "finished"] }, "\(pool.events)")
        #expect(pool.kinds("a") == ["started", "finished"])
        #expect(pool.kinds("c") == ["returned"], "the withdrawn job ran or was not given back: \(pool.events)")
        // "b" started only once "a" was done.
        #expect(try #require(pool.position("b", "started")) > #require(pool.position("a", "finished")))
        #expect(pool.pool.idleSlots == 1)
    }

    @Test func aJobThatMayNotWaitGoesOnlyToAnIdleChild() throws {
        let pool = try PoolUnderTest(size: 1, prefetch: 4)
        #expect(pool.pool.submit(pool.job("a", sleep: 0.2)) != nil)
        #expect(pool.pool.submit(pool.job("b", mayQueue: false)) == nil)
        // Nor does anything wait behind a job that may not.
        let fair = try PoolUnderTest(size: 1, prefetch: 4)
        #expect(fair.pool.submit(fair.job("a", sleep: 0.2, mayQueue: false)) != nil)
        #expect(fair.pool.queueableSlots == 0)
        #expect(fair.pool.submit(fair.job("b")) == nil)
        // child_prefetch 1: Celery's -O fair.
        let one = try PoolUnderTest(size: 1, prefetch: 1)
        #expect(one.pool.submit(one.job("a", sleep: 0.2)) != nil)
        #expect(one.pool.submit(one.job("b")) == nil)
    }

    @Test func terminateEndsTheRunningJobOrTakesBackAWaitingOne() throws {
        let pool = try PoolUnderTest(size: 1, prefetch: 3)
        #expect(pool.pool.submit(pool.job("long", sleep: 30)) != nil)
        #expect(pool.pool.submit(pool.job("w1")) != nil)
        #expect(pool.pool.submit(pool.job("w2")) != nil)
        // A waiting job: cancelled in the child, which keeps running "long".
        let pid = try #require(pool.pool.snapshot.first?.pid)
        pool.pool.terminate(jobID: "w1", signal: SIGTERM, reason: .terminated(signal: SIGTERM))
        #expect(pool.waitFor { _ in pool.kinds("w1") == ["returned"] }, "\(pool.events)")
        #expect(pool.pool.snapshot.first?.pid == pid, "the child was killed for a job it had not started")
        // The running job: its child is killed, and the job behind it is given back, not lost.
        pool.pool.terminate(jobID: "long", signal: SIGKILL, reason: .terminated(signal: SIGKILL))
        #expect(
            pool.waitFor { _ in !pool.kinds("long").filter { $0 == "lost" }.isEmpty && pool.kinds("w2") == ["returned"]
            }
        )
        let lost = pool.events.compactMap { event -> ExitReason? in
            if case .lost("long", _, _, let reason) = event { return reason }
            return nil
        }
        #expect(lost == [.terminated(signal: SIGKILL)])
        #expect(pool.kinds("w2") == ["returned"], "\(pool.events)")
    }

    @Test func aChildThatDiesGivesBackTheJobsWaitingBehindItsTask() throws {
        let pool = try PoolUnderTest(size: 1, prefetch: 3)
        #expect(pool.pool.submit(pool.job("a", sleep: 30)) != nil)
        #expect(pool.pool.submit(pool.job("b")) != nil)
        let pid = try #require(pool.pool.snapshot.first?.pid)
        kill(pid, SIGKILL)
        #expect(pool.waitFor { _ in pool.kinds("a") == ["started", "lost"] && pool.kinds("b") == ["returned"] })
        let lost = pool.events.compactMap { event -> ExitReason? in
            if case .lost("a", _, _, let reason) = event { return reason }
            return nil
        }
        #expect(lost.first?.isCrash == true)
        // A new child takes jobs again.
        #expect(pool.waitFor { _ in pool.pool.idleSlots == 1 })
        #expect(pool.pool.submit(pool.job("c")) != nil)
        #expect(pool.waitFor { _ in pool.kinds("c") == ["started", "finished"] })
    }

    @Test func nothingMoreWaitsBehindAJobThatOverrunsTheRuntimeLimit() throws {
        let pool = try PoolUnderTest(size: 2, prefetch: 3, maxRuntime: .milliseconds(100))
        #expect(pool.pool.submit(pool.job("long", sleep: 0.6)) != nil)  // slot 0
        #expect(pool.pool.submit(pool.job("other", sleep: 0.6)) != nil)  // slot 1
        #expect(pool.pool.queueableSlots == 4)
        #expect(pool.pool.submit(pool.job("behind")) != nil)  // queued behind "long" (the lower slot of the two)
        #expect(pool.pool.snapshot.first { $0.slot == 0 }?.queued == 1)
        // Once both have run past 100 ms, nothing more waits behind them.
        #expect(pool.waitFor(.milliseconds(250)) { _ in false } == false)
        #expect(pool.pool.queueableSlots == 0)
        #expect(pool.pool.submit(pool.job("refused")) == nil)
        // What already waited runs when its child is done.
        #expect(pool.waitFor { _ in pool.kinds("behind") == ["started", "finished"] }, "\(pool.events)")
        #expect(try #require(pool.position("behind", "started")) > #require(pool.position("long", "finished")))
    }
}

@Suite struct PoolChildQueueTests {
    /// The child reads its channel between two queued jobs: a cancel sent while a job runs finds the next ones
    /// still queued; results come in order and each before the next job starts.
    @Test func aQueuedJobIsCancelledBetweenJobsAndTheOthersRunInOrder() throws {
        let child = try PoolChildDriver()
        _ = try child.receive()
        try child.send(["type": "execute", "id": "a", "task": "swiftq.sleep", "args": [0.4], "kwargs": [:]])
        try child.send(["type": "execute", "id": "b", "task": "swiftq.ping", "args": [], "kwargs": [:]])
        try child.send(["type": "execute", "id": "c", "task": "swiftq.ping", "args": [], "kwargs": [:]])
        Thread.sleep(forTimeInterval: 0.1)
        try child.send(["type": "cancel", "id": "c"])
        try child.send(["type": "cancel", "id": "nope"])  // Unknown: no answer.
        var replies: [String] = []
        while let frame = try child.receive(timeout: .seconds(2)) {
            replies.append("\(frame["type"]?.stringValue ?? "?") \(frame["id"]?.stringValue ?? "?")")
        }
        #expect(replies == ["result a", "cancelled c", "result b"])
    }

    /// A result bigger than the socket takes at once is written whole before the next job starts: the consumer
    /// learns that a job started from the result before it, and a task's result must not wait for the next task.
    @Test func aBigResultIsWrittenWholeBeforeTheNextJobStarts() throws {
        let child = try PoolChildDriver()
        _ = try child.receive()
        let big = String(repeating: "r", count: 1 << 20)
        try child.send(["type": "execute", "id": "big", "task": "swiftq.echo", "args": [.string(big)], "kwargs": [:]])
        try child.send(["type": "execute", "id": "next", "task": "swiftq.sleep", "args": [5], "kwargs": [:]])
        // Nothing is read meanwhile: the socket fills up with part of the big result.
        Thread.sleep(forTimeInterval: 0.5)
        let reading = ContinuousClock.now
        let first = try #require(try child.receive(timeout: .seconds(10)))
        #expect(first["id"] == "big")
        #expect(first["result"]?.stringValue?.utf8.count == 1 << 20)
        // Whole at once, not once the five-second task after it is over.
        #expect(reading.duration(to: .now) < .seconds(2), "the rest of the result waited for the next job")
    }

    /// A job refused for its arguments is answered in its turn, after the jobs before it: the consumer reads each
    /// result as the end of the job it holds first.
    @Test func aRefusedJobIsAnsweredInItsTurn() throws {
        let child = try PoolChildDriver()
        _ = try child.receive()
        try child.send(["type": "execute", "id": "a", "task": "swiftq.sleep", "args": [0.3], "kwargs": [:]])
        try child.send(["type": "execute", "id": "bad", "task": "swiftq.ping", "args": "not a list", "kwargs": [:]])
        try child.send(["type": "execute", "id": "b", "task": "swiftq.ping", "args": [], "kwargs": [:]])
        var replies: [String] = []
        while let frame = try child.receive(timeout: .seconds(2)) {
            replies.append("\(frame["id"]?.stringValue ?? "?") \(frame["state"]?.stringValue ?? "?")")
        }
        #expect(replies == ["a SUCCESS", "bad FAILURE", "b SUCCESS"])
    }
}
