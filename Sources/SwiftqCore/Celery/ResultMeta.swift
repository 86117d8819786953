import OrderedCollections

/// Celery's result meta: the JSON object the Redis result backend stores at `celery-task-meta-<id>` and publishes on
/// the channel of the same name (celery-wire-protocol.md §3.1, §3.2), built with Python's exact key order.
///
/// The order is that of `BaseBackend._get_result_meta` followed by `_store_result` (`celery/backends/base.py`):
/// `status`, `result`, `traceback`, `children`, `date_done`; then `group_id` when the request has a group and
/// `parent_id` when it has a parent; then, with `result_extended`, `name`, `args`, `kwargs`, `worker`, `retries`,
/// `queue` (and `stamped_headers` plus each stamp when the request carries stamps); and `task_id` last.
public enum ResultMeta {
    /// The request fields `result_extended = True` adds to a meta (§3.2). `nil` members are written as `null`.
    public struct ExtendedFields: Sendable, Equatable {
        /// `name`: the task name (`request.task`).
        public var name: String?
        /// `args`: the positional arguments.
        public var args: [JSONValue]?
        /// `kwargs`: the keyword arguments.
        public var kwargs: OrderedDictionary<String, JSONValue>?
        /// `worker`: the node name of the worker that ran the task, e.g. `celery@host`.
        public var worker: String?
        /// `retries`: the request's retry count.
        public var retries: Int?
        /// `queue`: the routing key the message was delivered with.
        public var queue: String?

        /// Creates the fields from their values.
        public init(
            name: String?,
            args: [JSONValue]?,
            kwargs: OrderedDictionary<String, JSONValue>?,
            worker: String?,
            retries: Int?,
            queue: String?
        ) {
            self.name = name
            self.args = args
            self.kwargs = kwargs
            self.worker = worker
            self.retries = retries
            self.queue = queue
        }

        /// The fields for `request` run by `worker` after delivery from `queue` (the envelope's routing key).
        public init(request: TaskMessage, worker: String, queue: String?) {
            self.init(
                name: request.name,
                args: request.args,
                kwargs: request.kwargs,
                worker: worker,
                retries: request.retries,
                queue: queue
            )
        }

        /// All `null`: what Python writes for a task it does not know, whose request is only a stub (see
        /// ``ResultMeta/notRegistered(taskID:taskName:dateDone:resultExtended:)``).
        public static let unknown = ExtendedFields(
            name: nil,
            args: nil,
            kwargs: nil,
            worker: nil,
            retries: nil,
            queue: nil
        )
    }

    /// The `SUCCESS` meta for a task that returned `result`.
    public static func success(
        taskID: String,
        result: JSONValue,
        dateDone: CeleryTimestamp,
        request: TaskMessage?,
        extended: ExtendedFields?,
        children: JSONValue = []
    ) -> JSONValue {
        meta(
            status: "SUCCESS",
            result: result,
            traceback: nil,
            children: children,
            dateDone: dateDone,
            request: request,
            extended: extended,
            taskID: taskID
        )
    }

    /// The `FAILURE` meta for a task that raised: `result` is the exception as Celery's JSON serializer encodes it,
    /// `{"exc_type": …, "exc_message": [args…], "exc_module": …}` (§3.4). `excMessage` is the exception's args
    /// (a list, trap 10); `excModule` `nil` is written as `null` and makes Python create the class on the fly.
    public static func failure(
        taskID: String,
        excType: String,
        excMessage: [JSONValue],
        excModule: String?,
        traceback: String?,
        dateDone: CeleryTimestamp,
        request: TaskMessage?,
        extended: ExtendedFields?,
        children: JSONValue = []
    ) -> JSONValue {
        meta(
            status: "FAILURE",
            result: exception(type: excType, message: excMessage, module: excModule),
            traceback: traceback,
            children: children,
            dateDone: dateDone,
            request: request,
            extended: extended,
            taskID: taskID
        )
    }

    /// The `STARTED` meta (stored only with `task_track_started`): `result` is `{"pid": …, "hostname": …}` and
    /// `date_done` is `null`, as for every state that is not ready. Python adds the extended fields to it too.
    public static func started(
        taskID: String,
        pid: Int,
        hostname: String,
        request: TaskMessage?,
        extended: ExtendedFields? = nil
    ) -> JSONValue {
        meta(
            status: "STARTED",
            result: ["pid": .int(Int64(pid)), "hostname": .string(hostname)],
            traceback: nil,
            children: [],
            dateDone: nil,
            request: request,
            extended: extended,
            taskID: taskID
        )
    }

    /// The `FAILURE` meta a Python worker stores for a task name it does not know, exactly as it stores it (§1.7):
    /// `{"exc_type": "NotRegistered", "exc_message": ["<name>"], "exc_module": "celery.exceptions"}`, no traceback,
    /// and never `group_id` or `parent_id`, because the request it passes is a stub (`on_unknown_task` in
    /// `celery/worker/consumer/consumer.py`). For the same reason, with `result_extended` every extended field is
    /// `null`, name included [live, captured in `result-notregistered-extended.json`].
    public static func notRegistered(
        taskID: String,
        taskName: String,
        dateDone: CeleryTimestamp,
        resultExtended: Bool
    ) -> JSONValue {
        failure(
            taskID: taskID,
            excType: "NotRegistered",
            excMessage: [.string(taskName)],
            excModule: "celery.exceptions",
            traceback: nil,
            dateDone: dateDone,
            request: nil,
            extended: resultExtended ? .unknown : nil
        )
    }

    /// An exception as Celery's JSON result serializer encodes it (§3.4).
    public static func exception(type: String, message: [JSONValue], module: String?) -> JSONValue {
        [
            "exc_type": .string(type),
            "exc_message": .array(message),
            "exc_module": module.map(JSONValue.string) ?? .null,
        ]
    }

    /// Assembles a meta in Python's key order; see the type documentation.
    public static func meta(
        status: String,
        result: JSONValue,
        traceback: String?,
        children: JSONValue,
        dateDone: CeleryTimestamp?,
        request: TaskMessage?,
        extended: ExtendedFields?,
        taskID: String
    ) -> JSONValue {
        var meta: OrderedDictionary<String, JSONValue> = [
            "status": .string(status),
            "result": result,
            "traceback": traceback.map(JSONValue.string) ?? .null,
            "children": children,
            "date_done": dateDone.map { .string($0.iso8601) } ?? .null,
        ]
        // Python tests truthiness: an empty group or parent id is left out like a missing one.
        if let group = request?.group, !group.isEmpty {
            meta["group_id"] = .string(group)
        }
        if let parentID = request?.parentID, !parentID.isEmpty {
            meta["parent_id"] = .string(parentID)
        }
        if let extended {
            meta["name"] = extended.name.map(JSONValue.string) ?? .null
            meta["args"] = extended.args.map(JSONValue.array) ?? .null
            meta["kwargs"] = extended.kwargs.map(JSONValue.object) ?? .null
            meta["worker"] = extended.worker.map(JSONValue.string) ?? .null
            meta["retries"] = extended.retries.map { .int(Int64($0)) } ?? .null
            meta["queue"] = extended.queue.map(JSONValue.string) ?? .null
            // Stamps (Celery's `stamped_headers`/`stamps` request fields): only when the stamps dict is not empty.
            if let headers = request?.headers, let stamps = headers["stamps"]?.objectValue, !stamps.isEmpty {
                let stampedHeaders = headers["stamped_headers"] ?? .null
                meta["stamped_headers"] = stampedHeaders
                let names = Set((stampedHeaders.arrayValue ?? []).compactMap(\.stringValue))
                for (name, value) in stamps where names.contains(name) {
                    meta[name] = value
                }
            }
        }
        meta["task_id"] = .string(taskID)
        return .object(meta)
    }
}
