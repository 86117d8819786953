import DequeModule
import OrderedCollections
import SwiftqCore
import SwiftqPlatform
import SwiftqTasks

#if canImport(Glibc)
import Glibc
#endif

/// The pool as the consumer uses it: submit a job to an idle slot, terminate the job a slot runs, grow or
/// shrink, and hear what happened through ``onEvent`` (always on the consumer loop's thread).
///
/// Celery's `BasePool` contract (`apply_async` with time limits, `terminate_job`), without the callbacks:
/// every outcome is one ``PoolEvent``. Implementations: ``PreforkPool`` (child processes the consumer spawns
/// and reaps) and ``InlinePool`` (runs jobs on the caller's thread; tests and, opt-in, trivially fast tasks).
package protocol WorkPool: AnyObject {
    /// Called for every pool event, on the loop thread that owns the pool.
    var onEvent: ((PoolEvent) -> Void)? { get set }
    /// How many slots the pool is meant to have (`worker.concurrency`).
    var targetSize: Int { get }
    /// Slots whose child is up and not running a job.
    var idleSlots: Int { get }
    /// What jobs that may wait behind another (``PoolJob/mayQueue``) the pool takes now besides ``idleSlots``: room
    /// in busy children's queues (child prefetch; none for pools without it).
    ///
    /// The consumer counts it right before each dispatch and submits what that dispatch hands out right after, so a
    /// pool with child prefetch judges those submits at the instant of the count: a running job that grows too old
    /// to queue behind in between (a slow turn on a busy machine) must not turn the count into refusals. (A submit
    /// long after a count is judged at that count too: at worst a job queues behind one that has run a little
    /// longer than the limit.)
    var queueRoom: PoolQueueRoom { get }
    /// Starts the pool's slots.
    func start() throws
    /// Runs `job` in an idle slot; returns the slot and its child's pid, or nil when no slot is idle (nothing
    /// happens then).
    func submit(_ job: PoolJob) -> PoolSubmission?
    /// Ends the job `jobID` (if a slot runs it) by signalling its child with `signal`; the child is replaced, and
    /// a ``PoolEvent/lost(jobID:slot:pid:reason:)`` with `reason` follows.
    func terminate(jobID: String, signal: CInt, reason: ExitReason)
    /// Takes back the job `jobID` if it waits in a child's queue and has not started: a
    /// ``PoolEvent/returned(jobID:)`` follows. A started job is left alone (it runs to its end).
    func withdraw(jobID: String)
    /// Grows or shrinks to `size` slots; a shrunk slot finishes its job first (exit reason `.shrink`).
    func resize(to size: Int)
    /// Warm: let running jobs finish, then stop the children. Cold: kill them now.
    func stop(cold: Bool)
    /// Whether, after ``stop(cold:)``, every worker is gone (a warm shutdown waits for it).
    var isStopped: Bool { get }
    /// The log level of the pool's workers (children log at the consumer's level; a reload changes it).
    func setLogLevel(_ level: LogLevel)
    /// One row per slot, for `stats`.
    var snapshot: [PoolSlotSnapshot] { get }
    /// Replace a child after it ran `maxTasks` tasks or when its resident memory exceeds `maxMemoryKiB` after a
    /// task (nil: no limit); between tasks, never during one.
    func setChildLimits(maxTasks: Int?, maxMemoryKiB: Int?)
    /// `worker.child_prefetch` and `worker.child_prefetch_max_runtime` (the prefork pool's children and the threads
    /// pool's slots; the others ignore them).
    func setChildPrefetch(_ depth: Int, maxRuntime: Duration)
}

package extension WorkPool {
    /// Pools without children have nothing to replace.
    func setChildLimits(maxTasks: Int?, maxMemoryKiB: Int?) {}
    func setChildPrefetch(_ depth: Int, maxRuntime: Duration) {}
    /// Pools without child prefetch run a job only in an idle slot.
    var queueRoom: PoolQueueRoom { .none }
    /// Pools without child prefetch start every job they take at once: nothing waits to be taken back.
    func withdraw(jobID: String) {}
}

/// Room in busy slots' queues for jobs that may wait (``WorkPool/queueRoom``): how many more, and how much work
/// (seconds, by ``PoolJob/expectedRuntime``) they may add in all. A busy slot takes jobs to wait only while the jobs
/// it holds add up to less than `worker.child_prefetch_max_runtime`, so that no job waits behind more than that
/// much work, however many `worker.child_prefetch` allows.
package struct PoolQueueRoom: Sendable, Equatable {
    package var jobs: Int
    package var work: Double

    package init(jobs: Int, work: Double) {
        self.jobs = jobs
        self.work = work
    }

    package static let none = PoolQueueRoom(jobs: 0, work: 0)
}

/// A pool slot as child prefetch sees it, in both pools that have it (``PreforkPool``, ``ThreadPool``): the jobs it
/// holds, the running one first.
protocol JobHoldingSlot: AnyObject {
    var index: Int { get }
    var jobs: Deque<PoolJob> { get }
}

extension JobHoldingSlot {
    /// The expected runtimes of the jobs the slot holds, the running one's included: what one more would wait.
    var heldWork: Double {
        var work = 0.0
        for job in jobs { work += job.expectedRuntime }
        return work
    }
}

extension Sequence where Element: JobHoldingSlot {
    /// What the slots that take waiting jobs (`takes`) can still hold: `depth` jobs each, and work until what
    /// each holds reaches `budget` seconds.
    func queueRoom(depth: Int, budget: Double, takes: (Element) -> Bool) -> PoolQueueRoom {
        var room = PoolQueueRoom.none
        for slot in self where takes(slot) {
            room.jobs += depth - slot.jobs.count
            room.work += Swift.max(0, budget - slot.heldWork)
        }
        return room
    }

    /// Among the slots that take one more waiting job, the one holding the fewest jobs (the lowest index among equals).
    func queueTarget(takes: (Element) -> Bool) -> Element? {
        var best: Element?
        for slot in self where takes(slot) {
            if let current = best,
                current.jobs.count < slot.jobs.count
                    || (current.jobs.count == slot.jobs.count && current.index < slot.index)
            {
                continue
            }
            best = slot
        }
        return best
    }

    /// The slot holding `jobID`, and its place there (0: running).
    func locate(_ jobID: String) -> (slot: Element, index: Int)? {
        for slot in self {
            if let index = slot.jobs.firstIndex(where: { $0.id == jobID }) { return (slot, index) }
        }
        return nil
    }
}

/// Where ``WorkPool/submit(_:)`` placed a job: the slot, and the pid of the process that runs it (for the
/// STARTED meta; the consumer's own pid for an in-process pool).
package struct PoolSubmission: Sendable, Equatable {
    package var slot: Int
    package var pid: Int32

    package init(slot: Int, pid: Int32) {
        self.slot = slot
        self.pid = pid
    }
}

/// One job for a pool slot.
///
/// A job passes by value through the consumer's actions, the pool's slot queues and its threads' work queues: its
/// fields live in one copy-on-write box, so each of those hand-overs retains one object rather than every string
/// and collection of the job.
package struct PoolJob: Sendable, Equatable {
    /// The task id.
    package var id: String {
        get { storage.fields.id }
        _modify {
            makeUnique()
            yield &storage.fields.id
        }
    }
    /// The registered task name.
    package var name: String {
        get { storage.fields.name }
        _modify {
            makeUnique()
            yield &storage.fields.name
        }
    }
    /// The task's positional and keyword arguments.
    package var args: [JSONValue] {
        get { storage.fields.args }
        _modify {
            makeUnique()
            yield &storage.fields.args
        }
    }
    package var kwargs: OrderedDictionary<String, JSONValue> {
        get { storage.fields.kwargs }
        _modify {
            makeUnique()
            yield &storage.fields.kwargs
        }
    }
    /// The message body these were decoded from (JSON `[args, kwargs, embed]`), when there is one: the pool child
    /// gets these bytes as they arrived instead of ``args`` and ``kwargs`` encoded again (see ``PoolRequest``).
    package var body: [UInt8] {
        get { storage.fields.body }
        _modify {
            makeUnique()
            yield &storage.fields.body
        }
    }
    /// The program to run, for an exec task (configuration that pool children do not read).
    package var exec: ExecSpec? {
        get { storage.fields.exec }
        _modify {
            makeUnique()
            yield &storage.fields.exec
        }
    }
    /// Soft and hard time limits in seconds (nil: none).
    package var softTimeLimit: Double? {
        get { storage.fields.softTimeLimit }
        _modify {
            makeUnique()
            yield &storage.fields.softTimeLimit
        }
    }
    package var hardTimeLimit: Double? {
        get { storage.fields.hardTimeLimit }
        _modify {
            makeUnique()
            yield &storage.fields.hardTimeLimit
        }
    }
    /// The message's `retries` (what the task sees as its retry count).
    package var retries: Int {
        get { storage.fields.retries }
        _modify {
            makeUnique()
            yield &storage.fields.retries
        }
    }
    /// Where the task's request context (Celery's `self.request`) comes from, nil when there is none: in the
    /// consumer what it is built from (``TaskRequest/Context``), built only if it is read; in a pool child its text,
    /// when the consumer sent it (exec tasks, whose program gets it on stdin), else nothing (the child asks for it
    /// when the task reads it; see ``PoolRequest/requestContext(id:request:)``).
    package var requestSource: TaskRequest.Source? {
        get { storage.fields.requestSource }
        _modify {
            makeUnique()
            yield &storage.fields.requestSource
        }
    }
    /// The request context, built or decoded from ``requestSource`` on each read (nil when there is none); setting
    /// it sets ``requestSource`` to that request.
    package var request: TaskRequest? {
        get { requestSource?.request }
        set { requestSource = newValue.map(TaskRequest.Source.decoded) }
    }
    /// The request context an `execute` frame carries (``PoolRequest/serialized(withRequest:)``): one the job holds
    /// as a request or as text, and one built from its context for an exec task (its program always gets it) or when
    /// `built` (the pool learned that the task reads it). Otherwise none: a Swift task's child asks for it if the task
    /// reads it.
    package func sentRequest(built: Bool) -> SentRequest? {
        switch requestSource {
        case .decoded(let request)?: .request(request)
        case .text(let text)?: .text(text)
        case .context(let context)? where built || exec != nil: .request(context.request)
        case .context?, .remote?, nil: nil
        }
    }
    /// A request context as an `execute` frame carries it.
    package enum SentRequest {
        case request(TaskRequest)
        case text([UInt8])
    }
    /// The request context as JSON text, undecoded, when that is how the job holds it (a pool child's job, as the
    /// consumer sent it).
    package var requestText: [UInt8]? {
        guard case .text(let text)? = requestSource else { return nil }
        return text
    }
    /// Whether the job may wait in a busy child's queue (child prefetch): the consumer says so for short tasks
    /// without time limits; any other job goes to an idle slot only. Not sent to the child.
    package var mayQueue: Bool {
        get { storage.fields.mayQueue }
        _modify {
            makeUnique()
            yield &storage.fields.mayQueue
        }
    }
    /// How long the job is expected to run (seconds): its task's recent runtime, 0 when not known yet. What a job
    /// waiting behind it waits (``PoolQueueRoom``). Not sent to the child.
    package var expectedRuntime: Double {
        get { storage.fields.expectedRuntime }
        _modify {
            makeUnique()
            yield &storage.fields.expectedRuntime
        }
    }

    /// Every field at once: a field written after `init` goes through its `_modify` accessor, which costs the
    /// dispatch an allocation per field.
    package init(
        id: String,
        name: String,
        args: [JSONValue],
        kwargs: OrderedDictionary<String, JSONValue>,
        exec: ExecSpec? = nil,
        softTimeLimit: Double? = nil,
        hardTimeLimit: Double? = nil,
        retries: Int = 0,
        body: [UInt8] = [],
        requestSource: TaskRequest.Source? = nil,
        mayQueue: Bool = false,
        expectedRuntime: Double = 0
    ) {
        storage = Storage(
            Fields(
                id: id,
                name: name,
                args: args,
                kwargs: kwargs,
                body: body,
                exec: exec,
                softTimeLimit: softTimeLimit,
                hardTimeLimit: hardTimeLimit,
                retries: retries,
                requestSource: requestSource,
                mayQueue: mayQueue,
                expectedRuntime: expectedRuntime
            )
        )
    }

    package static func == (lhs: PoolJob, rhs: PoolJob) -> Bool {
        lhs.storage === rhs.storage || lhs.storage.fields == rhs.storage.fields
    }

    private var storage: Storage

    /// Before a field is written: the box is copied unless this job is its only owner. The accessors read and
    /// write the box's fields directly (`_modify`, not a key-path subscript: a key path the optimizer did not
    /// resolve was applied at run time, copying the whole request context through generic value witnesses).
    private mutating func makeUnique() {
        if !isKnownUniquelyReferenced(&storage) {
            storage = Storage(storage.fields)
        }
    }

    private struct Fields: Sendable, Equatable {
        var id: String
        var name: String
        var args: [JSONValue]
        var kwargs: OrderedDictionary<String, JSONValue>
        var body: [UInt8] = []
        var exec: ExecSpec?
        var softTimeLimit: Double?
        var hardTimeLimit: Double?
        var retries: Int
        var requestSource: TaskRequest.Source?
        var mayQueue = false
        var expectedRuntime = 0.0
    }

    /// The box. `@unchecked Sendable` because it is only ever changed after ``makeUnique()``, by an owner that holds
    /// the only reference: a box that two jobs share (and so possibly two threads) is never written.
    private final class Storage: @unchecked Sendable {
        var fields: Fields

        init(_ fields: Fields) {
            self.fields = fields
        }
    }

    /// An exec task's program and its own timeout.
    package struct ExecSpec: Sendable, Equatable {
        package var argv: [String]
        package var timeout: Double?

        package init(argv: [String], timeout: Double?) {
            self.argv = argv
            self.timeout = timeout
        }
    }
}

/// What a job returned.
package enum PoolOutcome: Sendable, Equatable {
    case success(JSONValue)
    case failure(TaskFailure)
    /// The task asked to run again (a thrown ``TaskRetry``, an exec program's exit code 75).
    case retry(TaskRetry)
    /// The task refused its message (``TaskReject``).
    case reject(TaskReject)
    /// The task ended without a result (``TaskIgnore``).
    case ignore
    /// The task asked to be replaced by a signature (``TaskReplace``), in Celery's dict form.
    case replace(JSONValue)

    package init(_ result: TaskResult) {
        switch result {
        case .success(let value): self = .success(value)
        case .failure(let failure): self = .failure(failure)
        case .retry(let retry): self = .retry(retry)
        case .reject(let reject): self = .reject(reject)
        case .ignore: self = .ignore
        case .replace(let signature): self = .replace(signature)
        }
    }
}

/// Why a pool child exited. Only ``crash(_:)``, ``oomKilled`` and ``protocolError(_:)`` are the child's fault: they
/// alone feed the restart backoff, crash-loop detection and the watchdog. Every other reason is a deliberate exit.
package enum ExitReason: Sendable, Equatable, CustomStringConvertible {
    /// Died by a signal nobody sent on purpose, or exited non-zero (or zero, unasked).
    case crash(ExitStatus)
    /// Killed by the kernel's OOM killer (the cgroup's `memory.events` `oom_kill` count rose).
    case oomKilled(ExitStatus)
    /// Killed for sending the consumer a frame it cannot read (`detail` says what was wrong): the child's fault, as
    /// a crash is; its jobs are lost, as when it dies.
    case protocolError(String)
    /// Killed for exceeding the hard time limit of the job it ran.
    case timeLimit
    /// Killed on request (`revoke --terminate`).
    case terminated(signal: CInt)
    /// Retired after `worker.max_tasks_per_child` jobs.
    case maxTasks
    /// Retired after exceeding `worker.max_memory_per_child`.
    case maxMemory
    /// Retired because the pool shrank.
    case shrink
    /// Retired by a reload.
    case reload
    /// Stopped with the pool (shutdown).
    case shutdown

    /// Whether this exit counts as a crash (backoff, crash loop, watchdog).
    package var isCrash: Bool {
        switch self {
        case .crash, .oomKilled, .protocolError: true
        default: false
        }
    }

    /// Short machine-readable name, for `stats` (`exit_reason`).
    package var name: String {
        switch self {
        case .crash: "crash"
        case .oomKilled: "oom"
        case .protocolError: "protocol_error"
        case .timeLimit: "time_limit"
        case .terminated: "terminated"
        case .maxTasks: "max_tasks"
        case .maxMemory: "max_memory"
        case .shrink: "shrink"
        case .reload: "reload"
        case .shutdown: "shutdown"
        }
    }

    package var description: String {
        switch self {
        case .crash(let status): "crashed: \(status)"
        case .oomKilled(let status): "killed by the OOM killer: \(status)"
        case .protocolError(let detail): "killed: sent a frame the consumer cannot read (\(detail))"
        case .timeLimit: "killed: hard time limit exceeded"
        case .terminated(let signal): "terminated on request with \(UnixSignal.name(of: signal))"
        case .maxTasks: "retired after max_tasks_per_child"
        case .maxMemory: "retired after max_memory_per_child"
        case .shrink: "retired by a pool shrink"
        case .reload: "retired by reload"
        case .shutdown: "stopped by shutdown"
        }
    }
}

/// What a pool tells the consumer.
package enum PoolEvent: Sendable, Equatable {
    /// A slot's child is up and can take jobs.
    case slotReady(slot: Int, pid: Int32)
    /// The job began running (the child acknowledged it).
    case started(jobID: String, slot: Int, pid: Int32)
    /// The job returned; `runtime` in seconds; `effects`: what the task recorded on its way (``TaskEffect``), for the
    /// consumer to perform before the outcome.
    case finished(jobID: String, outcome: PoolOutcome, runtime: Double, effects: [TaskEffect] = [])
    /// The child running the job exited before it returned.
    case lost(jobID: String, slot: Int, pid: Int32, reason: ExitReason)
    /// A slot's child exited (with or without a job) and why; the pool replaces it unless the slot was retired.
    case slotExited(slot: Int, pid: Int32, reason: ExitReason)
    /// The job never started and is given back: withdrawn (``WorkPool/withdraw(jobID:)``), or it waited in the
    /// queue of a child that was let go or died.
    case returned(jobID: String)
}

/// One pool slot as `stats` shows it.
package struct PoolSlotSnapshot: Sendable, Equatable {
    package var slot: Int
    package var pid: Int32
    /// `starting`, `idle`, `busy`, `retiring`, `backoff`.
    package var state: String
    package var jobID: String?
    /// Jobs waiting in the child's queue behind ``jobID`` (child prefetch).
    package var queued: Int = 0
    package var tasksCompleted: Int
    package var restarts: Int
    package var lastExit: ExitStatus?
    package var lastExitReason: ExitReason?
    package var crashLooping: Bool
    /// Seconds the slot's current child has been up (nil while none is).
    package var uptime: Double?
    /// When the last exit happened (seconds since the epoch).
    package var lastExitAt: Double?
    /// How many times the slot's child was replaced on purpose, by reason name (`max_tasks`, `max_memory`,
    /// `time_limit`, `terminated`, `reload`).
    package var replaced: [String: Int] = [:]
}

package extension PoolSlotSnapshot {
    /// The slot as a `stats` row of `children` (role `pool`), the shape the supervisor shows as is.
    var json: JSONValue {
        var object: OrderedDictionary<String, JSONValue> = [
            "role": "pool", "slot": .int(Int64(slot)), "pid": pid > 0 ? .int(Int64(pid)) : .null,
            "state": .string(pid > 0 ? "running" : state), "restarts": .int(Int64(restarts)),
            "uptime": uptime.map { .double($0) } ?? .null,
        ]
        if let lastExit {
            var last = lastExit.json.objectValue ?? [:]
            last["at"] = lastExitAt.map { .double($0) } ?? .null
            object["last_exit"] = .object(last)
        } else {
            object["last_exit"] = .null
        }
        object["exit_reason"] = lastExitReason.map { .string($0.name) } ?? .null
        object["crash_loop"] = .bool(crashLooping)
        object["task_state"] = .string(state)
        object["task_id"] = jobID.map { .string($0) } ?? .null
        object["queued_tasks"] = .int(Int64(queued))
        object["tasks_completed"] = .int(Int64(tasksCompleted))
        var replacements: OrderedDictionary<String, JSONValue> = [:]
        for reason in replaced.keys.sorted() { replacements[reason] = .int(Int64(replaced[reason]!)) }
        object["replaced"] = .object(replacements)
        return .object(object)
    }
}
