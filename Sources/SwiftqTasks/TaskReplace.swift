import OrderedCollections
import SwiftqCore

/// A Celery signature as it travels in messages: `{"task", "args", "kwargs", "options", "subtask_type",
/// "immutable"}` (Celery's `Signature` dict). Build the one a task is replaced with (``TaskReplace``):
///
/// ```swift
/// let steps = TaskSignature.chain([
///     TaskSignature("proj.fetch", args: [url]),
///     TaskSignature("proj.parse"),
/// ])
/// throw TaskReplace(steps)
/// ```
public struct TaskSignature: Sendable, Equatable {
    /// The task name (`celery.chain`, `celery.group`, `celery.chord` for the canvas types).
    public var task: String
    public var args: [JSONValue]
    public var kwargs: OrderedDictionary<String, JSONValue>
    /// `apply_async` options (`queue`, `countdown`, `link`, `link_error`, `task_id`, …).
    public var options: OrderedDictionary<String, JSONValue>
    /// `chain`, `group`, `chord`; nil for a plain task.
    public var subtaskType: String?
    /// Whether the parent's result is left out of its args (Celery's `.si()`).
    public var immutable: Bool

    /// A plain task signature (Celery's `task.s(*args, **kwargs)`, `.si()` with `immutable`).
    public init(
        _ task: String,
        args: [JSONValue] = [],
        kwargs: OrderedDictionary<String, JSONValue> = [:],
        options: OrderedDictionary<String, JSONValue> = [:],
        immutable: Bool = false
    ) {
        self.task = task
        self.args = args
        self.kwargs = kwargs
        self.options = options
        subtaskType = nil
        self.immutable = immutable
    }

    /// Celery's `chain(*tasks)`.
    public static func chain(_ tasks: [TaskSignature]) -> TaskSignature {
        var signature = TaskSignature("celery.chain", kwargs: ["tasks": .array(tasks.map(\.json))])
        signature.subtaskType = "chain"
        return signature
    }

    /// Celery's `group(*tasks)`.
    public static func group(_ tasks: [TaskSignature]) -> TaskSignature {
        var signature = TaskSignature("celery.group", kwargs: ["tasks": .array(tasks.map(\.json))])
        signature.subtaskType = "group"
        return signature
    }

    /// Celery's `chord(header, body)`.
    public static func chord(_ header: [TaskSignature], body: TaskSignature) -> TaskSignature {
        var signature = TaskSignature(
            "celery.chord",
            kwargs: ["header": group(header).json, "body": body.json, "kwargs": [:]]
        )
        signature.subtaskType = "chord"
        return signature
    }

    /// The signature read from Celery's dict form; nil when `json` is not an object with a `task` name.
    public init?(json: JSONValue) {
        guard let object = json.objectValue, let task = object["task"]?.stringValue else { return nil }
        self.task = task
        args = object["args"]?.arrayValue ?? []
        kwargs = object["kwargs"]?.objectValue ?? [:]
        options = object["options"]?.objectValue ?? [:]
        subtaskType = object["subtask_type"]?.stringValue
        immutable = object["immutable"]?.boolValue ?? false
    }

    /// Celery's dict form.
    public var json: JSONValue {
        [
            "task": .string(task), "args": .array(args), "kwargs": .object(kwargs), "options": .object(options),
            "subtask_type": subtaskType.map(JSONValue.string) ?? .null, "immutable": .bool(immutable),
        ]
    }

    /// Adds a callback (Celery's `link`).
    public mutating func link(_ callback: TaskSignature) { append(callback.json, to: "link") }

    /// Adds an errback (Celery's `link_error`).
    public mutating func linkError(_ errback: TaskSignature) { append(errback.json, to: "link_error") }

    private mutating func append(_ value: JSONValue, to option: String) {
        var list = options[option]?.arrayValue ?? options[option].map { $0.isNull ? [] : [$0] } ?? []
        list.append(value)
        options[option] = .array(list)
    }
}

/// Thrown by a task to be replaced by a signature: Celery's `raise self.replace(sig)`. The worker sends the
/// signature in the task's place, under the task's id (so whoever waits on the task gets the replacement's result),
/// with the task's callbacks, errbacks, chord, group and the rest of its chain carried over; the task itself stores
/// nothing. A group is made a chord with `celery.accumulate` as its body, so its result is the list of the group's
/// results. An empty chain, or a signature that is part of a chord, fails the task with `ImproperlyConfigured`.
///
/// ```swift
/// registry.register("shop.total") { invocation, _ in
///     throw TaskReplace(.group(invocation.args.map { TaskSignature("shop.price", args: [$0]) }))
/// }
/// ```
public struct TaskReplace: Error, Sendable, Equatable {
    /// The replacement, in Celery's signature dict form.
    public var signature: JSONValue

    public init(_ signature: TaskSignature) {
        self.signature = signature.json
    }

    /// A replacement given in Celery's dict form (e.g. a signature received as an argument).
    public init(json signature: JSONValue) {
        self.signature = signature
    }
}
