extension Configuration {
    /// How a task is retried, limited and acknowledged: the keys of `tasks.defaults` and `tasks.<name>`, Celery's
    /// task options (`max_retries`, `time_limit`, `acks_late`, …) set per task name in the file.
    ///
    /// Every property is optional: `nil` means "not set here", so a task's own entry overrides `tasks.defaults`,
    /// which overrides the `worker` section (`acks_late`, `reject_on_worker_lost`) and Celery's defaults. See
    /// ``resolvedTaskSettings(for:)``.
    public struct TaskSettings: Sendable, Equatable {
        /// How many times the task may be retried before it fails for good (Celery's default: 3).
        public var maxRetries: Int?
        /// How long a retry waits when the retry request names no countdown or ETA (Celery's default: 3 minutes).
        public var defaultRetryDelay: Duration?
        /// Whether retries without a countdown wait exponentially longer: 1 s, 2 s, 4 s, … (Celery's
        /// `retry_backoff=True`), capped at ``retryBackoffMax``.
        public var retryBackoff: Bool?
        /// The cap of the exponential backoff (Celery's default: 10 minutes).
        public var retryBackoffMax: Duration?
        /// Whether a backoff delay is drawn at random between 0 and its exponential value ("full jitter", Celery's
        /// default), so that tasks that failed together do not come back together.
        public var retryJitter: Bool?
        /// Whether any failure is retried (Celery's `autoretry_for=(Exception,)`), up to ``maxRetries``.
        public var autoretry: Bool?
        /// The soft time limit: the task is told (Swift: cancelled; exec: SIGTERM) and may clean up.
        public var softTimeLimit: Duration?
        /// The hard time limit: the pool child is killed and replaced, and the task fails with `TimeLimitExceeded`.
        public var timeLimit: Duration?
        /// How many of these tasks may start per second, minute or hour on this worker.
        public var rateLimit: RateLimit?
        /// Whether the message is acknowledged after the task ran (`true`) or when it starts.
        public var acksLate: Bool?
        /// With ``acksLate``, whether a task whose pool child died goes back to its queue instead of failing.
        public var rejectOnWorkerLost: Bool?
        /// With ``acksLate``, whether a failed or timed-out task's message is acknowledged (`true`, Celery's default)
        /// or rejected (a failure: dropped or dead-lettered by the broker; a hard time limit: requeued).
        public var acksOnFailureOrTimeout: Bool?

        public init(
            maxRetries: Int? = nil,
            defaultRetryDelay: Duration? = nil,
            retryBackoff: Bool? = nil,
            retryBackoffMax: Duration? = nil,
            retryJitter: Bool? = nil,
            autoretry: Bool? = nil,
            softTimeLimit: Duration? = nil,
            timeLimit: Duration? = nil,
            rateLimit: RateLimit? = nil,
            acksLate: Bool? = nil,
            rejectOnWorkerLost: Bool? = nil,
            acksOnFailureOrTimeout: Bool? = nil
        ) {
            self.maxRetries = maxRetries
            self.defaultRetryDelay = defaultRetryDelay
            self.retryBackoff = retryBackoff
            self.retryBackoffMax = retryBackoffMax
            self.retryJitter = retryJitter
            self.autoretry = autoretry
            self.softTimeLimit = softTimeLimit
            self.timeLimit = timeLimit
            self.rateLimit = rateLimit
            self.acksLate = acksLate
            self.rejectOnWorkerLost = rejectOnWorkerLost
            self.acksOnFailureOrTimeout = acksOnFailureOrTimeout
        }

        /// Whether nothing is set.
        public var isEmpty: Bool { self == TaskSettings() }

        /// These settings where set, `base` elsewhere.
        public func overlaid(on base: TaskSettings) -> TaskSettings {
            TaskSettings(
                maxRetries: maxRetries ?? base.maxRetries,
                defaultRetryDelay: defaultRetryDelay ?? base.defaultRetryDelay,
                retryBackoff: retryBackoff ?? base.retryBackoff,
                retryBackoffMax: retryBackoffMax ?? base.retryBackoffMax,
                retryJitter: retryJitter ?? base.retryJitter,
                autoretry: autoretry ?? base.autoretry,
                softTimeLimit: softTimeLimit ?? base.softTimeLimit,
                timeLimit: timeLimit ?? base.timeLimit,
                rateLimit: rateLimit ?? base.rateLimit,
                acksLate: acksLate ?? base.acksLate,
                rejectOnWorkerLost: rejectOnWorkerLost ?? base.rejectOnWorkerLost,
                acksOnFailureOrTimeout: acksOnFailureOrTimeout ?? base.acksOnFailureOrTimeout
            )
        }

        /// Celery's defaults for what the `worker` section does not decide.
        public static let celeryDefaults = TaskSettings(
            maxRetries: 3,
            defaultRetryDelay: .seconds(180),
            retryBackoff: false,
            retryBackoffMax: .seconds(600),
            retryJitter: true,
            autoretry: false,
            acksOnFailureOrTimeout: true
        )
    }

    /// A rate limit as Celery writes it: `"10/s"`, `"100/m"`, `"5/h"`, or a bare number (per second).
    public struct RateLimit: Sendable, Equatable, CustomStringConvertible {
        public enum Unit: String, Sendable, CaseIterable {
            case second = "s"
            case minute = "m"
            case hour = "h"

            public var seconds: Double {
                switch self {
                case .second: 1
                case .minute: 60
                case .hour: 3600
                }
            }
        }

        /// How many tasks per ``unit``; always positive and finite.
        public var count: Double
        public var unit: Unit

        public init(count: Double, per unit: Unit) {
            self.count = count
            self.unit = unit
        }

        /// Reads `"10/s"`, `"0.5/m"`, `"5/h"` or `"10"` (per second); nil for anything else, zero and negatives.
        public init?(_ text: String) {
            let trimmed = text.trimmingWhitespace()
            let parts = trimmed.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count == 1 || parts.count == 2 else { return nil }
            let number = String(parts[0])
            guard !number.isEmpty, number.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }),
                let count = Double(number), count.isFinite, count > 0
            else { return nil }
            var unit = Unit.second
            if parts.count == 2 {
                guard let given = Unit(rawValue: String(parts[1])) else { return nil }
                unit = given
            }
            self.init(count: count, per: unit)
        }

        /// Tasks per second.
        public var perSecond: Double { count / unit.seconds }

        /// The spelling ``init(_:)`` reads back: `10/s`, `0.5/m`.
        public var description: String {
            let number =
                count == count.rounded() && count < 1e15 ? String(Int64(count)) : String(count)
            return "\(number)/\(unit.rawValue)"
        }
    }

    /// The name under `tasks` whose settings apply to every task (`tasks.defaults`).
    public static let taskDefaultsName = "defaults"

    /// The settings of task `name`, every property set: its own entry (exec or not), then `tasks.defaults`, then
    /// `worker.acks_late`/`worker.reject_on_worker_lost`, then Celery's defaults.
    public func resolvedTaskSettings(for name: String) -> TaskSettings {
        let own = tasks[name]?.settings ?? taskSettings[name] ?? TaskSettings()
        let fromWorker = TaskSettings(acksLate: worker.acksLate, rejectOnWorkerLost: worker.rejectOnWorkerLost)
        return own.overlaid(on: taskDefaults).overlaid(on: fromWorker).overlaid(on: TaskSettings.celeryDefaults)
    }

    /// Every task name with settings of its own (exec tasks and the others), in file order.
    public var taskNamesWithSettings: [String] {
        tasks.keys.filter { !(tasks[$0]?.settings.isEmpty ?? true) } + Array(taskSettings.keys)
    }
}
