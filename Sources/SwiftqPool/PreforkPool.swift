import DequeModule
import Logging
import OrderedCollections
import SwiftqCore
import SwiftqPlatform

#if canImport(Glibc)
import Glibc
#endif

/// The prefork pool: child processes the consumer spawns, feeds, reaps and replaces itself (Celery's model,
/// where the worker's main process is the parent of its pool).
///
/// Being the parent is what lets the pool know *why* a child exited: it sent the SIGKILL of a hard time limit or
/// a terminate, it closed the channel of a slot it shrank away, or nobody did anything and the child crashed
/// (an OOM kill is told apart by the cgroup's `oom_kill` counter). The reason travels with the exit
/// (``PoolEvent/lost(jobID:slot:pid:reason:)``, ``PoolEvent/slotExited(slot:pid:reason:)``, the snapshot), and
/// only crashes feed ``RestartPolicy``'s backoff and crash-loop detection.
///
/// Children are `posix_spawn`ed re-executions of this binary (`_pool-child`): their channel as fd 3, the read
/// end of a lifeline pipe whose write end only this process holds as fd 4, and `PR_SET_PDEATHSIG` SIGKILL armed
/// in the child. All spawns happen on the loop's thread (the consumer's main thread, which lives as long as the
/// process), so the death signal fires exactly when the consumer dies. Reaping is a `waitpid(-1, WNOHANG)` loop
/// on SIGCHLD, delivered through a ``SignalPipe`` the loop watches.
///
/// **Child prefetch** (`worker.child_prefetch`): a busy child may hold more jobs than the one it runs, up to
/// ``childPrefetch``, in its own queue, so it goes from one short task to the next without waiting for the
/// consumer (fewer wake-ups and frames on both sides). Only jobs the consumer marks ``PoolJob/mayQueue`` (short
/// by their learned runtime, no time limits) wait, only behind such jobs, only while the jobs the child holds are
/// expected (``PoolJob/expectedRuntime``) to take less than ``queueRuntimeLimit`` in all, and never behind a job
/// running longer than that. A job already waiting behind a job that turns out long waits for it: the child
/// runs one job at a time and reads its channel only between jobs, so nothing can be taken back from it sooner
/// (the learned runtime keeps this to tasks that are usually short; `child_prefetch: 1` rules it out). A job that
/// waits has not started: ``PoolEvent/started(jobID:slot:pid:)`` comes when the child
/// reaches it (the child writes each result before it starts the next job, so the results read tell which job
/// runs), and a waiting job is taken back with a `cancel` frame (``withdraw(jobID:)``, a revoke, a shrink, a
/// retiring child) or, if its child dies, given back unrun (``PoolEvent/returned(jobID:)``).
///
/// Owner: the loop thread of the consumer. Every stored property below belongs to it; events are delivered on it.
package final class PreforkPool: WorkPool {
    package var onEvent: ((PoolEvent) -> Void)?
    package private(set) var targetSize: Int

    private let loop: EventLoop
    private let executable: String
    private var logger: Logger
    private let policy: RestartPolicy
    private var logLevel: LogLevel
    /// Active slots by index (`0..<targetSize`, plus any still finishing a job before a shrink lets them go).
    private var slots: [Int: Slot] = [:]
    /// Children that were let go (shrink, shutdown) and have not been reaped yet, by pid.
    private var departing: [pid_t: Slot] = [:]
    /// What outlives a slot's children, by index: restarts, crash history, the last exit and its reason.
    private var records: [Int: SlotRecord] = [:]
    private var lifeline: (read: CInt, write: CInt)?
    private var signalPipe: SignalPipe?
    private let memory = CgroupMemory.current()
    private var stopping = false
    /// `worker.max_tasks_per_child` and `worker.max_memory_per_child` (KiB): a child past either is replaced after
    /// the task it ran, never during one. Changed by a reload.
    package var maxTasksPerChild: Int?
    package var maxMemoryPerChild: Int?
    /// How many jobs a child holds at once, the running one included (`worker.child_prefetch`; 1: only idle
    /// children get work, Celery's `-O fair`).
    package var childPrefetch = 1
    /// A job running longer than this has no job queued behind it (`worker.child_prefetch_max_runtime`).
    package var queueRuntimeLimit: Duration = .milliseconds(10)
    /// The tasks whose children asked for a request context (``PoolReply/requestContext(id:)``): their jobs carry it
    /// from then on, instead of each task waiting for a round trip through this loop. The registry's names only:
    /// the consumer submits no job for a task it does not know.
    private var requestReaders: Set<String> = []

    /// One slot and the child that fills it. States: `starting` (spawned, no hello yet) → `idle` ⇄ `busy`;
    /// `retiring` (finish the running job, take back the queued ones, then let the child go); `backoff` (dead,
    /// waiting for its respawn timer).
    private final class Slot: JobHoldingSlot {
        enum State: String {
            case starting, idle, busy, retiring, backoff
        }

        let index: Int
        var pid: pid_t = 0
        var channel: FramedChannel?
        var state: State = .starting
        /// The jobs the child holds: the first runs (or is about to), the others wait in the child's queue.
        var jobs = Deque<PoolJob>()
        /// The running job (the first one).
        var job: PoolJob? { jobs.first }
        /// Jobs asked back with a `cancel` frame and not answered yet.
        var cancelling: Set<String> = []
        /// The job whose ``PoolEvent/started(jobID:slot:pid:)`` was sent last.
        var startedJob: String?
        /// The child was reaped; its last frames are being read.
        var exiting = false
        var jobStartedAt: ContinuousClock.Instant?
        var hardLimitTimer: EventLoop.TimerID?
        var respawnTimer: EventLoop.TimerID?
        /// Why this pool is about to end the child (set before the kill or the channel close); nil means
        /// nobody asked, so an exit is a crash.
        var intendedExit: ExitReason?
        var startedAt: ContinuousClock.Instant = .now
        /// The `oom_kill` count when the child was spawned.
        var oomKillsAtSpawn: Int?
        /// Tasks the current child has run (for `max_tasks_per_child`).
        var childTasks = 0

        init(index: Int) {
            self.index = index
        }
    }

    /// A slot's history across its children (and across a shrink and a later grow).
    package struct SlotRecord {
        package var restarts = 0
        package var tasksCompleted = 0
        package var history = RestartPolicy.History()
        package var lastExit: ExitStatus?
        package var lastExitReason: ExitReason?
        package var lastExitAt: Double?
        package var replaced: [String: Int] = [:]
    }

    package init(size: Int, loop: EventLoop, policy: RestartPolicy, logLevel: LogLevel, executable: String) {
        self.targetSize = size
        self.loop = loop
        self.policy = policy
        self.logLevel = logLevel
        self.executable = executable
        self.logger = DaemonLog.logger(role: "consumer")
    }

    /// Asked on every dispatch: counted without building an array.
    package var idleSlots: Int { slots.values.count { $0.state == .idle } }

    /// When ``queueRoom`` was last counted: the instant submits are judged at (``WorkPool/queueRoom``).
    private var roomCountedAt: ContinuousClock.Instant?

    /// Room for jobs that may wait, in the queues of busy children that take them (``takesQueuedJobs(_:now:)``).
    /// Counting it sets ``roomCountedAt``.
    package var queueRoom: PoolQueueRoom {
        guard childPrefetch > 1, !stopping else { return .none }
        let now = ContinuousClock.now
        roomCountedAt = now
        return slots.values.queueRoom(depth: childPrefetch, budget: queueRuntimeLimit.seconds) {
            takesQueuedJobs($0, now: now)
        }
    }

    /// Whether a busy child takes one more waiting job: room left, nothing being asked back, every job it holds
    /// may wait, what it holds expected to take less than ``queueRuntimeLimit`` in all, the running one not overdue,
    /// and (with `max_tasks_per_child`) the child lives long enough to reach it.
    private func takesQueuedJobs(_ slot: Slot, now: ContinuousClock.Instant) -> Bool {
        guard slot.state == .busy, slot.channel != nil, slot.jobs.count < childPrefetch, slot.cancelling.isEmpty,
            slot.jobs.allSatisfy(\.mayQueue)
        else { return false }
        if let started = slot.jobStartedAt, started.duration(to: now) > queueRuntimeLimit { return false }
        if slot.heldWork >= queueRuntimeLimit.seconds { return false }
        if let limit = maxTasksPerChild, slot.childTasks + slot.jobs.count >= limit { return false }
        return true
    }

    /// Slots whose child said hello (idle or busy).
    package var readySlots: Int { slots.values.count { $0.state == .idle || $0.state == .busy } }

    package func start() throws {
        lifeline = try Descriptors.pipe()
        let pipe = try SignalPipe(signals: [SIGCHLD])
        signalPipe = pipe
        loop.watch(pipe.readDescriptor) { [unowned self] _ in
            if pipe.drain().contains(SIGCHLD) { reap() }
        }
        for index in 0..<targetSize { try spawn(slot(index)) }
    }

    package func submit(_ job: PoolJob) -> PoolSubmission? {
        guard !stopping else { return nil }
        if let slot = slots.values.lazy.filter({ $0.state == .idle }).min(by: { $0.index < $1.index }),
            let channel = slot.channel
        {
            slot.state = .busy
            slot.jobs.append(job)
            channel.send(serialized: executeFrame(job), atEndOfTurn: true)
            ThroughputCounters.shared.poolFrameSent()
            startRunning(slot)
            return PoolSubmission(slot: slot.index, pid: slot.pid)
        }
        let now = roomCountedAt ?? ContinuousClock.now
        guard job.mayQueue, childPrefetch > 1,
            let slot = slots.values.queueTarget(takes: { takesQueuedJobs($0, now: now) }), let channel = slot.channel
        else { return nil }
        slot.jobs.append(job)
        channel.send(serialized: executeFrame(job), atEndOfTurn: true)
        ThroughputCounters.shared.poolFrameSent()
        return PoolSubmission(slot: slot.index, pid: slot.pid)
    }

    private func executeFrame(_ job: PoolJob) -> [UInt8] {
        PoolRequest.execute(job).serialized(withRequest: !requestReaders.isEmpty && requestReaders.contains(job.name))
    }

    /// The slot's first job runs from now: its hard time limit starts and ``PoolEvent/started(jobID:slot:pid:)``
    /// goes out (not for a job being asked back: it may never start).
    private func startRunning(_ slot: Slot) {
        guard let job = slot.jobs.first, !slot.cancelling.contains(job.id), slot.startedJob != job.id else { return }
        slot.startedJob = job.id
        slot.jobStartedAt = .now
        if let limit = job.hardTimeLimit, limit > 0 {
            let pid = slot.pid
            slot.hardLimitTimer = loop.schedule(after: .milliseconds(Int64(limit * 1000))) {
                [unowned self, unowned slot] in
                slot.hardLimitTimer = nil
                guard slot.pid == pid, slot.job?.id == job.id else { return }
                logger.error(
                    "hard time limit (\(limit)s) exceeded; killing pool child \(slot.index) (pid \(pid))",
                    metadata: [DaemonLog.Key.taskID: "\(job.id)", DaemonLog.Key.taskName: "\(job.name)"]
                )
                end(slot, signal: SIGKILL, reason: .timeLimit)
            }
        }
        onEvent?(.started(jobID: job.id, slot: slot.index, pid: slot.pid))
    }

    /// The slot (active or departing) holding `jobID`, and its place there (0: running).
    private func locate(_ jobID: String) -> (slot: Slot, index: Int)? {
        slots.values.locate(jobID) ?? departing.values.locate(jobID)
    }

    package func terminate(jobID: String, signal: CInt, reason: ExitReason) {
        // A slot shrunk away while busy is departing, not gone: its job can still be terminated. What the child
        // already wrote is read first: a job that looks queued may have started since.
        guard let found = locate(jobID) else { return }
        found.slot.channel?.readPending()
        guard let (slot, index) = locate(jobID) else { return }
        if index == 0 {
            if slot.jobs.count > 1 {
                // The jobs behind it are asked back before the signal, and what the child wrote is read again: a
                // child that finished this job meanwhile starts none of them (it reads the cancels first), and
                // one that did not is signalled while it still runs this one, never the next.
                cancelQueued(slot)
                slot.channel?.readPending()
                guard let again = locate(jobID), again.index == 0 else { return }
            }
            end(slot, signal: signal, reason: reason)
        } else {
            // Asked back: the child drops it when it reads the cancel, before the job's turn. (Only a child that
            // read its channel in the moment between the read above and this cancel, and started the job, runs it
            // to its end: the pool cannot tell that child from one about to answer `cancelled`.)
            cancel(jobID, in: slot)
        }
    }

    package func withdraw(jobID: String) {
        guard let found = locate(jobID), found.index > 0 else { return }
        found.slot.channel?.readPending()
        guard let (slot, index) = locate(jobID), index > 0 else { return }
        cancel(jobID, in: slot)
    }

    /// Asks the child to drop a queued job; ``PoolReply/cancelled(id:)`` (or the job's result, if it started
    /// meanwhile) answers.
    private func cancel(_ jobID: String, in slot: Slot) {
        guard let channel = slot.channel, !slot.cancelling.contains(jobID) else { return }
        slot.cancelling.insert(jobID)
        channel.send(PoolRequest.cancel(id: jobID).json)
        ThroughputCounters.shared.poolFrameSent()
    }

    /// Asks back every job waiting behind the running one.
    private func cancelQueued(_ slot: Slot) {
        for job in slot.jobs.dropFirst() { cancel(job.id, in: slot) }
    }

    package func resize(to size: Int) {
        let size = max(0, size)
        targetSize = size
        guard !stopping else { return }
        for index in 0..<size where slots[index] == nil {
            do {
                try spawn(slot(index))
            } catch {
                logger.error("cannot start pool child \(index): \(error)")
                scheduleRespawn(slot(index), after: policy.initialDelay)
            }
        }
        for (index, slot) in slots where index >= size {
            letGo(slot, reason: .shrink)
        }
    }

    package func stop(cold: Bool) {
        stopping = true
        for slot in Array(slots.values) {
            if cold {
                if let timer = slot.respawnTimer { loop.cancel(timer) }
                slot.respawnTimer = nil
                if slot.pid > 0 {
                    slot.intendedExit = .shutdown
                    ChildProcess.signal(slot.pid, SIGKILL)
                }
            } else {
                letGo(slot, reason: .shutdown)
            }
        }
    }

    package func setLogLevel(_ level: LogLevel) {
        logLevel = level
        for slot in slots.values { sendLogLevel(slot) }
    }

    package var snapshot: [PoolSlotSnapshot] {
        slots.keys.sorted().map { index in
            let slot = slots[index]!
            let record = records[index] ?? SlotRecord()
            return PoolSlotSnapshot(
                slot: index,
                pid: slot.pid,
                state: slot.state.rawValue,
                jobID: slot.job?.id,
                queued: max(0, slot.jobs.count - 1),
                tasksCompleted: record.tasksCompleted,
                restarts: record.restarts,
                lastExit: record.lastExit,
                lastExitReason: record.lastExitReason,
                crashLooping: policy.isCrashLooping(record.history, at: .now),
                uptime: slot.pid > 0 ? slot.startedAt.duration(to: .now).seconds : nil,
                lastExitAt: record.lastExitAt,
                replaced: record.replaced
            )
        }
    }

    // MARK: Children

    private func slot(_ index: Int) -> Slot {
        if let existing = slots[index] { return existing }
        let slot = Slot(index: index)
        slots[index] = slot
        return slot
    }

    private func spawn(_ slot: Slot) throws(SystemError) {
        guard let lifeline else { return }
        let (ours, theirs) = try Descriptors.socketPair()
        defer { Descriptors.close(theirs) }
        let pid: pid_t
        do {
            pid = try ChildProcess.spawn(
                path: executable,
                arguments: [executable, InternalRole.poolChild, "--slot", "\(slot.index)"],
                environment: ChildEnvironment.forChild,
                descriptors: [theirs, lifeline.read]
            )
        } catch {
            Descriptors.close(ours)
            throw error
        }
        slot.pid = pid
        slot.state = .starting
        slot.exiting = false
        slot.startedAt = .now
        slot.intendedExit = nil
        slot.childTasks = 0
        slot.oomKillsAtSpawn = memory?.oomKills()
        let channel = FramedChannel(descriptor: ours, loop: loop)
        slot.channel = channel
        channel.onFrame = { [unowned self, unowned slot] frame in handle(frame, from: slot, pid: pid) }
        channel.onClose = { [unowned self, unowned slot] reason in
            logger.debug("pool channel \(slot.index) closed: \(reason)")
            guard slot.pid == pid else { return }
            slot.channel = nil
            if case .malformed(let detail) = reason { misbehaved(slot, pid: pid, detail) }
        }
        logger.debug("spawned pool child \(slot.index) (pid \(pid))")
    }

    private func handle(_ frame: ReceivedFrame, from slot: Slot, pid: pid_t) {
        frame.descriptors.forEach(Descriptors.close)
        guard slot.pid == pid else { return }
        ThroughputCounters.shared.poolFrameReceived()
        let reply: PoolReply
        do {
            reply = try PoolReply(decoding: frame.message)
        } catch {
            misbehaved(slot, pid: pid, "\(error)")
            return
        }
        switch reply {
        case .hello:
            guard !slot.exiting else { return }
            if slot.state == .starting { slot.state = .idle }
            sendLogLevel(slot)
            onEvent?(.slotReady(slot: slot.index, pid: pid))
        case .result(let id, let outcome, let runtime, let effects):
            guard let job = slot.job, id == job.id else {
                logger.warning("pool child \(slot.index) sent a result for no job it runs")
                return
            }
            // A job asked back too late ran: it started (unannounced) before the child read the request.
            if slot.startedJob != id {
                slot.cancelling.remove(id)
                startRunning(slot)
            }
            removeFirstJob(slot)
            records[slot.index, default: SlotRecord()].tasksCompleted += 1
            slot.childTasks += 1
            if slot.state != .retiring, let reason = childLimitReached(slot, pid: pid) {
                // Between tasks: the child goes (its channel closes, it exits 0) and a new one takes the slot.
                logger.info(
                    "replacing pool child \(slot.index) (pid \(pid)): \(reason)",
                    metadata: [DaemonLog.Key.slot: "\(slot.index)"]
                )
                slot.intendedExit = reason
                slot.state = .retiring
            }
            let next = advance(slot)
            onEvent?(.finished(jobID: job.id, outcome: outcome, runtime: runtime, effects: effects))
            if next { startRunning(slot) }
        case .cancelled(let id):
            guard let index = slot.jobs.firstIndex(where: { $0.id == id }) else { return }
            slot.cancelling.remove(id)
            if index == 0 {
                removeFirstJob(slot)
            } else {
                slot.jobs.remove(at: index)
            }
            let next = index == 0 && advance(slot)
            onEvent?(.returned(jobID: id))
            if next { startRunning(slot) }
        case .requestContext(let id):
            // Its task reads the request context, which its `execute` left out: built now, from the job the slot
            // holds (null for a job it does not hold), and written at once, since the child waits for it. Later
            // jobs of the task carry it.
            let job = slot.jobs.first { $0.id == id }
            if let job { requestReaders.insert(job.name) }
            let request = job?.request
            guard let channel = slot.channel else { return }
            channel.send(serialized: PoolRequest.requestContext(id: id, request: request).serialized)
            ThroughputCounters.shared.poolFrameSent()
        case .error(let message, _):
            logger.error("pool child \(slot.index) reported: \(message)")
        }
    }

    /// Drops the running job from the slot (it returned, or was dropped unstarted).
    private func removeFirstJob(_ slot: Slot) {
        if let timer = slot.hardLimitTimer { loop.cancel(timer) }
        slot.hardLimitTimer = nil
        slot.jobs.removeFirst()
        slot.startedJob = nil
        slot.jobStartedAt = nil
    }

    /// After the running job left: a retiring child gives its queued jobs back and goes once it holds none; an
    /// active one goes idle or on to its next job. Returns whether a next job runs now (its `started` is sent
    /// by the caller, after the event about the job that left).
    private func advance(_ slot: Slot) -> Bool {
        if slot.state == .retiring {
            if !slot.exiting { cancelQueued(slot) }
            if slot.jobs.isEmpty { release(slot) }
            return false
        }
        if slot.jobs.isEmpty {
            slot.state = .idle
            return false
        }
        return true
    }

    /// `worker.child_prefetch` and `worker.child_prefetch_max_runtime` (a reload changes them; jobs already
    /// queued stay).
    package func setChildPrefetch(_ depth: Int, maxRuntime: Duration) {
        childPrefetch = max(1, depth)
        queueRuntimeLimit = maxRuntime
    }

    package func setChildLimits(maxTasks: Int?, maxMemoryKiB: Int?) {
        maxTasksPerChild = maxTasks
        maxMemoryPerChild = maxMemoryKiB
    }

    /// Whether the child has run `max_tasks_per_child` tasks or grown past `max_memory_per_child` (resident KiB).
    private func childLimitReached(_ slot: Slot, pid: pid_t) -> ExitReason? {
        if let limit = maxTasksPerChild, slot.childTasks >= limit { return .maxTasks }
        if let limit = maxMemoryPerChild, let resident = ResourceUsage.residentKiB(of: pid), resident > limit {
            return .maxMemory
        }
        return nil
    }

    private func sendLogLevel(_ slot: Slot) {
        guard let channel = slot.channel else { return }
        channel.send(PoolRequest.logLevel(logLevel).json)
        ThroughputCounters.shared.poolFrameSent()
    }

    /// A child that sent something the consumer cannot read: what it says next cannot be trusted either (a result
    /// ignored would leave its job in the slot for ever, and every later result would match no job). It is killed
    /// and its channel closed; its jobs are lost as a crash's are (`WorkerLostError`, or requeued with
    /// `reject_on_worker_lost`), and the slot gets a new child.
    private func misbehaved(_ slot: Slot, pid: pid_t, _ detail: String) {
        logger.error(
            "pool child \(slot.index) (pid \(pid)) sent a frame the consumer cannot read, killing it: \(detail)",
            metadata: [DaemonLog.Key.slot: "\(slot.index)"]
        )
        slot.channel?.close()
        slot.channel = nil
        end(slot, signal: SIGKILL, reason: .protocolError(detail))
    }

    /// Ends a slot's child on purpose: the exit that follows carries `reason`, not a crash.
    private func end(_ slot: Slot, signal: CInt, reason: ExitReason) {
        guard slot.pid > 0 else { return }
        slot.intendedExit = reason
        ChildProcess.signal(slot.pid, signal)
    }

    /// Takes a slot out of the pool: an idle child is let go now (its channel closes, so it exits 0), a busy one
    /// after its job; a slot in backoff just goes.
    private func letGo(_ slot: Slot, reason: ExitReason) {
        slots[slot.index] = nil
        if let timer = slot.respawnTimer { loop.cancel(timer) }
        slot.respawnTimer = nil
        guard slot.pid > 0 else { return }
        departing[slot.pid] = slot
        slot.intendedExit = reason
        if slot.jobs.isEmpty || slot.state == .starting {
            release(slot)
        } else {
            slot.state = .retiring
            cancelQueued(slot)
        }
    }

    /// Closes a departing child's channel: it exits on its own.
    private func release(_ slot: Slot) {
        slot.channel?.close()
        slot.channel = nil
        slot.state = .retiring
    }

    private func reap() {
        for (pid, status) in ChildProcess.reapAll() {
            if let slot = departing.removeValue(forKey: pid) {
                exited(slot, pid: pid, status: status, active: false)
            } else if let slot = slots.values.first(where: { $0.pid == pid }) {
                exited(slot, pid: pid, status: status, active: true)
            } else {
                logger.debug("reaped an unknown child \(pid): \(status)")
            }
        }
    }

    private func exited(_ slot: Slot, pid: pid_t, status: ExitStatus, active: Bool) {
        let reason = exitReason(slot, status: status)
        let uptime = slot.startedAt.duration(to: .now)
        // What the child wrote before it died counts: results and dropped jobs still in the socket (read as a
        // retiring slot's, so that nothing new is handed to it meanwhile).
        slot.state = .retiring
        slot.exiting = true
        slot.channel?.readPending()
        if let timer = slot.hardLimitTimer { loop.cancel(timer) }
        slot.hardLimitTimer = nil
        slot.channel?.close()
        slot.channel = nil
        slot.pid = 0
        var record = records[slot.index] ?? SlotRecord()
        record.lastExit = status
        record.lastExitReason = reason
        record.lastExitAt = wallClockSeconds()
        var metadata: Logger.Metadata = [DaemonLog.Key.slot: "\(slot.index)", "pid": "\(pid)", "status": "\(status)"]
        metadata["reason"] = "\(reason.name)"
        if reason.isCrash {
            logger.error("pool child died unexpectedly: \(reason)", metadata: metadata)
        } else {
            logger.debug("pool child exited: \(reason)", metadata: metadata)
        }
        let job = slot.job
        let announced = slot.startedJob
        let waiting = slot.jobs.dropFirst().map(\.id)
        slot.jobs.removeAll()
        slot.cancelling.removeAll()
        slot.startedJob = nil
        slot.jobStartedAt = nil
        let delay = (active && !stopping) ? policy.recordExit(reason, &record.history, uptime: uptime, at: .now) : nil
        if delay != nil && reason.isCrash { record.restarts += 1 }
        if delay != nil && !reason.isCrash { record.replaced[reason.name, default: 0] += 1 }
        if reason.isCrash && policy.isCrashLooping(record.history, at: .now) {
            logger.critical(
                "pool \(slot.index) is crash-looping: \(record.history.deaths.count) deaths within \(policy.crashLoopWindow)"
            )
        }
        records[slot.index] = record
        if let job {
            // A job that became the first one as the child's last results were read may have started: it is
            // reported started before lost, so its states and events stay in order.
            if announced != job.id { onEvent?(.started(jobID: job.id, slot: slot.index, pid: pid)) }
            onEvent?(.lost(jobID: job.id, slot: slot.index, pid: pid, reason: reason))
        }
        // Jobs that waited behind it never started: they run elsewhere.
        for id in waiting { onEvent?(.returned(jobID: id)) }
        if let delay {
            if delay > .zero { logger.warning("respawning pool \(slot.index) in \(delay)") }
            scheduleRespawn(slot, after: delay)
        } else if active {
            slots[slot.index] = nil
        }
        onEvent?(.slotExited(slot: slot.index, pid: pid, reason: reason))
    }

    private func exitReason(_ slot: Slot, status: ExitStatus) -> ExitReason {
        if let intended = slot.intendedExit { return intended }
        if stopping { return .shutdown }
        if case .signaled(SIGKILL, _) = status, let before = slot.oomKillsAtSpawn, let now = memory?.oomKills(),
            now > before
        {
            return .oomKilled(status)
        }
        return .crash(status)
    }

    private func scheduleRespawn(_ slot: Slot, after delay: Duration) {
        slot.state = .backoff
        slot.respawnTimer = loop.schedule(after: delay) { [unowned self, unowned slot] in
            slot.respawnTimer = nil
            guard !stopping, slots[slot.index] === slot else { return }
            do {
                try spawn(slot)
                logger.info("respawned pool \(slot.index) (pid \(slot.pid))")
            } catch {
                logger.error("cannot respawn pool \(slot.index): \(error)")
                scheduleRespawn(slot, after: max(policy.initialDelay, delay * 2))
            }
        }
    }

    package var isStopped: Bool { stopping && slots.values.allSatisfy { $0.pid == 0 } && departing.isEmpty }
}
