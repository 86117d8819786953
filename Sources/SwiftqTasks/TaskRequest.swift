import OrderedCollections
import SwiftqCore

/// What a task knows of the message that started it: Celery's `self.request` for Swift tasks (``TaskInvocation/request``).
///
/// The fields carry Celery's names in ``json`` (`root_id`, `parent_id`, `group`, `group_index`, `hostname`, `eta`,
/// `expires`, `reply_to`, `correlation_id`, `origin`, `delivery_info`, `time_limit`, `soft_time_limit`, `headers`,
/// `properties`, `chord`), which is also how the consumer hands them to the pool child. The id, name and retries are ``TaskInvocation``'s own.
public struct TaskRequest: Sendable, Equatable {
    /// The first task of the workflow this one belongs to (`root_id`; its own id when it was sent by a client).
    public var rootID: String?
    /// The task that sent this one (`parent_id`), nil when a client sent it.
    public var parentID: String?
    /// The group it is a member of (`group`), and its place in it (`group_index`).
    public var group: String?
    public var groupIndex: Int?
    /// The node name of the worker running it (`hostname`, e.g. `celery@host`).
    public var hostname: String?
    /// `eta` and `expires` as ISO 8601 text, as Celery's request shows them.
    public var eta: String?
    public var expires: String?
    /// The client's reply queue (`reply_to`) and the message's `correlation_id`.
    public var replyTo: String?
    public var correlationID: String?
    /// The node that sent it (`origin`).
    public var origin: String?
    /// Where the message came from, as Celery's `delivery_info`: `exchange` and `routing_key` it was published with,
    /// its `priority` (null when none), whether it was `redelivered`, and swiftq's `queue` (the queue it was consumed
    /// from).
    public var deliveryInfo: OrderedDictionary<String, JSONValue>
    /// The time limits it runs under, in seconds (nil: none).
    public var timeLimit: Double?
    public var softTimeLimit: Double?
    /// The message's custom headers (`headers`): those the client added, e.g. `apply_async(headers={...})` or stamps,
    /// without Celery's own (`id`, `task`, `eta`, `retries`, …), as Celery's `self.request.headers`; nil when there
    /// are none.
    public var headers: OrderedDictionary<String, JSONValue>?
    /// The message properties as the broker delivered them (`properties`: kombu's names, e.g. `app_id`,
    /// `priority`, `correlation_id`, `reply_to`), as Celery's `self.request.properties`; empty outside a worker.
    public var properties: OrderedDictionary<String, JSONValue> = [:]
    /// How many replacements led to this task (`replaced_task_nesting`): 0 for a task nobody replaced, 1 for the
    /// replacement of such a task (``TaskReplace``), and so on.
    public var replacedTaskNesting = 0
    /// The body of the chord this task is a header member of (`chord`, Celery's signature dict), nil otherwise.
    public var chord: JSONValue?

    /// The header names Celery's request keeps to itself (its `Context` fields and the protocol's own), which
    /// ``headers`` leaves out.
    public static let celeryHeaderNames: Set<String> = [
        "args", "argsrepr", "callbacks", "called_directly", "chain", "chord", "compression", "correlation_id",
        "delivery_info", "errbacks", "eta", "expires", "group", "group_index", "headers", "hostname", "id",
        "ignore_result", "is_eager", "kwargs", "kwargsrepr", "lang", "logfile", "loglevel", "origin", "parent_id",
        "properties", "replaced_task_nesting", "reply_to", "retries", "root_id", "shadow", "soft_time_limit",
        "stamped_headers", "stamps", "task", "taskset", "time_limit", "timelimit", "utc",
    ]

    /// The custom headers of a message's `headers`, as ``headers`` holds them (nil when none is left).
    public static func customHeaders(
        _ headers: OrderedDictionary<String, JSONValue>
    ) -> OrderedDictionary<String, JSONValue>? {
        // Most messages carry only Celery's own headers: no filtered copy for them.
        guard headers.keys.contains(where: { !celeryHeaderNames.contains($0) }) else { return nil }
        return headers.filter { !celeryHeaderNames.contains($0.key) }
    }

    /// An empty request (a task run outside a worker).
    public init() {
        deliveryInfo = [:]
    }

    /// The request from its JSON form (unknown fields are ignored).
    public init(json: JSONValue) {
        rootID = json["root_id"]?.stringValue
        parentID = json["parent_id"]?.stringValue
        group = json["group"]?.stringValue
        groupIndex = json["group_index"]?.intValue.map { Int(clamping: $0) }
        hostname = json["hostname"]?.stringValue
        eta = json["eta"]?.stringValue
        expires = json["expires"]?.stringValue
        replyTo = json["reply_to"]?.stringValue
        correlationID = json["correlation_id"]?.stringValue
        origin = json["origin"]?.stringValue
        deliveryInfo = json["delivery_info"]?.objectValue ?? [:]
        timeLimit = json["time_limit"]?.doubleValue
        softTimeLimit = json["soft_time_limit"]?.doubleValue
        headers = json["headers"]?.objectValue
        properties = json["properties"]?.objectValue ?? [:]
        replacedTaskNesting = json["replaced_task_nesting"]?.intValue.map { Int(clamping: $0) } ?? 0
        if let chord = json["chord"], !chord.isNull { self.chord = chord }
    }

    /// ``json``'s compact text (``JSONValue/serialized()``'s bytes) appended to `buffer` without building the object:
    /// the consumer writes one for every task it hands to a pool child.
    package func serializeJSON(into buffer: inout [UInt8]) {
        // The names are plain ASCII constants: copied as they are, not escaped through a JSON string each time.
        func field(_ name: StaticString, _ value: JSONValue, first: Bool = false) {
            buffer.append(first ? UInt8(ascii: "{") : UInt8(ascii: ","))
            buffer.append(UInt8(ascii: "\""))
            buffer.append(contentsOf: UnsafeBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount))
            buffer.append(UInt8(ascii: "\""))
            buffer.append(UInt8(ascii: ":"))
            value.serialize(into: &buffer)
        }
        func text(_ value: String?) -> JSONValue { value.map(JSONValue.string) ?? .null }
        field("root_id", text(rootID), first: true)
        field("parent_id", text(parentID))
        field("group", text(group))
        field("group_index", groupIndex.map { .int(Int64($0)) } ?? .null)
        field("hostname", text(hostname))
        field("eta", text(eta))
        field("expires", text(expires))
        field("reply_to", text(replyTo))
        field("correlation_id", text(correlationID))
        field("origin", text(origin))
        field("delivery_info", .object(deliveryInfo))
        field("time_limit", timeLimit.map(JSONValue.double) ?? .null)
        field("soft_time_limit", softTimeLimit.map(JSONValue.double) ?? .null)
        field("headers", headers.map(JSONValue.object) ?? .null)
        field("replaced_task_nesting", .int(Int64(replacedTaskNesting)))
        field("properties", .object(properties))
        // Only chord header tasks have one: most requests leave it out.
        if let chord { field("chord", chord) }
        buffer.append(UInt8(ascii: "}"))
    }

    /// The request with Celery's field names; absent fields are null (as on Celery's request), but `chord` is left
    /// out when there is none.
    public var json: JSONValue {
        func text(_ value: String?) -> JSONValue { value.map(JSONValue.string) ?? .null }
        var object: OrderedDictionary<String, JSONValue> = [
            "root_id": text(rootID), "parent_id": text(parentID), "group": text(group),
            "group_index": groupIndex.map { .int(Int64($0)) } ?? .null, "hostname": text(hostname), "eta": text(eta),
            "expires": text(expires), "reply_to": text(replyTo), "correlation_id": text(correlationID),
            "origin": text(origin), "delivery_info": .object(deliveryInfo),
            "time_limit": timeLimit.map(JSONValue.double) ?? .null,
            "soft_time_limit": softTimeLimit.map(JSONValue.double) ?? .null,
            "headers": headers.map(JSONValue.object) ?? .null,
            "replaced_task_nesting": .int(Int64(replacedTaskNesting)), "properties": .object(properties),
        ]
        if let chord { object["chord"] = chord }
        return .object(object)
    }
}
