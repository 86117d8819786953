import SwiftqCore
import SwiftqPlatform
import SwiftqPool

/// How the machine treats the tasks of one name: retries, limits and acknowledgement, resolved from
/// `tasks.<name>` over `tasks.defaults` over Celery's defaults. `nil` acknowledgement settings fall back to the
/// worker's (``DeliveryMachine/Settings/acksLate``, ``DeliveryMachine/Settings/rejectOnWorkerLost``).
package struct TaskPolicy: Equatable, Sendable {
    package var maxRetries = 3
    /// Seconds.
    package var defaultRetryDelay = 180.0
    package var retryBackoff = false
    package var retryBackoffMax = 600.0
    package var retryJitter = true
    package var autoretry = false
    /// Seconds; the message's `timelimit` header wins.
    package var softTimeLimit: Double?
    package var timeLimit: Double?
    /// Tasks per second, or nil for no limit.
    package var rateLimit: Double?
    package var acksLate: Bool?
    package var rejectOnWorkerLost: Bool?
    package var acksOnFailureOrTimeout = true

    package init() {}

    /// The policy `settings` imply (unset keys: Celery's defaults; acknowledgement: the worker's).
    package init(_ settings: Configuration.TaskSettings) {
        let resolved = settings.overlaid(on: .celeryDefaults)
        maxRetries = resolved.maxRetries ?? maxRetries
        defaultRetryDelay = resolved.defaultRetryDelay?.seconds ?? defaultRetryDelay
        retryBackoff = resolved.retryBackoff ?? retryBackoff
        retryBackoffMax = resolved.retryBackoffMax?.seconds ?? retryBackoffMax
        retryJitter = resolved.retryJitter ?? retryJitter
        autoretry = resolved.autoretry ?? autoretry
        softTimeLimit = resolved.softTimeLimit?.seconds
        timeLimit = resolved.timeLimit?.seconds
        rateLimit = resolved.rateLimit?.perSecond
        acksLate = settings.acksLate
        rejectOnWorkerLost = settings.rejectOnWorkerLost
        acksOnFailureOrTimeout = resolved.acksOnFailureOrTimeout ?? acksOnFailureOrTimeout
    }

    /// How long a retry that names no countdown or ETA waits, after `retries` earlier retries: the
    /// `default_retry_delay`, or with `retry_backoff` Celery's exponential backoff (1 s × 2^retries, capped at
    /// `retry_backoff_max`) and, with `retry_jitter`, full jitter: a whole number of seconds drawn uniformly from 0
    /// to that value (`random` returns a number in 0..<1).
    package func retryDelay(retries: Int, random: () -> Double) -> Double {
        guard retryBackoff else { return defaultRetryDelay }
        var exponential = 1.0
        for _ in 0..<max(0, retries) {
            exponential *= 2
            if exponential >= retryBackoffMax { break }
        }
        exponential = min(exponential, retryBackoffMax)
        guard retryJitter else { return exponential }
        return min(exponential, (random() * (exponential + 1)).rounded(.down))
    }
}

package extension DeliveryMachine {
    /// The policy of task `name`: its own, else the defaults, with the runtime overrides (remote control's
    /// `rate_limit` and `time_limit`) on top.
    func policy(for name: String) -> TaskPolicy {
        // Asked several times per task: an empty dictionary is not asked (its lookup would hash the name).
        var policy = settings.defaultPolicy
        if !settings.policies.isEmpty, let own = settings.policies[name] { policy = own }
        if !overrides.isEmpty, let override = overrides[name] {
            if let rate = override.rateLimit { policy.rateLimit = rate > 0 ? rate : nil }
            if let limits = override.timeLimits {
                policy.softTimeLimit = limits.soft
                policy.timeLimit = limits.hard
            }
        }
        return policy
    }

    /// Whether task `name` is acked after it ran (per task, else `worker.acks_late`).
    func acksLate(_ name: String) -> Bool { policy(for: name).acksLate ?? settings.acksLate }

    /// Whether a task `name` whose child died goes back to the queue (per task, else the worker's setting).
    func rejectsOnWorkerLost(_ name: String) -> Bool {
        policy(for: name).rejectOnWorkerLost ?? settings.rejectOnWorkerLost
    }

    /// The soft and hard time limits of a message: its `timelimit` header, else its task's settings.
    func timeLimits(_ message: TaskMessage) -> (soft: Double?, hard: Double?) {
        let policy = policy(for: message.name)
        return (message.timeLimit.soft ?? policy.softTimeLimit, message.timeLimit.hard ?? policy.timeLimit)
    }

    /// Runtime changes of one task name's policy (remote control), kept across reloads of the configuration.
    struct PolicyOverride {
        /// Tasks per second; 0 removes the limit.
        var rateLimit: Double?
        var timeLimits: (soft: Double?, hard: Double?)?
    }

    /// Changes the time limits of task `name` from now on (Celery's `time_limit` control command); a message's own
    /// `timelimit` header still wins.
    mutating func setTimeLimits(task name: String, soft: Double?, hard: Double?) {
        overrides[name, default: PolicyOverride()].timeLimits = (soft, hard)
    }
}

package extension DeliveryMachine.Settings {
    /// The policies a configuration implies.
    mutating func applyTaskPolicies(_ configuration: Configuration) {
        defaultPolicy = TaskPolicy(configuration.taskDefaults)
        policies = [:]
        for name in configuration.taskNamesWithSettings {
            let own = configuration.tasks[name]?.settings ?? configuration.taskSettings[name] ?? .init()
            policies[name] = TaskPolicy(own.overlaid(on: configuration.taskDefaults))
        }
    }
}
