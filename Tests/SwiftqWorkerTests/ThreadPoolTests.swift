import SwiftqCore
import SwiftqPlatform
import SwiftqTasks
import Testing

@testable import SwiftqPool

#if canImport(Glibc)
import Glibc
#endif

/// The threads and solo pools on a real event loop and real threads.
@Suite struct ThreadPoolTests {
    final class Recorder {
        var events: [PoolEvent] = []
        var finished: [String: PoolOutcome] {
            var outcomes: [String: PoolOutcome] = [:]
            for case .finished(let id, let outcome, _, _) in events { outcomes[id] = outcome }
            return outcomes
        }
        var lost: [String: ExitReason] {
            var reasons: [String: ExitReason] = [:]
            for case .lost(let id, _, _, let reason) in events { reasons[id] = reason }
            return reasons
        }
    }

    static func pool(_ mode: ThreadPool.Mode, size: Int = 2) throws -> (ThreadPool, EventLoop, Recorder) {
        let loop = EventLoop()
        let pool = ThreadPool(mode: mode, size: size, loop: loop, registry: .builtIn)
        let recorder = Recorder()
        pool.onEvent = { recorder.events.append($0) }
        try pool.start()
        return (pool, loop, recorder)
    }

    static func job(_ id: String, _ name: String, _ args: [JSONValue], hard: Double? = nil) -> PoolJob {
        PoolJob(id: id, name: name, args: args, kwargs: [:], hardTimeLimit: hard)
    }

    @Test func aThreadTaskSeesItsRequestAndItsEffectsComeBackWithTheOutcome() throws {
        var registry = TaskRegistry.builtIn
        registry.register("t.adder") { invocation, _ in
            try invocation.addToChord(TaskSignature("swiftq.add", args: [1, 2]))
            return .string(invocation.request.group ?? "")
        }
        for mode in [ThreadPool.Mode.threads, .solo] {
            let loop = EventLoop()
            let pool = ThreadPool(mode: mode, size: 1, loop: loop, registry: registry)
            let recorder = Recorder()
            pool.onEvent = { recorder.events.append($0) }
            try pool.start()
            var job = Self.job("a", "t.adder", [])
            var request = TaskRequest()
            request.group = "g1"
            request.chord = ["task": "t.body"]
            job.request = request
            _ = try #require(pool.submit(job))
            #expect(loop.run(until: { recorder.finished.count == 1 }, timeout: .seconds(5)))
            #expect(recorder.finished["a"] == .success("g1"), "\(mode)")
            let effects = recorder.events.compactMap { event -> [TaskEffect]? in
                guard case .finished(_, _, _, let effects) = event else { return nil }
                return effects
            }
            #expect(effects.first?.count == 1, "\(mode)")
            pool.stop(cold: false)
            _ = loop.run(until: { pool.isStopped }, timeout: .seconds(5))
        }
    }

    @Test func threadsRunJobsConcurrentlyAndReportEachOutcome() throws {
        let (pool, loop, recorder) = try Self.pool(.threads)
        #expect(pool.targetSize == 2)
        #expect(pool.idleSlots == 2)
        let first = try #require(pool.submit(Self.job("a", "swiftq.sleep", [0.3])))
        let second = try #require(pool.submit(Self.job("b", "swiftq.sleep", [0.3])))
        #expect(first.slot != second.slot)
        #expect(pool.idleSlots == 0)
        #expect(pool.submit(Self.job("c", "swiftq.add", [1, 2])) == nil, "no idle slot")
        let started = ContinuousClock.now
        #expect(loop.run(until: { recorder.finished.count == 2 }, timeout: .seconds(5)))
        // Both slept at once: on two threads, not one after the other.
        #expect(started.duration(to: .now) < .milliseconds(550))
        #expect(pool.idleSlots == 2)
        _ = pool.submit(Self.job("c", "swiftq.add", [1, 2]))
        _ = pool.submit(Self.job("d", "swiftq.fail", ["no"]))
        #expect(loop.run(until: { recorder.finished.count == 4 }, timeout: .seconds(5)))
        #expect(recorder.finished["c"] == .success(3))
        guard case .failure(let failure)? = recorder.finished["d"] else {
            Issue.record("swiftq.fail did not fail: \(recorder.events)")
            return
        }
        #expect(failure.type == "RuntimeError")
        #expect(pool.snapshot.map(\.tasksCompleted).reduce(0, +) == 4)
        pool.stop(cold: false)
        #expect(pool.isStopped)
    }

    @Test func aHardLimitOnAThreadFailsTheTaskAndHoldsTheSlotUntilTheHandlerReturns() throws {
        let (pool, loop, recorder) = try Self.pool(.threads, size: 1)
        // The hard limit ends the handler's sleep as a soft one would; either way the task fails with the limit.
        _ = pool.submit(Self.job("slow", "swiftq.sleep", [5], hard: 0.2))
        let started = ContinuousClock.now
        #expect(loop.run(until: { recorder.lost["slow"] != nil }, timeout: .seconds(3)))
        #expect(recorder.lost["slow"] == .timeLimit)
        #expect(recorder.finished["slow"] == nil)
        #expect(started.duration(to: .now) < .seconds(2))
        #expect(loop.run(until: { pool.idleSlots == 1 }, timeout: .seconds(3)))
        _ = pool.submit(Self.job("next", "swiftq.add", [2, 2]))
        #expect(loop.run(until: { recorder.finished["next"] != nil }, timeout: .seconds(3)))
        #expect(recorder.finished["next"] == .success(4))
    }

    @Test func soloRunsOneJobAtATimeInALoopTurn() throws {
        let (pool, loop, recorder) = try Self.pool(.solo, size: 4)
        #expect(pool.targetSize == 1, "solo ignores concurrency")
        let submission = try #require(pool.submit(Self.job("a", "swiftq.add", [1, 1])))
        #expect(submission.pid == getpid())
        #expect(pool.submit(Self.job("b", "swiftq.add", [1, 1])) == nil)
        // Not run inside submit: in a turn of its own.
        #expect(recorder.finished.isEmpty)
        #expect(loop.run(until: { recorder.finished["a"] != nil }, timeout: .seconds(2)))
        #expect(recorder.finished["a"] == .success(2))
        #expect(pool.idleSlots == 1)
    }
}
