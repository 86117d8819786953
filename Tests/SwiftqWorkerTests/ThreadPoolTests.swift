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

    static func short(_ id: String, _ name: String = "swiftq.add", _ args: [JSONValue] = [1, 1]) -> PoolJob {
        var job = Self.job(id, name, args)
        job.mayQueue = true
        return job
    }

    /// The order of `started` and `finished` (`+id`, `-id`) and `returned` (`<id`) events.
    static func trace(_ recorder: Recorder) -> [String] {
        recorder.events.compactMap { event in
            switch event {
            case .started(let id, _, _): "+\(id)"
            case .finished(let id, _, _, _): "-\(id)"
            case .returned(let id): "<\(id)"
            default: nil
            }
        }
    }

    /// `worker.child_prefetch` for threads: a busy slot takes short jobs into its thread's queue; each starts (its
    /// `started` goes out) only when the one before it returned, and only jobs that may wait do.
    @Test func aBusyThreadSlotQueuesShortJobsAndStartsEachWhenThePreviousReturns() throws {
        let (pool, loop, recorder) = try Self.pool(.threads, size: 1)
        #expect(pool.queueRoom.jobs == 0, "child_prefetch 1 until set")
        pool.setChildPrefetch(3, maxRuntime: .seconds(5))
        _ = try #require(pool.submit(Self.short("a", "swiftq.sleep", [0.3])))
        #expect(pool.idleSlots == 0)
        #expect(pool.queueRoom.jobs == 2)
        // A job that may not wait needs an idle slot.
        #expect(pool.submit(Self.job("long", "swiftq.add", [1, 1])) == nil)
        _ = try #require(pool.submit(Self.short("b")))
        _ = try #require(pool.submit(Self.short("c")))
        #expect(pool.queueRoom.jobs == 0)
        #expect(pool.submit(Self.short("d")) == nil, "the slot holds three")
        #expect(pool.snapshot.first?.queued == 2)
        #expect(loop.run(until: { recorder.finished.count == 3 }, timeout: .seconds(5)))
        #expect(Self.trace(recorder) == ["+a", "-a", "+b", "-b", "+c", "-c"])
        #expect(recorder.finished["c"] == .success(2))
        #expect(pool.idleSlots == 1)

        // A job behind one that runs past child_prefetch_max_runtime is not taken.
        pool.setChildPrefetch(3, maxRuntime: .milliseconds(50))
        _ = try #require(pool.submit(Self.short("slow", "swiftq.sleep", [0.4])))
        #expect(loop.run(until: { pool.queueRoom.jobs == 0 }, timeout: .seconds(2)))
        #expect(pool.submit(Self.short("e")) == nil)
        #expect(loop.run(until: { recorder.finished["slow"] != nil }, timeout: .seconds(5)))
        pool.stop(cold: false)
        #expect(loop.run(until: { pool.isStopped }, timeout: .seconds(5)))
    }

    /// The consumer counts the room and then submits what the count allowed: a submit right after is judged at the
    /// count's instant, so a running job that grows too old to queue behind in between (a slow turn) does not turn
    /// the count into a refusal; the next count sees it as it is.
    @Test func aSubmitAfterTheCountIsJudgedAtTheCountsInstant() throws {
        let (pool, loop, recorder) = try Self.pool(.threads, size: 1)
        pool.setChildPrefetch(3, maxRuntime: .milliseconds(300))
        _ = try #require(pool.submit(Self.short("a", "swiftq.sleep", [1.0])))
        #expect(pool.queueRoom.jobs == 2)
        usleep(400_000)  // "a" has now run longer than the limit
        #expect(pool.submit(Self.short("b")) != nil, "as counted")
        #expect(pool.queueRoom.jobs == 0)
        #expect(pool.submit(Self.short("c")) == nil, "as counted again")
        #expect(loop.run(until: { recorder.finished.count == 2 }, timeout: .seconds(5)))
        #expect(Self.trace(recorder) == ["+a", "-a", "+b", "-b"])
        pool.stop(cold: false)
        #expect(loop.run(until: { pool.isStopped }, timeout: .seconds(5)))
    }

    /// A busy slot takes jobs to wait only while the jobs it holds are expected to take less than
    /// `child_prefetch_max_runtime` in all: `queueRoom.work` is what is left of that, and a slot whose jobs fill it
    /// takes no more, whatever room `child_prefetch` leaves.
    @Test func aBusySlotTakesWaitingJobsOnlyWithinItsWorkBudget() throws {
        let (pool, loop, recorder) = try Self.pool(.threads, size: 1)
        pool.setChildPrefetch(16, maxRuntime: .seconds(1))
        func short(_ id: String, expecting runtime: Double, _ args: [JSONValue] = [1, 1]) -> PoolJob {
            var job = Self.short(id, id == "a" ? "swiftq.sleep" : "swiftq.add", args)
            job.expectedRuntime = runtime
            return job
        }
        _ = try #require(pool.submit(short("a", expecting: 0.3, [0.5])))
        #expect(pool.queueRoom.jobs == 15)
        #expect(abs(pool.queueRoom.work - 0.7) < 1e-9)
        _ = try #require(pool.submit(short("b", expecting: 0.3)))
        _ = try #require(pool.submit(short("c", expecting: 0.3)))
        #expect(abs(pool.queueRoom.work - 0.1) < 1e-9)
        #expect(pool.queueRoom.jobs == 13)
        // 0.9 s held: one more may still join (it waits behind 0.9 s); then 1.2 s are held, and none may.
        _ = try #require(pool.submit(short("d", expecting: 0.3)))
        #expect(pool.queueRoom.work == 0)
        #expect(pool.queueRoom.jobs == 0)
        #expect(pool.submit(short("e", expecting: 0.000_01)) == nil)
        #expect(loop.run(until: { recorder.finished.count == 4 }, timeout: .seconds(5)))
        pool.stop(cold: false)
        #expect(loop.run(until: { pool.isStopped }, timeout: .seconds(5)))
    }

    /// A waiting job has not started: a withdraw (a revoke), a terminate, a shrink and a warm shutdown take it back
    /// unrun, and `returned` says so, in a loop turn of its own.
    @Test func aJobWaitingInASlotsQueueIsGivenBackUnrun() throws {
        let (pool, loop, recorder) = try Self.pool(.threads, size: 2)
        pool.setChildPrefetch(4, maxRuntime: .seconds(5))
        _ = pool.submit(Self.short("a", "swiftq.sleep", [0.3]))
        _ = pool.submit(Self.short("b", "swiftq.sleep", [0.3]))
        for id in ["c", "d", "e", "f"] { _ = try #require(pool.submit(Self.short(id))) }
        pool.withdraw(jobID: "c")
        pool.terminate(jobID: "d", signal: SIGTERM, reason: .terminated(signal: SIGTERM))
        pool.withdraw(jobID: "a")  // running: left alone
        #expect(!Self.trace(recorder).contains { $0.hasPrefix("<") }, "given back in a turn of its own")
        #expect(loop.run(until: { Self.trace(recorder).contains("<d") }, timeout: .seconds(2)))
        #expect(Self.trace(recorder).contains("<c"))
        pool.resize(to: 1)
        pool.stop(cold: false)
        #expect(loop.run(until: { pool.isStopped }, timeout: .seconds(5)))
        let trace = Self.trace(recorder)
        #expect(Set(trace.filter { $0.hasPrefix("<") }) == ["<c", "<d", "<e", "<f"], "\(trace)")
        #expect(Set(recorder.finished.keys) == ["a", "b"], "\(trace)")
        #expect(!trace.contains("+c") && !trace.contains("+e"), "\(trace)")
    }

    /// A slot shrunk away while busy finishes its job even when a grow has put a new slot at its index meanwhile.
    @Test func aShrunkSlotsJobStillFinishesAfterAGrowReusesItsIndex() throws {
        let (pool, loop, recorder) = try Self.pool(.threads, size: 2)
        _ = pool.submit(Self.job("a", "swiftq.sleep", [0.2]))
        _ = pool.submit(Self.job("b", "swiftq.sleep", [0.2]))
        pool.resize(to: 1)
        pool.resize(to: 2)
        #expect(loop.run(until: { recorder.finished.count == 2 }, timeout: .seconds(5)), "\(recorder.events)")
        #expect(loop.run(until: { pool.idleSlots == 2 }, timeout: .seconds(2)))
        pool.stop(cold: false)
        #expect(loop.run(until: { pool.isStopped }, timeout: .seconds(5)))
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
