import OrderedCollections
import SwiftqCore

/// Thrown by a task to be run again later: Celery's `self.retry()`. The worker republishes the message with the
/// same id and `retries + 1`, stores `RETRY`, and acks the original; past the task's `max_retries` the task fails
/// instead, with ``cause`` or, without one, Celery's `MaxRetriesExceededError`.
///
/// ```swift
/// registry.register("shop.sync") { invocation, _ in
///     guard try remoteIsUp() else { throw TaskRetry(countdown: 30, cause: .init(type: "ConnectionError", message: "down")) }
///     return "synced"
/// }
/// ```
public struct TaskRetry: Error, Sendable, Equatable, CustomStringConvertible {
    /// Seconds to wait before the next run; `nil`: the task's `default_retry_delay` (or its backoff).
    public var countdown: Double?
    /// When to run next (wins over ``countdown``).
    public var eta: CeleryTimestamp?
    /// Overrides the task's `max_retries` for this decision.
    public var maxRetries: Int?
    /// Why (Celery's `exc`): stored with `RETRY`, and the failure once the retries are used up.
    public var cause: TaskFailure?
    /// The positional and keyword arguments of the next run (Celery's `retry(args=…, kwargs=…)`); nil keeps this
    /// run's. Each replaces its counterpart whole: Celery also drops inherited arguments that clash with new ones by
    /// reading the Python function's parameters, which a Swift task does itself when it needs that.
    public var args: [JSONValue]?
    public var kwargs: OrderedDictionary<String, JSONValue>?

    public init(
        countdown: Double? = nil,
        eta: CeleryTimestamp? = nil,
        maxRetries: Int? = nil,
        cause: TaskFailure? = nil,
        args: [JSONValue]? = nil,
        kwargs: OrderedDictionary<String, JSONValue>? = nil
    ) {
        self.countdown = countdown
        self.eta = eta
        self.maxRetries = maxRetries
        self.cause = cause
        self.args = args
        self.kwargs = kwargs
    }

    public var description: String {
        if let eta { return "Retry at \(eta.iso8601)" }
        if let countdown { return "Retry in \(PythonRepr.repr(.double(countdown)))s" }
        return "Retry"
    }
}

/// Thrown by a task to refuse its message: Celery's `Reject(reason, requeue)`. With `requeue` the message goes back
/// to its queue; without, it is rejected (dropped, or dead-lettered by the broker) and FAILURE `Reject` is stored,
/// as Celery 5.7 does.
public struct TaskReject: Error, Sendable, Equatable {
    public var reason: String
    public var requeue: Bool

    public init(_ reason: String = "", requeue: Bool = false) {
        self.reason = reason
        self.requeue = requeue
    }
}

/// Thrown by a task to end without a result: Celery's `Ignore`. The message is acked and nothing is stored.
public struct TaskIgnore: Error, Sendable, Equatable {
    public init() {}
}

/// What one run of a task came to.
public enum TaskResult: Sendable, Equatable {
    case success(JSONValue)
    case failure(TaskFailure)
    /// The task asked to be retried (``TaskRetry``, an exec program's exit code 75).
    case retry(TaskRetry)
    /// The task refused its message (``TaskReject``).
    case reject(TaskReject)
    /// The task ended without a result (``TaskIgnore``).
    case ignore
    /// The task asked to be replaced by a signature (``TaskReplace``), in Celery's dict form.
    case replace(JSONValue)
}

extension TaskRegistry {
    /// Runs a task like ``run(_:environment:)``, telling a retry request (a thrown ``TaskRetry``) apart.
    public func execute(_ invocation: TaskInvocation, environment: TaskEnvironment) -> TaskResult {
        guard let handler = handler(named: invocation.name) else {
            return .failure(.notRegistered(invocation.name))
        }
        do {
            return .success(try handler(invocation, environment))
        } catch let retry as TaskRetry {
            return .retry(retry)
        } catch let reject as TaskReject {
            return .reject(reject)
        } catch is TaskIgnore {
            return .ignore
        } catch let replace as TaskReplace {
            return .replace(replace.signature)
        } catch let failure as TaskFailure {
            return .failure(failure)
        } catch {
            return .failure(
                TaskFailure(type: String(describing: Swift.type(of: error)), message: "\(error)", module: "swiftq")
            )
        }
    }
}
