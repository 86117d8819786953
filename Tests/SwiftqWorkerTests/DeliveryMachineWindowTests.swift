import SwiftqCore
import SwiftqTasks
import Testing

@testable import SwiftqConsumer
@testable import SwiftqPool

/// The prefetch window in the delivery machine (no processes): what counts against it, as the broker counts
/// unacked messages in Celery, and the larger window short tasks get (child prefetch). The steps of the larger
/// window are worked out with `child_prefetch: 4`, small numbers to follow; `defaultChildPrefetch…` checks the
/// default's.
@Suite struct DeliveryMachineWindowTests {
    static let now = DeliveryMachineChildPrefetchTests.now

    static func granted(_ actions: [DeliveryMachine.Action]) -> Int {
        actions.reduce(0) { total, action in
            if case .grant(let count) = action { return total + count }
            return total
        }
    }

    /// The deliveries given back to the broker to be next in line, by task id, in the order of the plans.
    static func restored(_ actions: [DeliveryMachine.Action]) -> [String] {
        actions.compactMap { action in
            guard case .settle(let plan) = action, plan.disposition == .restore else { return nil }
            return plan.taskID
        }
    }

    static func tasks(_ name: String, _ range: ClosedRange<Int>) -> [InboundMessage] {
        range.map { .task(TaskMessage(id: "\(name)-\($0)", name: name), deliveryTag: "\(name)-\($0)", queue: "q") }
    }

    @Test func aTaskAckedWhenItStartedFreesItsPlaceAndALateAckedOneKeepsIt() throws {
        // Celery's window without child prefetch: concurrency 2 × prefetch_multiplier 4.
        var machine = try DeliveryMachineChildPrefetchTests.machine(
            "worker:\n  concurrency: 2\n  child_prefetch: 1\n  acks_late: false\ntasks:\n  app.late:\n    acks_late: true\n"
        )
        #expect(machine.settings.window == 8)
        #expect(machine.settings.childQueueAllowance == 0)
        #expect(Self.granted(machine.credit()) == 8)
        _ = machine.received(Self.tasks("app.early", 1...4) + Self.tasks("app.late", 1...4), now: Self.now)
        #expect(Self.granted(machine.credit()) == 0)

        // Handed to the pool but not started: still reserved, still counted.
        _ = machine.dispatch(idleSlots: 2, isStale: { _ in false }, now: Self.now)
        #expect(machine.heldInWindow == 8)
        #expect(Self.granted(machine.credit()) == 0)
        // Started and acked (acks_late: false): the broker counts it no more, nor does the window.
        _ = machine.pool(.started(jobID: "app.early-1", slot: 0, pid: 10), now: Self.now)
        #expect(machine.heldInWindow == 7)
        #expect(Self.granted(machine.credit()) == 1)
        _ = machine.pool(.finished(jobID: "app.early-1", outcome: .success(.null), runtime: 0.2), now: Self.now)
        #expect(machine.heldInWindow == 7)

        // A late-acked task holds its place until its end.
        _ = machine.pool(.started(jobID: "app.early-2", slot: 1, pid: 11), now: Self.now)
        _ = machine.pool(.finished(jobID: "app.early-2", outcome: .success(.null), runtime: 0.2), now: Self.now)
        _ = machine.dispatch(idleSlots: 2, isStale: { _ in false }, now: Self.now)
        _ = machine.pool(.started(jobID: "app.early-3", slot: 0, pid: 10), now: Self.now)
        _ = machine.pool(.started(jobID: "app.early-4", slot: 1, pid: 11), now: Self.now)
        _ = machine.pool(.finished(jobID: "app.early-3", outcome: .success(.null), runtime: 0.2), now: Self.now)
        _ = machine.pool(.finished(jobID: "app.early-4", outcome: .success(.null), runtime: 0.2), now: Self.now)
        _ = machine.dispatch(idleSlots: 2, isStale: { _ in false }, now: Self.now)
        _ = machine.pool(.started(jobID: "app.late-1", slot: 0, pid: 10), now: Self.now)
        _ = machine.pool(.started(jobID: "app.late-2", slot: 1, pid: 11), now: Self.now)
        #expect(machine.heldInWindow == 4)
        _ = machine.pool(.finished(jobID: "app.late-1", outcome: .success(.null), runtime: 0.2), now: Self.now)
        #expect(machine.heldInWindow == 3)

        // A job the pool gave back, or lost, leaves the accounting as it was.
        _ = machine.dispatch(idleSlots: 1, isStale: { _ in false }, now: Self.now)
        machine.submitRefused("app.late-3")
        #expect(machine.heldInWindow == 3)
        _ = machine.pool(.lost(jobID: "app.late-2", slot: 1, pid: 11, reason: .terminated(signal: 9)), now: Self.now)
        #expect(machine.heldInWindow == 2)
    }

    @Test func anEarlyAckedTaskWhoseChildDiedLeavesNoPlaceBehind() throws {
        var machine = try DeliveryMachineChildPrefetchTests.machine(
            "worker:\n  concurrency: 2\n  child_prefetch: 1\n  acks_late: false\n"
        )
        _ = machine.received(Self.tasks("app.early", 1...3), now: Self.now)
        _ = machine.dispatch(idleSlots: 2, isStale: { _ in false }, now: Self.now)
        _ = machine.pool(.started(jobID: "app.early-1", slot: 0, pid: 10), now: Self.now)
        #expect(machine.heldInWindow == 2)
        _ = machine.pool(.lost(jobID: "app.early-1", slot: 0, pid: 10, reason: .terminated(signal: 9)), now: Self.now)
        #expect(machine.heldInWindow == 2)
        #expect(machine.runningAckedEarly == 0)
        _ = machine.pool(.started(jobID: "app.early-2", slot: 1, pid: 11), now: Self.now)
        _ = machine.pool(.finished(jobID: "app.early-2", outcome: .success(.null), runtime: 0.1), now: Self.now)
        #expect(machine.heldInWindow == 1)
        #expect(Self.granted(machine.credit()) == 7)
    }

    static func allowances(_ actions: [DeliveryMachine.Action]) -> [Int] {
        actions.compactMap { action in
            if case .setWindowAllowance(let count) = action { return count }
            return nil
        }
    }

    /// RabbitMQ's `basic.qos` follows the larger window through this action (Redis follows the credit alone): told
    /// once when the streak grows the window, once when it ends, and after a reload.
    @Test func theTransportIsToldWhenTheWindowGrowsAndWhenItShrinksBack() throws {
        var machine = try DeliveryMachineChildPrefetchTests.machine("worker:\n  concurrency: 2\n  child_prefetch: 4\n")
        DeliveryMachineChildPrefetchTests.runOnce(&machine, "app.quick", id: "w1", runtime: 0.001)
        DeliveryMachineChildPrefetchTests.runOnce(&machine, "app.slow", id: "w2", runtime: 0.5)
        #expect(Self.allowances(machine.credit()) == [])
        _ = machine.received(Self.tasks("app.quick", 1...7), now: Self.now)
        #expect(Self.allowances(machine.credit()) == [])
        _ = machine.received(Self.tasks("app.quick", 8...8), now: Self.now)
        let grown = machine.credit()
        #expect(Self.allowances(grown) == [8])
        #expect(Self.granted(grown) == 8)
        _ = machine.received(Self.tasks("app.quick", 9...12), now: Self.now)
        #expect(Self.allowances(machine.credit()) == [])
        _ = machine.received(Self.tasks("app.slow", 1...1), now: Self.now)
        #expect(Self.allowances(machine.credit()) == [0])
        #expect(Self.allowances(machine.credit()) == [])
        _ = machine.received(Self.tasks("app.quick", 13...20), now: Self.now)
        #expect(Self.allowances(machine.credit()) == [8])
        #expect(Self.allowances(machine.reconfigure(machine.settings)) == [0])
    }

    /// Credit granted under the larger window still arrives after it shrank: what it brings beyond the window that
    /// is not short goes back too, as it arrives, until all of it has; short tasks stay, and a task held for its ETA
    /// holds no place and stays. Once the credit has all arrived nothing more is given back.
    @Test func creditOnItsWayWhenTheWindowShrankIsGivenBackAsItArrives() throws {
        var machine = try DeliveryMachineChildPrefetchTests.machine("worker:\n  concurrency: 2\n  child_prefetch: 4\n")
        DeliveryMachineChildPrefetchTests.runOnce(&machine, "app.quick", id: "w1", runtime: 0.001)
        DeliveryMachineChildPrefetchTests.runOnce(&machine, "app.slow", id: "w2", runtime: 0.5)
        #expect(Self.granted(machine.credit()) == 8)
        _ = machine.received(Self.tasks("app.quick", 1...8), now: Self.now)
        #expect(machine.currentWindow == 16)
        #expect(Self.granted(machine.credit()) == 8)

        // The streak ends with 7 of that credit still on its way: 9 held in a window of 8, one given back now.
        let ended = machine.received(Self.tasks("app.slow", 1...1), now: Self.now)
        #expect(machine.currentWindow == 8)
        #expect(Self.restored(ended) == ["app.slow-1"])
        #expect(machine.heldInWindow == 8)
        #expect(machine.outstandingCredit == 7)

        // The rest arrives: the slow ones beyond the window go back; the quick ones (short: they run here in
        // moments) and the ETA task (it holds no place) stay.
        var eta = TaskMessage(id: "app.slow-eta", name: "app.slow")
        eta.eta = Self.now.advanced(by: 60)
        let rest =
            Self.tasks("app.slow", 2...4) + [.task(eta, deliveryTag: "eta-tag", queue: "q")]
            + Self.tasks("app.quick", 9...11)
        let arrived = machine.received(rest, now: Self.now)
        #expect(Self.restored(arrived) == (2...4).reversed().map { "app.slow-\($0)" })
        #expect(machine.heldInWindow == 11)
        #expect(machine.heldForETA == 1)
        #expect(machine.outstandingCredit == 0)
        #expect(Self.granted(machine.credit()) == 0)

        // All of it has arrived: a delivery beyond the window now (an ETA task come due, say) is kept.
        let more = machine.received(Self.tasks("app.slow", 5...5), now: Self.now)
        #expect(Self.restored(more).isEmpty)
        #expect(machine.heldInWindow == 12)
    }

    /// A reload that makes the window smaller gives back what it held beyond the new one.
    @Test func aReloadToASmallerWindowGivesBackTheExcess() throws {
        var machine = try DeliveryMachineChildPrefetchTests.machine("worker:\n  concurrency: 2\n  child_prefetch: 1\n")
        #expect(Self.granted(machine.credit()) == 8)
        _ = machine.received(Self.tasks("app.quick", 1...8), now: Self.now)
        var smaller = machine.settings
        smaller.window = 2
        let actions = machine.reconfigure(smaller)
        #expect(Self.restored(actions) == (3...8).reversed().map { "app.quick-\($0)" })
        #expect(machine.heldInWindow == 2)
        #expect(Self.granted(actions) == 0)
    }

    @Test func aChordUnlockKeepsTheStreakAndAReloadEndsIt() throws {
        var machine = try DeliveryMachineChildPrefetchTests.machine("worker:\n  concurrency: 2\n  child_prefetch: 4\n")
        DeliveryMachineChildPrefetchTests.runOnce(&machine, "app.quick", id: "w1", runtime: 0.001)
        _ = machine.received(Self.tasks("app.quick", 1...4), now: Self.now)
        _ = machine.received(Self.tasks("celery.chord_unlock", 1...1), now: Self.now)
        _ = machine.received(Self.tasks("app.quick", 5...8), now: Self.now)
        #expect(machine.currentWindow == 16)
        _ = machine.reconfigure(machine.settings)
        #expect(machine.currentWindow == 8)
    }

    @Test func whileShortTasksComeInTheWindowGrowsByTheChildrensQueues() throws {
        // concurrency 2, child_prefetch 4 (the default): a window of 8, and 2 × 4 more while short tasks come in.
        var machine = try DeliveryMachineChildPrefetchTests.machine("worker:\n  concurrency: 2\n  child_prefetch: 4\n")
        #expect(machine.settings.window == 8)
        #expect(machine.settings.childQueueAllowance == 8)
        DeliveryMachineChildPrefetchTests.runOnce(&machine, "app.quick", id: "w1", runtime: 0.001)
        DeliveryMachineChildPrefetchTests.runOnce(&machine, "app.slow", id: "w2", runtime: 0.5)
        #expect(machine.currentWindow == 8)
        #expect(Self.granted(machine.credit()) == 8)

        // A whole window of short tasks in a row: the window grows.
        _ = machine.received(Self.tasks("app.quick", 1...8), now: Self.now)
        #expect(machine.currentWindow == 16)
        #expect(Self.granted(machine.credit()) == 8)
        _ = machine.received(Self.tasks("app.quick", 9...16), now: Self.now)
        #expect(machine.heldInWindow == 16)
        #expect(Self.granted(machine.credit()) == 0)

        // A task not known to be short ends the streak: back to Celery's window, and what is held beyond it that is
        // not short goes back to the broker at once, next in line (the two that ended the streak), so they wait for
        // no worker's pool; the short ones stay, and credit comes again once fewer than 8 are held.
        let ended = machine.received(Self.tasks("app.slow", 1...1) + Self.tasks("app.new", 1...1), now: Self.now)
        #expect(machine.currentWindow == 8)
        #expect(Self.restored(ended) == ["app.new-1", "app.slow-1"])
        #expect(machine.heldInWindow == 16)
        #expect(Self.granted(machine.credit()) == 0)
        let jobs = DeliveryMachineChildPrefetchTests.jobs(
            machine.dispatch(idleSlots: 2, queueable: 9, isStale: { _ in false }, now: Self.now)
        )
        #expect(jobs.map(\.id) == (1...11).map { "app.quick-\($0)" })
        for index in 1...11 {
            let id = "app.quick-\(index)"
            _ = machine.pool(.started(jobID: id, slot: 0, pid: 10), now: Self.now)
            _ = machine.pool(.finished(jobID: id, outcome: .success(.null), runtime: 0.001), now: Self.now)
            #expect(Self.granted(machine.credit()) == (index < 9 ? 0 : 1), "after \(index) finished")
        }
        #expect(machine.heldInWindow == 5)

        // Short ones again, a whole window of them: the larger window is back.
        _ = machine.received(Self.tasks("app.quick", 17...23), now: Self.now)
        #expect(machine.currentWindow == 8)
        _ = machine.received(Self.tasks("app.quick", 24...24), now: Self.now)
        #expect(machine.currentWindow == 16)

        // Without child prefetch, with no window at all, or with the solo pool, there is no such allowance.
        let fair = try DeliveryMachineChildPrefetchTests.machine("worker:\n  concurrency: 2\n  child_prefetch: 1\n")
        #expect(fair.settings.childQueueAllowance == 0)
        let unbounded = try DeliveryMachineChildPrefetchTests.machine(
            "worker:\n  concurrency: 2\n  prefetch_multiplier: 0\n"
        )
        #expect(unbounded.settings.childQueueAllowance == 0)
        let solo = try DeliveryMachineChildPrefetchTests.machine("worker:\n  pool: solo\n")
        #expect(solo.settings.childQueueAllowance == 0)
    }

    /// When new deliveries may wait for the loop's next turn (the broker's mailbox is quiet): only while short tasks
    /// run and at least Celery's window of them is ready; not while nothing runs, not with less ready, not once a task
    /// that is not short ends the streak, never in a shutdown.
    @Test func deliveriesWaitForTheNextTurnOnlyWhileShortTasksRunWithAWindowReady() throws {
        var machine = try DeliveryMachineChildPrefetchTests.machine("worker:\n  concurrency: 2\n  child_prefetch: 4\n")
        DeliveryMachineChildPrefetchTests.runOnce(&machine, "app.quick", id: "w1", runtime: 0.001)
        DeliveryMachineChildPrefetchTests.runOnce(&machine, "app.slow", id: "w2", runtime: 0.5)
        _ = machine.received(Self.tasks("app.quick", 1...16), now: Self.now)
        #expect(machine.currentWindow == 16)
        // Sixteen ready, nothing running: no result is coming to bring a turn.
        #expect(machine.ready.count == 16)
        #expect(!machine.nextTurnIsNear)
        let jobs = DeliveryMachineChildPrefetchTests.jobs(
            machine.dispatch(idleSlots: 2, queueable: 0, isStale: { _ in false }, now: Self.now)
        )
        #expect(jobs.count == 2)
        #expect(machine.ready.count == 14)
        #expect(machine.nextTurnIsNear)
        // Fewer than a window (8) ready: the pool may run dry before a turn, so deliveries wake the loop.
        _ = machine.dispatch(idleSlots: 0, queueable: 7, isStale: { _ in false }, now: Self.now)
        #expect(machine.ready.count == 7)
        #expect(!machine.nextTurnIsNear)
        _ = machine.received(Self.tasks("app.quick", 17...17), now: Self.now)
        #expect(machine.nextTurnIsNear)
        // A task not known to be short ends the streak.
        _ = machine.received(Self.tasks("app.slow", 1...1), now: Self.now)
        #expect(machine.currentWindow == 8)
        #expect(!machine.nextTurnIsNear)
        _ = machine.received(Self.tasks("app.quick", 18...25), now: Self.now)
        #expect(machine.currentWindow == 16)
        #expect(machine.nextTurnIsNear)
        _ = machine.shutdown()
        #expect(!machine.nextTurnIsNear)
    }

    /// The windows a streak of `count` tasks of `runtime` seconds goes through, one per task received, and the
    /// allowances told to the transport meanwhile.
    static func streak(runtime: Double, count: Int, yaml: String = "worker:\n  concurrency: 2\n  child_prefetch: 4\n")
        throws -> (
            windows: [Int], allowances: [Int], machine: DeliveryMachine
        )
    {
        var machine = try DeliveryMachineChildPrefetchTests.machine(yaml)
        DeliveryMachineChildPrefetchTests.runOnce(&machine, "app.task", id: "w1", runtime: runtime)
        var windows: [Int] = []
        var allowances: [Int] = []
        for index in 1...count {
            _ = machine.received(Self.tasks("app.task", index...index), now: Self.now)
            windows.append(machine.currentWindow)
            allowances += Self.allowances(machine.credit())
        }
        return (windows, allowances, machine)
    }

    /// Tasks of microseconds: each time a whole window of them at its current size has come in, the allowance
    /// doubles (8 → 16 → 32 → 64 → 128), up to 32 × Celery's window (256 in all), where it stays; the first task
    /// not known to be short brings it back to Celery's 8 at once.
    @Test func aLongStreakOfTinyTasksGrowsTheWindowToThirtyTwoTimesCelerys() throws {
        var (windows, allowances, machine) = try Self.streak(runtime: 0.000_02, count: 400)
        // windows[i] is the window once the streak is i + 1 long; each step needs a whole window at the size
        // before it: 8, then 8 + 8, 8 + 16, 8 + 32, 8 + 64, 8 + 128 more tasks.
        #expect(windows[6] == 8)
        #expect(windows[7] == 16)
        #expect(windows[22] == 16)
        #expect(windows[23] == 24)
        #expect(windows[46] == 24)
        #expect(windows[47] == 40)
        #expect(windows[86] == 40)
        #expect(windows[87] == 72)
        #expect(windows[158] == 72)
        #expect(windows[159] == 136)
        #expect(windows[294] == 136)
        #expect(windows[295] == 256)
        #expect(windows[295...].allSatisfy { $0 == 256 })
        #expect(allowances == [8, 16, 32, 64, 128, 248])
        _ = machine.received(Self.tasks("app.slow", 1...1), now: Self.now)
        #expect(machine.currentWindow == 8)
        #expect(Self.allowances(machine.credit()) == [0])
        // Celery's window sets the scale: with prefetch_multiplier 1 (a window of 2) it stops at 64.
        let small = try Self.streak(
            runtime: 0.000_02,
            count: 200,
            yaml: "worker:\n  concurrency: 2\n  prefetch_multiplier: 1\n  child_prefetch: 4\n"
        )
        #expect(small.windows.max() == 64)
        #expect(small.allowances == [8, 16, 32, 62])
    }

    /// Starts the next ready task in the only slot and finishes it in `runtime` seconds.
    static func runNext(_ machine: inout DeliveryMachine, runtime: Double) {
        let actions = machine.dispatch(idleSlots: 1, isStale: { _ in false }, now: now)
        let submitted = actions.compactMap { action -> String? in
            guard case .submit(let job) = action else { return nil }
            return job.id
        }
        guard let id = submitted.first else {
            Issue.record("nothing was dispatched")
            return
        }
        DeliveryMachineChildPrefetchTests.finish(&machine, id, runtime: runtime)
    }

    /// The window follows a task's typical runtime: one run of a task of microseconds that took 40 ms (its child
    /// descheduled) neither ends the streak nor shrinks the window; two in a row are a task that turned slow, and
    /// the next one to come in ends the streak.
    @Test func aLoneOutlierKeepsTheWindowAndTwoInARowEndTheStreak() throws {
        var (windows, _, machine) = try Self.streak(runtime: 0.000_02, count: 400)
        #expect(windows.last == 256)
        Self.runNext(&machine, runtime: 0.04)
        for index in 401...500 {
            _ = machine.received(Self.tasks("app.task", index...index), now: Self.now)
            #expect(machine.currentWindow == 256, "after \(index)")
        }
        Self.runNext(&machine, runtime: 0.000_02)
        Self.runNext(&machine, runtime: 0.04)
        _ = machine.received(Self.tasks("app.task", 501...501), now: Self.now)
        #expect(machine.currentWindow == 256)
        Self.runNext(&machine, runtime: 0.04)
        _ = machine.received(Self.tasks("app.task", 502...502), now: Self.now)
        #expect(machine.currentWindow == 8)
    }

    /// Tasks of milliseconds get the steps that hold at most about 20 ms of their work per pool slot (2 × 0.02 /
    /// 0.001 = 40 for 1 ms tasks: the step to 32, not the one to 56); tasks of several milliseconds only the first
    /// step, the children's queues as far as `child_prefetch_max_runtime` (10 ms) of their work fits: two tasks of
    /// 6 ms per child (one running, one waiting), not `child_prefetch`'s four.
    @Test func theLargerWindowHoldsAboutTwentyMillisecondsOfWorkPerSlot() throws {
        let oneMillisecond = try Self.streak(runtime: 0.001, count: 300)
        #expect(oneMillisecond.windows.max() == 40)
        #expect(oneMillisecond.allowances == [8, 16, 32])
        #expect(try Self.streak(runtime: 0.006, count: 300).windows.max() == 8 + 2 * 2)
        #expect(try Self.streak(runtime: 0.004, count: 300).windows.max() == 8 + 2 * 3)
        #expect(try Self.streak(runtime: 0.0099, count: 300).windows.max() == 8 + 2 * 2)
    }

    /// With the default `child_prefetch` (16), tasks of microseconds start at the children's whole queues (2 × 16)
    /// and take the window to 32 × Celery's in three more steps; tasks of 1 ms start at what 10 ms of them fill
    /// (2 × 10) and double once, to the 20 ms of work per slot the larger window may hold.
    @Test func defaultChildPrefetchStartsTinyTasksAtTheChildrensWholeQueues() throws {
        let yaml = "worker:\n  concurrency: 2\n"
        let machine = try DeliveryMachineChildPrefetchTests.machine(yaml)
        #expect(machine.settings.childQueueAllowance == 32)
        let tiny = try Self.streak(runtime: 0.000_02, count: 400, yaml: yaml)
        #expect(tiny.allowances == [32, 64, 128, 248])
        #expect(tiny.windows[6] == 8)
        #expect(tiny.windows[7] == 40)
        #expect(tiny.windows[47] == 72)
        #expect(tiny.windows[119] == 136)
        #expect(tiny.windows[255] == 256)
        #expect(tiny.windows.max() == 256)
        let oneMillisecond = try Self.streak(runtime: 0.001, count: 300, yaml: yaml)
        #expect(oneMillisecond.allowances == [20, 40])
        #expect(oneMillisecond.windows.max() == 48)
    }

    /// The streak's runtime follows its latest tasks: a slower (still short) one among tiny ones shrinks the window
    /// to what fits, and tiny ones after it grow it back. Runtimes that only drift past a step keep the window
    /// until the work held is twice what fits.
    @Test func theWindowFollowsTheStreaksRuntimeWithoutFlapping() throws {
        var machine = try DeliveryMachineChildPrefetchTests.machine("worker:\n  concurrency: 2\n  child_prefetch: 4\n")
        let runtimes = [
            "app.tiny": 0.000_02, "app.one": 0.001, "app.slower": 0.0015, "app.three": 0.003, "app.six": 0.006,
        ]
        for (index, (name, runtime)) in runtimes.sorted(by: { $0.key < $1.key }).enumerated() {
            DeliveryMachineChildPrefetchTests.runOnce(&machine, name, id: "w\(index)", runtime: runtime)
        }
        // What comes in, and the window after it.
        let steps: [(name: String, range: ClosedRange<Int>, window: Int)] = [
            ("app.tiny", 1...100, 72),
            // 0.75 × 0.02 ms + 0.25 × 6 ms: about 1.5 ms, for which 16 more fits, and 64 is more than twice that.
            ("app.six", 1...1, 24),
            // The streak goes on (201 long): back to where it would be, 128 more.
            ("app.tiny", 101...200, 136),
            // A task not known to be short ends the streak; a new one of 1 ms tasks: 32 more.
            ("app.new", 1...1, 8),
            ("app.one", 1...100, 40),
            // 1.5 ms ones: only 16 would fit, but 32 is less than twice that: kept.
            ("app.slower", 1...100, 40),
            // 3 ms ones: 13 would fit, 32 is more than twice that: back to the first step.
            ("app.three", 1...100, 16),
        ]
        for step in steps {
            _ = machine.received(Self.tasks(step.name, step.range), now: Self.now)
            #expect(machine.currentWindow == step.window, "after \(step.name) \(step.range)")
        }
    }

    /// The threads pool's slots queue short tasks as prefork children do (`worker.child_prefetch`); solo has one
    /// slot that runs in the loop, and neither queue nor larger window.
    @Test func theThreadsPoolGetsTheShortTaskWindowAndSlotQueuesAndSoloNeither() throws {
        var machine = try DeliveryMachineChildPrefetchTests.machine(
            "worker:\n  concurrency: 2\n  pool: threads\n  child_prefetch: 4\n"
        )
        #expect(machine.settings.childQueueAllowance == 8)
        #expect(machine.settings.queueRuntimeLimit == 0.01)
        DeliveryMachineChildPrefetchTests.runOnce(&machine, "app.quick", id: "w1", runtime: 0.001)
        _ = machine.received(Self.tasks("app.quick", 1...8), now: Self.now)
        #expect(machine.currentWindow == 16)
        let jobs = DeliveryMachineChildPrefetchTests.jobs(
            machine.dispatch(idleSlots: 2, queueable: 4, isStale: { _ in false }, now: Self.now)
        )
        #expect(jobs.map(\.id) == (1...6).map { "app.quick-\($0)" })
        #expect(jobs.map(\.mayQueue) == [true, true, true, true, true, true])

        let solo = try DeliveryMachineChildPrefetchTests.machine("worker:\n  pool: solo\n")
        #expect(solo.settings.childQueueAllowance == 0)
        #expect(solo.settings.queueRuntimeLimit == nil)
    }
}
