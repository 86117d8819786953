import OrderedCollections
import SwiftqCore

/// The failed task a new-style errback is called for: Celery's `(request, exc, traceback)` arguments of an errback
/// declared as `def on_error(request, exc, traceback, *args)`.
///
/// A Python worker calls such an errback in its own process, with the failed task's request; a worker cannot hand a
/// Python request object to another process, so swiftq sends every errback as a task message (Celery's old-style
/// form, `args = [failed task id] + the errback's args`) and adds what the new-style form needs in the message's
/// ``headerName`` header. A handler registered with ``TaskRegistry/registerErrback(_:handler:)`` gets it back as a
/// `FailedTask`. For a chord whose header failed, `id` and `name` are the chord body's and the exception is Celery's
/// `ChordError`, as Celery's `chord_error_from_stack` calls the body's errbacks.
public struct FailedTask: Sendable, Equatable {
    /// The message header carrying the failed task (a JSON object: ``json``).
    public static let headerName = "swiftq_failed_task"

    /// The failed task's id (Celery's `request.id`) and name (`request.task`; nil when unknown).
    public var id: String
    public var name: String?
    /// Its arguments (`request.args`, `request.kwargs`).
    public var args: [JSONValue]
    public var kwargs: OrderedDictionary<String, JSONValue>
    /// Its root, parent and group (`request.root_id`, `parent_id`, `group`).
    public var rootID: String?
    public var parentID: String?
    public var group: String?
    /// The exception it failed with (Celery's `exc`) and its traceback text (`traceback`; nil when none, as for a
    /// chord's `ChordError`).
    public var exception: TaskFailure
    public var traceback: String?

    /// Creates a failed task.
    public init(
        id: String,
        name: String?,
        args: [JSONValue] = [],
        kwargs: OrderedDictionary<String, JSONValue> = [:],
        exception: TaskFailure,
        traceback: String? = nil
    ) {
        self.id = id
        self.name = name
        self.args = args
        self.kwargs = kwargs
        self.exception = exception
        self.traceback = traceback
    }

    /// The header's value: Celery's request field names, the exception as Celery encodes it in results
    /// (`exc_type`, `exc_message`, `exc_module`).
    public var json: JSONValue {
        var exc: OrderedDictionary<String, JSONValue> = [
            "exc_type": .string(exception.type),
            "exc_message": .array(exception.arguments ?? [.string(exception.message)]),
            "exc_module": .string(exception.module),
        ]
        if exception.arguments == nil, exception.message.isEmpty { exc["exc_message"] = [] }
        return Self.json(
            id: id,
            name: name,
            args: args,
            kwargs: kwargs,
            rootID: rootID,
            parentID: parentID,
            group: group,
            exception: .object(exc),
            traceback: traceback
        )
    }

    /// The header's value for a failed task whose exception is already in Celery's encoding (`exception`, as the
    /// worker has it from the failed result): the one writer of the fields that ``init(json:)`` reads back, used by
    /// ``json`` and by the worker that publishes the errbacks.
    package static func json(
        id: String,
        name: String?,
        args: [JSONValue],
        kwargs: OrderedDictionary<String, JSONValue>,
        rootID: String?,
        parentID: String?,
        group: String?,
        exception: JSONValue,
        traceback: String?
    ) -> JSONValue {
        [
            "id": .string(id),
            "task": name.map(JSONValue.string) ?? .null,
            "args": .array(args),
            "kwargs": .object(kwargs),
            "root_id": rootID.map(JSONValue.string) ?? .null,
            "parent_id": parentID.map(JSONValue.string) ?? .null,
            "group": group.map(JSONValue.string) ?? .null,
            "exc": exception,
            "traceback": traceback.map(JSONValue.string) ?? .null,
        ]
    }

    /// The failed task from the header's value; nil when it is not one (no id or no exception).
    public init?(json: JSONValue) {
        guard let id = json["id"]?.stringValue, let exc = json["exc"], exc.objectValue != nil else { return nil }
        let arguments: [JSONValue]
        switch exc["exc_message"] {
        case .array(let items)?: arguments = items
        case nil, .null?: arguments = []
        case let other?: arguments = [other]
        }
        var exception = TaskFailure(
            type: exc["exc_type"]?.stringValue ?? "Exception",
            message: arguments.map { $0.stringValue ?? $0.description }.joined(separator: ", "),
            module: exc["exc_module"]?.stringValue ?? "builtins"
        )
        exception.arguments = arguments
        self.init(
            id: id,
            name: json["task"]?.stringValue,
            args: json["args"]?.arrayValue ?? [],
            kwargs: json["kwargs"]?.objectValue ?? [:],
            exception: exception,
            traceback: json["traceback"]?.stringValue
        )
        rootID = json["root_id"]?.stringValue
        parentID = json["parent_id"]?.stringValue
        group = json["group"]?.stringValue
    }
}

/// A new-style errback: the failed task, then the errback's own call (its args without the failed task's id).
public typealias TaskErrbackHandler = @Sendable (FailedTask, TaskInvocation, TaskEnvironment) throws -> JSONValue

extension TaskRegistry {
    /// Registers a new-style errback under `name`: Celery's `@app.task def on_error(request, exc, traceback, *args)`
    /// linked with `link_error`. The handler gets the failed task (``FailedTask``) and an invocation whose `args` are
    /// the errback signature's own (the failed task's id that the message carries first is taken off). A message
    /// without the ``FailedTask/headerName`` header (sent by a Python worker, which sends only the id) fails with
    /// Python's `TypeError` for the missing `exc` and `traceback`, as a Python worker fails it.
    public mutating func registerErrback(_ name: String, handler: @escaping TaskErrbackHandler) {
        register(name) { invocation, environment in
            guard let header = invocation.request.headers?[FailedTask.headerName],
                let failed = FailedTask(json: header)
            else {
                throw TaskFailure.typeError(
                    "\(name)() missing 2 required positional arguments: 'exc' and 'traceback' "
                        + "(called with the failed task's id only)"
                )
            }
            var own = invocation
            if own.args.first?.stringValue == failed.id { own.args.removeFirst() }
            return try handler(failed, own, environment)
        }
    }
}
