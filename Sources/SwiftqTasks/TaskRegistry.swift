import OrderedCollections
import SwiftqCore

#if canImport(Glibc)
import Glibc
#endif

/// One call of a task, as a pool child sees it.
public struct TaskInvocation: Sendable {
    /// The task id (Celery's `id` header).
    public var id: String
    /// The registered task name, e.g. `swiftq.add`.
    public var name: String
    /// Positional arguments.
    public var args: [JSONValue]
    /// Keyword arguments, in the order the client gave them.
    public var kwargs: OrderedDictionary<String, JSONValue>
    /// How many times the task has been retried so far (Celery's `self.request.retries`).
    public var retries: Int
    /// The rest of Celery's `self.request`: root and parent ids, group, hostname, delivery info, … (empty when the
    /// task runs outside a worker).
    ///
    /// Built only when a task reads it (most tasks never do): a prefork child asks the consumer for it the first
    /// time and keeps it; each read decodes or builds a copy, so a task that reads it often keeps one
    /// (`let request = invocation.request`).
    public var request: TaskRequest {
        get { requestSource.request }
        set { requestSource = .decoded(newValue) }
    }
    /// Where ``request`` comes from.
    package var requestSource = TaskRequest.Source.decoded(TaskRequest())
    /// What the task asked the worker to do besides returning (``apply(_:)``, ``addToChord(_:)``,
    /// ``storeResult(id:state:result:traceback:)``): shared by every copy of this invocation, performed by the worker
    /// before the task's own result.
    public let effects = TaskEffects()

    /// Creates an invocation.
    public init(
        id: String,
        name: String,
        args: [JSONValue] = [],
        kwargs: OrderedDictionary<String, JSONValue> = [:],
        retries: Int = 0
    ) {
        self.id = id
        self.name = name
        self.args = args
        self.kwargs = kwargs
        self.retries = retries
    }
}

/// What a task raises to fail: an exception as Celery stores it, so a Python client re-raises it with
/// the same type and message (`exc_type`, `exc_message`, `exc_module` in the result meta).
public struct TaskFailure: Error, Equatable, Sendable, CustomStringConvertible {
    /// The exception's class name, e.g. `ValueError`.
    public var type: String
    /// The message.
    public var message: String
    /// The exception's Python module (`builtins` for Python's own exceptions; Celery recreates a class
    /// of that name when the module cannot be imported).
    public var module: String
    /// A traceback text, when there is something more useful than the message.
    public var traceback: String?
    /// The exception's arguments as the result stores them (`exc_message`), when they are not the one string
    /// ``message`` (billiard's `TimeLimitExceeded` carries the limit as a number).
    public var arguments: [JSONValue]?

    /// Creates a failure.
    public init(type: String, message: String, module: String = "builtins", traceback: String? = nil) {
        self.type = type
        self.message = message
        self.module = module
        self.traceback = traceback
    }

    /// Python's `TypeError`, as raised for a wrong call signature.
    public static func typeError(_ message: String) -> TaskFailure {
        TaskFailure(type: "TypeError", message: message)
    }

    /// Python's `ValueError`.
    public static func valueError(_ message: String) -> TaskFailure {
        TaskFailure(type: "ValueError", message: message)
    }

    /// billiard's `SoftTimeLimitExceeded()`, for a task stopped at its soft time limit (a Python task gets it raised
    /// where it is; Celery stores it with no arguments).
    public static var softTimeLimitExceeded: TaskFailure {
        var failure = TaskFailure(
            type: "SoftTimeLimitExceeded",
            message: "SoftTimeLimitExceeded()",
            module: "billiard.exceptions"
        )
        failure.arguments = []
        return failure
    }

    /// Celery's `NotRegistered`, for a task name no handler is registered under.
    public static func notRegistered(_ name: String) -> TaskFailure {
        TaskFailure(type: "NotRegistered", message: "'\(name)'", module: "celery.exceptions")
    }

    /// billiard's `TimeLimitExceeded(seconds)` (what `celery.exceptions.TimeLimitExceeded` names), for a task
    /// killed at its hard time limit; Celery stores the limit as the exception's one argument.
    public static func timeLimitExceeded(seconds: Double) -> TaskFailure {
        let argument: JSONValue =
            seconds == seconds.rounded() && abs(seconds) < 1e15 ? .int(Int64(seconds)) : .double(seconds)
        var failure = TaskFailure(
            type: "TimeLimitExceeded",
            message: "TimeLimitExceeded(\(String(decoding: argument.serialized(), as: UTF8.self)))",
            module: "billiard.exceptions"
        )
        failure.arguments = [argument]
        return failure
    }

    public var description: String { "\(type): \(message)" }
}

/// What a task may ask of the pool child that runs it.
public struct TaskEnvironment: Sendable {
    /// Sleeps up to `duration`, returning early (false) when the process is being told to go away:
    /// a task's sleeps should go through this, so shutdown and parent death are never delayed by them.
    public var sleep: @Sendable (Duration) -> Bool
    /// When the soft time limit passes (nil: none). A task checks ``isPastSoftTimeLimit`` and stops, as a Celery task
    /// gets `SoftTimeLimitExceeded`; sleeps end there; async tasks are cancelled then.
    public var softDeadline: ContinuousClock.Instant?

    /// Creates an environment.
    public init(sleep: @escaping @Sendable (Duration) -> Bool, softDeadline: ContinuousClock.Instant? = nil) {
        self.sleep = sleep
        self.softDeadline = softDeadline
    }

    /// Whether the soft time limit has passed.
    public var isPastSoftTimeLimit: Bool {
        softDeadline.map { ContinuousClock.now >= $0 } ?? false
    }

    /// An environment whose sleep is a plain sleep (for running handlers outside a pool child).
    public static let standalone = TaskEnvironment { duration in
        let deadline = ContinuousClock.now + duration
        while ContinuousClock.now < deadline {
            let left = ContinuousClock.now.duration(to: deadline)
            let (seconds, attoseconds) = left.components
            var request = timespec(tv_sec: Int(seconds), tv_nsec: Int(attoseconds / 1_000_000_000))
            _ = nanosleep(&request, nil)
        }
        return true
    }
}

/// A task handler: JSON in, JSON out; throwing ``TaskFailure`` (or any error) fails the task.
public typealias TaskHandler = @Sendable (TaskInvocation, TaskEnvironment) throws -> JSONValue

/// The tasks a worker binary can run, by name.
///
/// The stock `swiftqd` registers the built-in `swiftq.*` tasks; a user's own daemon binary builds a
/// registry with its handlers and passes it to ``SwiftqDaemon/main(registry:)``, the way Celery's
/// `-A proj` loads an app. Registration happens before the daemon starts, so the registry is immutable
/// while processes run (every pool child re-executes the binary and builds the same registry).
public struct TaskRegistry: Sendable {
    private var handlers: [String: TaskHandler] = [:]

    /// An empty registry.
    public init() {}

    /// A registry holding the built-in `swiftq.*` tasks.
    public static var builtIn: TaskRegistry {
        var registry = TaskRegistry()
        BuiltInTasks.register(into: &registry)
        return registry
    }

    /// Registers `handler` under `name`, replacing an earlier one.
    public mutating func register(_ name: String, handler: @escaping TaskHandler) {
        handlers[name] = handler
    }

    /// The names registered, sorted, with Celery's built-in `celery.map`, `celery.starmap` (see
    /// `TaskRegistry+Map.swift`) and `celery.accumulate`, which a registration under the same name replaces.
    public var names: [String] { Set(handlers.keys).union(Self.celeryBuiltInNames).sorted() }

    /// Whether `name` is registered (Celery's `celery.map`, `celery.starmap` and `celery.accumulate` always are).
    public func contains(_ name: String) -> Bool { handlers[name] != nil || Self.celeryBuiltInNames.contains(name) }

    /// Celery's built-in tasks every registry has.
    static var celeryBuiltInNames: Set<String> { mapTaskNames.union([accumulateTaskName]) }

    /// Runs a task; an unknown name fails with Celery's `NotRegistered`. Errors that are not
    /// ``TaskFailure`` are reported with their Swift type name.
    /// A retry request is reported as Celery's `Retry` exception; ``execute(_:environment:)`` tells it apart.
    public func run(_ invocation: TaskInvocation, environment: TaskEnvironment) -> Result<JSONValue, TaskFailure> {
        switch execute(invocation, environment: environment) {
        case .success(let value): .success(value)
        case .failure(let failure): .failure(failure)
        case .retry(let retry):
            .failure(TaskFailure(type: "Retry", message: retry.description, module: "celery.exceptions"))
        case .reject(let reject):
            .failure(TaskFailure(type: "Reject", message: reject.reason, module: "celery.exceptions"))
        case .ignore:
            .success(.null)
        case .replace:
            // Outside a worker there is nobody to send the replacement: Celery's `Ignore`.
            .failure(TaskFailure(type: "Ignore", message: "Replaced by new task", module: "celery.exceptions"))
        }
    }

    func handler(named name: String) -> TaskHandler? {
        handlers[name] ?? mapHandler(named: name) ?? accumulateHandler(named: name)
    }
}
