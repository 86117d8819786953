import DequeModule
import Logging
import SwiftqCore
import SwiftqPlatform
import SwiftqTasks

#if canImport(Glibc)
import Glibc
#endif

/// The pools that run tasks inside the consumer process, as Celery names them: `threads` (a fixed set of
/// threads, one per slot, `worker.concurrency` of them) and `solo` (inline in the consumer's loop, one slot).
///
/// No frames and no children: a job is handed to its slot's thread through a ``WorkQueue`` and its outcome comes
/// back through one ``Mailbox`` the loop watches (one wake-up for every burst of results), or, with `solo`, runs in
/// a loop turn of its own. Exec tasks still run as a program of their own (``ExecTask``), from the slot's thread.
///
/// **Slot queues** (`worker.child_prefetch`, as for prefork children): a busy slot may hold more jobs than the one
/// its thread runs, up to ``childPrefetch``, in its queue, so the thread goes from one short task to the next without
/// sleeping and waking (one futex call and one loop wake-up per burst instead of per task). The same rules as
/// ``PreforkPool``'s: only jobs marked ``PoolJob/mayQueue`` wait, only behind such jobs, only while what the slot
/// holds is expected to take less than ``queueRuntimeLimit``, never behind a job running longer than that. A
/// waiting job has not started: its ``PoolEvent/started(jobID:slot:pid:)`` comes with the result of the job before
/// it (the thread runs its jobs in order), and it can be taken back while the thread has not taken it
/// (``withdraw(jobID:)``: a revoke, a shrink, a warm shutdown; then ``PoolEvent/returned(jobID:)`` follows, in a loop
/// turn of its own).
///
/// The trade-off is isolation. A task that traps (a failed precondition, an out-of-bounds index) takes the
/// consumer, and every task it holds, with it; a Swift error is the task's failure as in a child. A thread cannot
/// be killed: a hard time limit (only from a message's `timelimit` header or the `time_limit` command: the
/// configuration check refuses configured ones) fails the task at once with `TimeLimitExceeded` and leaves its
/// slot busy until the handler returns (its late result is dropped); the limit also ends the task's sleeps and
/// cancels an async handler, as a soft limit does. `revoke --terminate` cannot stop a running task either: it
/// runs to its end.
///
/// *Owner*: the consumer loop's thread; every stored property below belongs to it. The slot threads only read
/// their queue and post to ``completions``.
package final class ThreadPool: WorkPool {
    package enum Mode: String, Sendable {
        case threads, solo
    }

    package var onEvent: ((PoolEvent) -> Void)?
    package private(set) var targetSize: Int
    package let mode: Mode

    private let loop: EventLoop
    private let registry: TaskRegistry
    /// The consumer's lifeline (read end): a task's sleep ends when it reaches end of file. Nil in tests.
    private let lifeline: CInt?
    private var logger = DaemonLog.logger(role: "consumer")
    private var slots: [Int: Slot] = [:]
    /// Slots shrunk away while busy: they go when their job returns.
    /// A list, not a table by index: the index may be in use again (a grow after the shrink) before they go.
    private var departing: [Slot] = []
    private var stopping = false
    private var completions: Mailbox<Completion>?
    /// The pid that runs every job: this process.
    private let pid = getpid()
    /// How many jobs a slot holds at once, the running one included (`worker.child_prefetch`; 1: only idle slots
    /// get work). Threads mode only.
    package private(set) var childPrefetch = 1
    /// A job running longer than this has no job queued behind it (`worker.child_prefetch_max_runtime`).
    package private(set) var queueRuntimeLimit: Duration = .milliseconds(10)
    /// Jobs taken back whose ``PoolEvent/returned(jobID:)`` has not gone out yet: the pool is not stopped before
    /// it has (a warm shutdown gives them back to the broker).
    private var returnsPending = 0

    /// Also the loop's end-of-turn work: the jobs a turn hands the slot go to its thread together when the turn
    /// ends, one wake-up for all of them (a thread woken for each would finish a short task before the next came).
    private final class Slot: EndOfTurnWork, JobHoldingSlot {
        let index: Int
        /// The slot's thread's queue (threads mode): the jobs of ``jobs`` its thread has not taken yet.
        let queue = WorkQueue<PoolJob>()
        /// Jobs handed to the slot in this loop turn, for ``queue`` when the turn ends.
        var pending: [PoolJob] = []
        /// The jobs the slot holds: the first runs (or is about to), the others wait in ``queue``.
        var jobs = Deque<PoolJob>()
        /// The running job (the first one).
        var job: PoolJob? { jobs.first }
        /// When the running job started (its ``PoolEvent/started(jobID:slot:pid:)`` went out).
        var jobStartedAt: ContinuousClock.Instant?
        /// The job's hard limit passed: it was reported lost, and its result will be dropped.
        var abandoned = false
        var hardLimitTimer: EventLoop.TimerID?
        var completed = 0
        var retiring = false
        let startedAt = ContinuousClock.now

        init(index: Int) { self.index = index }

        /// Hands `job` to the thread when the loop's turn ends.
        func post(_ job: PoolJob, loop: EventLoop) {
            if pending.isEmpty { loop.atEndOfTurn(self) }
            pending.append(job)
        }

        func endOfTurn() {
            queue.post(pending)
            pending.removeAll(keepingCapacity: true)
        }

        /// Takes `jobID` back if the thread has not taken it.
        func takeBack(_ jobID: String) -> Bool {
            if let index = pending.firstIndex(where: { $0.id == jobID }) {
                pending.remove(at: index)
                return true
            }
            return queue.remove { $0.id == jobID }
        }
    }

    private struct Completion: Sendable {
        var slot: Int
        var jobID: String
        var outcome: PoolOutcome
        var runtime: Double
        var effects: [TaskEffect]
    }

    package init(mode: Mode, size: Int, loop: EventLoop, registry: TaskRegistry, lifeline: CInt? = nil) {
        self.mode = mode
        self.targetSize = mode == .solo ? 1 : max(0, size)
        self.loop = loop
        self.registry = registry
        self.lifeline = lifeline
    }

    package var idleSlots: Int { stopping ? 0 : slots.values.count { $0.jobs.isEmpty && !$0.retiring } }

    /// When ``queueRoom`` was last counted: the instant submits are judged at (``WorkPool/queueRoom``).
    private var roomCountedAt: ContinuousClock.Instant?

    /// Room for jobs that may wait, in the queues of busy slots that take them (``takesQueuedJobs(_:now:)``).
    /// Counting it sets ``roomCountedAt``.
    package var queueRoom: PoolQueueRoom {
        guard mode == .threads, childPrefetch > 1, !stopping else { return .none }
        let now = ContinuousClock.now
        roomCountedAt = now
        return slots.values.queueRoom(depth: childPrefetch, budget: queueRuntimeLimit.seconds) {
            takesQueuedJobs($0, now: now)
        }
    }

    /// Whether a busy slot takes one more waiting job: room left, every job it holds may wait, what it holds
    /// expected to take less than ``queueRuntimeLimit`` in all, and the running one not overdue (nor abandoned at its
    /// hard limit).
    private func takesQueuedJobs(_ slot: Slot, now: ContinuousClock.Instant) -> Bool {
        guard !slot.jobs.isEmpty, slot.jobs.count < childPrefetch, !slot.retiring, !slot.abandoned,
            slot.jobs.allSatisfy(\.mayQueue)
        else { return false }
        if let started = slot.jobStartedAt, started.duration(to: now) > queueRuntimeLimit { return false }
        if slot.heldWork >= queueRuntimeLimit.seconds { return false }
        return true
    }

    package func setChildPrefetch(_ depth: Int, maxRuntime: Duration) {
        childPrefetch = mode == .threads ? max(1, depth) : 1
        queueRuntimeLimit = maxRuntime
    }

    package func start() throws {
        if mode == .threads {
            let mailbox = try Mailbox<Completion>()
            completions = mailbox
            loop.watch(mailbox.descriptor) { [unowned self] _ in
                for completion in mailbox.drain() { complete(completion) }
            }
        }
        for index in 0..<targetSize { try addSlot(index) }
    }

    private func addSlot(_ index: Int) throws {
        let slot = Slot(index: index)
        if mode == .threads, let completions {
            let queue = slot.queue
            let registry = registry
            let lifeline = lifeline
            try PlatformThread.start(name: "swiftq-pool-\(index)") {
                // One job at a time: the ones behind it stay in the queue, where the loop can still take them back.
                while true {
                    let (job, stopped) = queue.takeFirst(timeout: .seconds(3600))
                    guard let job else {
                        if stopped { return }
                        continue
                    }
                    let (outcome, runtime, effects) = Self.run(job, registry: registry, lifeline: lifeline)
                    completions.post(
                        Completion(slot: index, jobID: job.id, outcome: outcome, runtime: runtime, effects: effects)
                    )
                }
            }
        }
        slots[index] = slot
        onEvent?(.slotReady(slot: index, pid: pid))
    }

    package func submit(_ job: PoolJob) -> PoolSubmission? {
        guard !stopping else { return nil }
        guard
            let slot = slots.values.lazy.filter({ $0.jobs.isEmpty && !$0.retiring }).min(by: { $0.index < $1.index })
        else {
            // Behind a busy slot's running job (threads mode only: solo's childPrefetch is 1), judged as counted.
            let now = roomCountedAt ?? ContinuousClock.now
            guard job.mayQueue, childPrefetch > 1,
                let slot = slots.values.queueTarget(takes: { takesQueuedJobs($0, now: now) })
            else { return nil }
            slot.jobs.append(job)
            slot.post(job, loop: loop)
            return PoolSubmission(slot: slot.index, pid: pid)
        }
        slot.jobs.append(job)
        slot.abandoned = false
        switch mode {
        case .threads:
            slot.post(job, loop: loop)
            startRunning(slot)
            return PoolSubmission(slot: slot.index, pid: pid)
        case .solo:
            // Its own loop turn: the consumer finishes what it is doing (the submit is one of its actions) first.
            loop.schedule(after: .zero) { [unowned self, unowned slot] in
                guard slot.job?.id == job.id else { return }
                let (outcome, runtime, effects) = Self.run(job, registry: registry, lifeline: lifeline)
                complete(
                    Completion(slot: slot.index, jobID: job.id, outcome: outcome, runtime: runtime, effects: effects)
                )
            }
            slot.jobStartedAt = .now
            onEvent?(.started(jobID: job.id, slot: slot.index, pid: pid))
            return PoolSubmission(slot: slot.index, pid: pid)
        }
    }

    /// The slot's first job runs from now (its thread took it, or is about to): its hard limit starts and
    /// ``PoolEvent/started(jobID:slot:pid:)`` goes out.
    private func startRunning(_ slot: Slot) {
        guard let job = slot.jobs.first else { return }
        slot.jobStartedAt = .now
        if job.exec == nil, let limit = job.hardTimeLimit, limit > 0 {
            slot.hardLimitTimer = loop.schedule(after: .milliseconds(Int64(limit * 1000))) {
                [unowned self, unowned slot] in
                slot.hardLimitTimer = nil
                guard slot.job?.id == job.id else { return }
                abandon(slot, job: job, limit: limit)
            }
        }
        onEvent?(.started(jobID: job.id, slot: slot.index, pid: pid))
    }

    /// Takes back the jobs waiting behind the slot's running one that its thread has not taken yet; each is
    /// given back (``PoolEvent/returned(jobID:)``) in a loop turn of its own, not inside the caller's.
    private func withdrawQueued(_ slot: Slot, only jobID: String? = nil) {
        var taken: [String] = []
        for job in slot.jobs.dropFirst() where jobID == nil || job.id == jobID {
            if slot.takeBack(job.id) { taken.append(job.id) }
        }
        guard !taken.isEmpty else { return }
        slot.jobs.removeAll { taken.contains($0.id) }
        returnsPending += taken.count
        loop.schedule(after: .zero) { [weak self] in
            guard let self else { return }
            returnsPending -= taken.count
            for id in taken { onEvent?(.returned(jobID: id)) }
        }
    }

    /// The slot (active or departing) holding `jobID`, and its place there (0: running).
    private func locate(_ jobID: String) -> (slot: Slot, index: Int)? {
        slots.values.locate(jobID) ?? departing.locate(jobID)
    }

    package func withdraw(jobID: String) {
        guard let (slot, index) = locate(jobID), index > 0 else { return }
        withdrawQueued(slot, only: jobID)
    }

    /// A hard limit passed on a thread: the task fails now; the thread goes on until the handler returns.
    private func abandon(_ slot: Slot, job: PoolJob, limit: Double) {
        slot.abandoned = true
        logger.error(
            """
            hard time limit (\(limit)s) exceeded on a pool thread, which cannot be stopped: the task fails now and \
            its slot stays busy until the handler returns
            """,
            metadata: [DaemonLog.Key.taskID: "\(job.id)", DaemonLog.Key.taskName: "\(job.name)"]
        )
        onEvent?(.lost(jobID: job.id, slot: slot.index, pid: pid, reason: .timeLimit))
    }

    private func complete(_ completion: Completion) {
        // The index names the thread; the job tells a departing slot from a new one with the same index.
        let active = slots[completion.slot]
        let holder =
            active?.job?.id == completion.jobID
            ? active : departing.first { $0.index == completion.slot && $0.job?.id == completion.jobID }
        guard let slot = holder, let job = slot.job else { return }
        if let timer = slot.hardLimitTimer { loop.cancel(timer) }
        slot.hardLimitTimer = nil
        slot.jobs.removeFirst()
        slot.jobStartedAt = nil
        slot.completed += 1
        let abandoned = slot.abandoned
        slot.abandoned = false
        if slot.retiring && slot.jobs.isEmpty {
            slot.queue.stop()
            departing.removeAll { $0 === slot }
        }
        defer {
            // The thread runs its jobs in order: the next one started when this one returned.
            if !slot.jobs.isEmpty { startRunning(slot) }
        }
        if !abandoned, job.exec == nil, let limit = job.hardTimeLimit, limit > 0, completion.runtime >= limit {
            // Ended at (or past) its hard limit, which also ended its sleeps: the limit's failure, whichever of the
            // handler and the timer came first.
            onEvent?(.lost(jobID: job.id, slot: slot.index, pid: pid, reason: .timeLimit))
        } else if abandoned {
            logger.warning(
                "the handler of a task failed at its hard time limit returned after \(completion.runtime)s; result dropped",
                metadata: [DaemonLog.Key.taskID: "\(job.id)", DaemonLog.Key.taskName: "\(job.name)"]
            )
            // The slot can take work again.
            if !slot.retiring { onEvent?(.slotReady(slot: slot.index, pid: pid)) }
        } else {
            onEvent?(
                .finished(
                    jobID: job.id,
                    outcome: completion.outcome,
                    runtime: completion.runtime,
                    effects: completion.effects
                )
            )
        }
    }

    /// Runs one job on the calling thread.
    private static func run(
        _ job: PoolJob,
        registry: TaskRegistry,
        lifeline: CInt?
    ) -> (PoolOutcome, Double, [TaskEffect]) {
        let started = ContinuousClock.now
        var invocation = TaskInvocation(
            id: job.id,
            name: job.name,
            args: job.args,
            kwargs: job.kwargs,
            retries: job.retries
        )
        // Celery's `self.request`, as a prefork child gets it (`addToChord` reads its `chord`).
        if let source = job.requestSource { invocation.requestSource = source }
        let outcome: TaskResult
        if let exec = job.exec {
            // The program is a process: its own timeout or the task's hard limit, whichever comes first, kills it.
            let limits = [exec.timeout, job.hardTimeLimit].compactMap { $0 }
            outcome = ExecTask.run(
                invocation,
                argv: exec.argv,
                timeout: limits.min().map { Duration.milliseconds(Int64($0 * 1000)) },
                softTimeout: job.softTimeLimit.map { Duration.milliseconds(Int64($0 * 1000)) },
                lifeline: lifeline ?? -1
            )
        } else {
            // A thread cannot be killed: a hard limit is, for the handler, one more soft one.
            let limit = [job.softTimeLimit, job.hardTimeLimit].compactMap { $0 }.min()
            let deadline = limit.map { started + Duration.milliseconds(Int64($0 * 1000)) }
            outcome = registry.execute(invocation, environment: environment(softDeadline: deadline, lifeline: lifeline))
        }
        return (PoolOutcome(outcome), started.duration(to: .now).seconds, invocation.effects.recorded)
    }

    /// Sleeps end at the soft deadline or when the consumer's parent goes away (its lifeline closes).
    private static func environment(softDeadline: ContinuousClock.Instant?, lifeline: CInt?) -> TaskEnvironment {
        var environment = TaskEnvironment { duration in
            var wait = duration
            if let softDeadline {
                let left = ContinuousClock.now.duration(to: softDeadline)
                if left <= .zero { return false }
                if left < wait { wait = left }
            }
            guard let lifeline else {
                _ = TaskEnvironment.standalone.sleep(wait)
                return wait == duration
            }
            return !Descriptors.waitReadable(lifeline, timeout: wait) && wait == duration
        }
        environment.softDeadline = softDeadline
        return environment
    }

    package func terminate(jobID: String, signal: CInt, reason: ExitReason) {
        guard let (slot, index) = locate(jobID) else { return }
        if index > 0 {
            // Not started: taken back if its thread has not taken it (the revoke then finishes it unrun).
            withdrawQueued(slot, only: jobID)
            return
        }
        logger.warning(
            "cannot terminate a task running on the \(mode.rawValue) pool (no process to signal): it runs to its end",
            metadata: [DaemonLog.Key.taskID: "\(jobID)"]
        )
    }

    package func resize(to size: Int) {
        guard mode == .threads, !stopping else { return }
        let size = max(0, size)
        targetSize = size
        for index in 0..<size where slots[index] == nil {
            do {
                try addSlot(index)
            } catch {
                logger.error("cannot start pool thread \(index): \(error)")
            }
        }
        for (index, slot) in slots where index >= size {
            slots[index] = nil
            onEvent?(.slotExited(slot: index, pid: pid, reason: .shrink))
            if slot.jobs.isEmpty {
                slot.queue.stop()
            } else {
                slot.retiring = true
                withdrawQueued(slot)
                departing.append(slot)
            }
        }
    }

    package func stop(cold: Bool) {
        stopping = true
        for slot in slots.values {
            // Jobs waiting behind a running one go back (to the broker, during a shutdown) rather than hold it up.
            withdrawQueued(slot)
            slot.queue.stop()
        }
    }

    package var isStopped: Bool {
        stopping && slots.values.allSatisfy { $0.jobs.isEmpty } && departing.isEmpty && returnsPending == 0
    }

    package func setLogLevel(_ level: LogLevel) {}

    package var snapshot: [PoolSlotSnapshot] {
        slots.keys.sorted().map { index in
            let slot = slots[index]!
            return PoolSlotSnapshot(
                slot: index,
                pid: pid,
                state: slot.job == nil ? "idle" : "busy",
                jobID: slot.job?.id,
                queued: max(0, slot.jobs.count - 1),
                tasksCompleted: slot.completed,
                restarts: 0,
                lastExit: nil,
                lastExitReason: nil,
                crashLooping: false,
                uptime: slot.startedAt.duration(to: .now).seconds,
                lastExitAt: nil
            )
        }
    }
}
