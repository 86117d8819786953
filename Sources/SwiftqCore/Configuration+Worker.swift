#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

extension Configuration {
    /// The worker's identity on the cluster and the shape of its process pool; these are the settings Celery's
    /// `celery worker -n/-Q/-c/--prefetch-multiplier` options carry.
    public struct Worker: Sendable, Equatable {
        /// Allowed values of `concurrency`: at least one pool child, and a ceiling that catches typos before they
        /// fork a thousand processes.
        public static let concurrencyRange = 1...1024
        /// Allowed values of `prefetchMultiplier`; 0 means no limit. AMQP's prefetch count is 16 bits wide.
        public static let prefetchMultiplierRange = 0...65535

        /// One pool child per online CPU (clamped to `concurrencyRange`), as Celery does.
        public static var defaultConcurrency: Int {
            min(
                max(ProcessInfo.processInfo.activeProcessorCount, concurrencyRange.lowerBound),
                concurrencyRange.upperBound
            )
        }

        /// Celery node name (`name@host`). `%h` (full hostname), `%n` (name part) and `%d` (domain part) are
        /// expanded when the worker starts, not by the parser. Never empty, never contains whitespace.
        public var hostname: String
        /// Queues to consume from, in order. At least one; no duplicates.
        public var queues: [String]
        /// Where canvas follow-ups (callbacks, chain steps, errbacks, chord bodies) go when their signature names no
        /// queue, as Celery's `task_default_queue`: published to exchange `""` with this routing key. Never empty.
        public var defaultQueue: String
        /// Number of pool children, that is tasks executed at the same time.
        public var concurrency: Int
        /// How Swift and built-in tasks run (Celery's `--pool`); exec tasks always run as a program of their own.
        public var pool: Pool = .prefork
        /// Messages reserved per pool child (the prefetch window is `concurrency × prefetchMultiplier`); 0 means
        /// unlimited, as in Celery: the broker sends as many as it has, which starves other workers.
        public var prefetchMultiplier: Int
        /// Whether a message is acknowledged only once its task has finished and its result is stored (`true`, the
        /// default), or as soon as the task is handed to a pool child (`false`).
        ///
        /// swiftq departs from Celery's default (`task_acks_late = False`, ack when execution starts) on purpose:
        /// acking late means a crash of the worker, the pool child or the machine never loses a task, because the
        /// unacknowledged message goes back to the queue and runs again. The price is that tasks must tolerate
        /// running twice. With `false`, a crash while a task runs loses it: exactly Celery's loss window.
        public var acksLate: Bool
        /// Whether a task's state is stored as `STARTED` when it begins, as Celery's `task_track_started`. Off by
        /// default, as in Celery: it costs one result-backend write per task, and most clients only wait for the
        /// final state.
        public var trackStarted: Bool
        /// With ``acksLate``, whether a task whose pool child died (`WorkerLostError`) goes back to its queue instead
        /// of failing, as Celery's `task_reject_on_worker_lost`. Only once: a redelivered task that loses its child
        /// again is stored as a failure and rejected, so a task that kills its child cannot loop forever.
        public var rejectOnWorkerLost: Bool
        /// How long a warm shutdown (SIGTERM) lets running tasks finish before it turns cold. Never negative.
        public var shutdownTimeout: Duration
        /// Cap of the exponential backoff between respawns of a crashing child. Always positive.
        public var restartBackoffMax: Duration
        /// Replace a pool child after it ran this many tasks (Celery's `worker_max_tasks_per_child`); nil: never.
        public var maxTasksPerChild: Int?
        /// Replace a pool child, after its task, when its resident memory exceeds this many KiB (Celery's
        /// `worker_max_memory_per_child`); nil: never. Never mid-task.
        public var maxMemoryPerChild: Int?
        /// How many tasks a prefork child holds at once, the running one included: the others wait in the child's
        /// own queue, so it goes from one short task to the next without waiting for the consumer. Only tasks whose
        /// recent runtime is below ``childPrefetchMaxRuntime`` and that have no time limits wait, only behind
        /// such tasks, and only while what the child holds is expected (by those runtimes) to take less than
        /// ``childPrefetchMaxRuntime`` in all: the count binds tasks of microseconds, the time tasks of
        /// milliseconds. 1: a task goes to an idle child only (Celery's `-O fair`).
        public var childPrefetch = 16
        /// The recent runtime below which a task may wait in a busy child's queue (``childPrefetch``), and the work
        /// a waiting task may wait behind; a child whose task runs longer gets no more (what already waits there
        /// waits for that task: the child reads its queue only between tasks).
        public var childPrefetchMaxRuntime: Duration = .milliseconds(10)
        public static let childPrefetchRange = 1...64
        /// How many times a message may kill its pool child before it is moved to the dead-letter queue instead
        /// of being run again. At least 1.
        public var poisonThreshold: Int
        /// Where poison messages go; nil means `<queue>.dead` for the queue they came from.
        public var deadLetterQueue: String?
        /// The most revoked task ids remembered (Celery's `CELERY_WORKER_REVOKES_MAX`); the oldest go first.
        public var revokesMax: Int
        /// How long a revoke holds (Celery's `CELERY_WORKER_REVOKE_EXPIRES`, 3 hours). Always positive.
        public var revokesExpire: Duration
        /// Where revokes are kept across restarts (Celery's `--statedb`), written atomically; nil: memory and broker
        /// only.
        public var stateDB: String?
        /// Whether the consumer asks the live nodes for their revokes when it starts, before it consumes (Celery's
        /// mingle; `false` is Celery's `--without-mingle`). It waits a second for their replies.
        public var mingle = true
        /// Variables of swiftqd's environment passed on to the pool children and exec-task programs, by name or
        /// by prefix (`APP_*`), on top of the allow-list (`ChildEnvironment`): everything else is withheld, because
        /// the daemon's environment may hold broker passwords. Read when the consumer starts.
        public var passEnvironment: [String] = []

        public static let revokesMaxRange = 1...10_000_000

        public init(
            hostname: String = "celery@%h",
            queues: [String] = ["celery"],
            defaultQueue: String = "celery",
            concurrency: Int = Worker.defaultConcurrency,
            prefetchMultiplier: Int = 4,
            acksLate: Bool = true,
            trackStarted: Bool = false,
            rejectOnWorkerLost: Bool = false,
            shutdownTimeout: Duration = .seconds(30),
            restartBackoffMax: Duration = .seconds(30),
            maxTasksPerChild: Int? = nil,
            maxMemoryPerChild: Int? = nil,
            poisonThreshold: Int = 3,
            deadLetterQueue: String? = nil,
            revokesMax: Int = 50_000,
            revokesExpire: Duration = .seconds(10_800),
            stateDB: String? = nil
        ) {
            self.hostname = hostname
            self.queues = queues
            self.defaultQueue = defaultQueue
            self.concurrency = concurrency
            self.prefetchMultiplier = prefetchMultiplier
            self.acksLate = acksLate
            self.trackStarted = trackStarted
            self.rejectOnWorkerLost = rejectOnWorkerLost
            self.shutdownTimeout = shutdownTimeout
            self.restartBackoffMax = restartBackoffMax
            self.maxTasksPerChild = maxTasksPerChild
            self.maxMemoryPerChild = maxMemoryPerChild
            self.poisonThreshold = poisonThreshold
            self.deadLetterQueue = deadLetterQueue
            self.revokesMax = revokesMax
            self.revokesExpire = revokesExpire
            self.stateDB = stateDB
        }

        /// How many tasks run at once: ``concurrency``, except with the solo pool (one, as Celery's `solo`).
        public var effectiveConcurrency: Int { pool == .solo ? 1 : concurrency }

        /// The dead-letter queue for messages taken from `queue`.
        public func deadLetterQueue(for queue: String) -> String {
            deadLetterQueue ?? "\(queue).dead"
        }
    }
}

extension Configuration.Worker {
    /// Where tasks run, named as Celery's `--pool` names them.
    public enum Pool: String, Sendable, CaseIterable {
        /// One child process per slot (the default): a task that crashes or hangs takes only its child, and a hard
        /// time limit kills it.
        case prefork
        /// A fixed set of threads in the consumer process (as many as `concurrency`): no process boundary, no
        /// frames, but a task that traps takes the consumer with it and a hard time limit cannot stop a thread.
        case threads
        /// Inline in the consumer's event loop, one task at a time: the least overhead and no isolation at all.
        case solo

        /// Whether tasks run inside the consumer process.
        public var isInProcess: Bool { self != .prefork }
    }
}
