import OrderedCollections
import SwiftqCore
import SwiftqTasks

extension Canvas {
    /// What a new-style errback needs of the failed task (``FailedTask``): its id, name, arguments, root, parent,
    /// group, the exception as Celery encodes it (`exc_type`, `exc_message`, `exc_module`) and the traceback.
    package static func failedTask(
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

    /// The failed task of `message` (see ``failedTask(id:name:args:kwargs:rootID:parentID:group:exception:traceback:)``).
    package static func failedTask(_ message: TaskMessage, exception: JSONValue, traceback: String?) -> JSONValue {
        failedTask(
            id: message.id,
            name: message.name,
            args: message.args,
            kwargs: message.kwargs,
            rootID: message.rootID,
            parentID: message.parentID,
            group: message.group,
            exception: exception,
            traceback: traceback
        )
    }

    /// `errbacks` with the failed task in the ``FailedTask/headerName`` header of each plain task among them: a
    /// Python worker calls an errback taking `(request, exc, traceback)` in its own process with the failed request;
    /// swiftq publishes it like any errback, and a swiftq worker that registered it with
    /// `TaskRegistry.registerErrback` reads the failed task from there. Old-style errbacks ignore the header (a
    /// Python worker shows it in `self.request.headers`). Canvas errbacks (a chain, a group) are left as they are.
    static func carryingFailedTask(_ errbacks: [JSONValue], failed: JSONValue?) -> [JSONValue] {
        guard let failed else { return errbacks }
        return errbacks.map { errback in
            guard var object = errback.objectValue, Signature(errback)?.subtaskType == nil else { return errback }
            var options = object["options"]?.objectValue ?? [:]
            var headers = options["headers"]?.objectValue ?? [:]
            headers[FailedTask.headerName] = failed
            options["headers"] = .object(headers)
            object["options"] = .object(options)
            return .object(object)
        }
    }
}
