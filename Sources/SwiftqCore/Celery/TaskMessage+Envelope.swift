import OrderedCollections

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

extension TaskMessage {
    /// The protocol 2 headers Python 5.7's `as_task_v2` writes, in its order (celery-wire-protocol.md §1.2).
    public static let standardHeaderNames: [String] = [
        "lang", "task", "id", "shadow", "eta", "expires", "group", "group_index", "retries", "timelimit", "root_id",
        "parent_id", "argsrepr", "kwargsrepr", "origin", "ignore_result", "replaced_task_nesting", "stamped_headers",
        "stamps",
    ]

    /// Headers that describe one particular delivery rather than the task, so they are not copied into a new
    /// envelope: `compression` (the new body is not compressed) and `redelivered` (added by kombu on restore).
    static let deliveryHeaderNames: Set<String> = ["compression", "redelivered"]

    /// The envelope a Python 5.7 client would `LPUSH` for this message (§2.1, §2.3), as compact JSON: used by the
    /// Swift client and for retries.
    ///
    /// - Body: `[args, kwargs, embed]` as JSON, base64-encoded (`body_encoding: base64`), `content-type`
    ///   `application/json`, `content-encoding` `utf-8`.
    /// - Headers: ``standardHeaderNames`` in Python's order from the typed properties (`lang`, `stamps`,
    ///   `stamped_headers` and `replaced_task_nesting` from ``headers``, defaulting to `"py"`, `{}`, `null`, `0`;
    ///   `argsrepr`/`kwargsrepr` computed when `nil`), then every other header of ``headers`` in its order, except
    ///   `compression` and `redelivered`.
    /// - Properties: `correlation_id` (``correlationID`` or the id), `reply_to`, `delivery_mode` 2, `expiration`
    ///   (milliseconds until ``expires`` from `now`, as a string, only when it is set; clamped at 0), `delivery_info`
    ///   `{"exchange": "", "routing_key": queue}`, `priority`, `body_encoding`, `delivery_tag`.
    ///
    /// Push the result to ``RedisEnvelope/listKey(queue:priority:)``, not to `queue` itself, when `priority` is not
    /// in 0...2.
    public func redisEnvelope(
        queue: String,
        priority: Int = 0,
        replyTo: String?,
        deliveryTag: String = UUID().uuidString.lowercased(),
        now: CeleryTimestamp = .now
    ) -> [UInt8] {
        var properties: OrderedDictionary<String, JSONValue> = [
            "correlation_id": .string(correlationID ?? id),
            "reply_to": replyTo.map(JSONValue.string) ?? .null,
            "delivery_mode": 2,
        ]
        if let expires {
            let milliseconds = max(0, (expires.secondsSince1970 - now.secondsSince1970) * 1000)
            properties["expiration"] = .string(String(Int64(milliseconds.rounded(.towardZero))))
        }
        properties["delivery_info"] = ["exchange": "", "routing_key": .string(queue)]
        properties["priority"] = .int(Int64(priority))
        properties["body_encoding"] = "base64"
        properties["delivery_tag"] = .string(deliveryTag)

        let envelope: JSONValue = [
            "body": .string(Base64.encode(wireBody)),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": .object(wireHeaders(extra: [:])),
            "properties": .object(properties),
        ]
        return envelope.serialized()
    }

    /// The body as Python's JSON serializer writes it: `[args, kwargs, embed]` (§1.3). AMQP carries it as is (content
    /// type `application/json`, encoding `utf-8`); Redis base64-encodes it inside the envelope.
    public var wireBody: [UInt8] {
        JSONValue.array([.array(args), .object(kwargs), embed]).serialized()
    }

    /// The headers of an envelope for this message: see ``redisEnvelope(queue:priority:replyTo:deliveryTag:now:)``.
    /// `extra` headers come after those of ``headers`` and win over them. AMQP sends the same headers as a field table.
    public func wireHeaders(extra: OrderedDictionary<String, JSONValue> = [:]) -> OrderedDictionary<String, JSONValue> {
        // Read once: headers kept as text are decoded at each read.
        let headers = headers
        func given(_ name: String) -> JSONValue? {
            extra[name] ?? headers[name]
        }
        var wire: OrderedDictionary<String, JSONValue> = [
            "lang": given("lang") ?? "py",
            "task": .string(name),
            "id": .string(id),
            "shadow": Self.json(shadow),
            "eta": Self.json(eta?.iso8601),
            "expires": Self.json(expires?.iso8601),
            "group": Self.json(group),
            "group_index": groupIndex.map { .int(Int64($0)) } ?? .null,
            "retries": .int(Int64(retries)),
            "timelimit": [Self.json(timeLimit.hard), Self.json(timeLimit.soft)],
            "root_id": Self.json(rootID),
            "parent_id": Self.json(parentID),
            "argsrepr": .string(argsRepr ?? PythonRepr.argsRepr(args)),
            "kwargsrepr": .string(kwargsRepr ?? PythonRepr.repr(.object(kwargs))),
            "origin": Self.json(origin),
            "ignore_result": ignoreResult.map(JSONValue.bool) ?? .null,
            "replaced_task_nesting": given("replaced_task_nesting") ?? 0,
            "stamped_headers": given("stamped_headers") ?? .null,
            "stamps": given("stamps") ?? [:],
        ]
        for (key, value) in headers where wire[key] == nil && !Self.deliveryHeaderNames.contains(key) {
            wire[key] = extra[key] ?? value
        }
        for (key, value) in extra where wire[key] == nil && !Self.deliveryHeaderNames.contains(key) {
            wire[key] = value
        }
        return wire
    }

    private static func json(_ text: String?) -> JSONValue {
        text.map(JSONValue.string) ?? .null
    }

    /// A time limit as Python sends it: an int when whole (`[30, 20]`), else a float.
    private static func json(_ seconds: Double?) -> JSONValue {
        guard let seconds else { return .null }
        if seconds.rounded() == seconds, abs(seconds) < 9.0e15 {
            return .int(Int64(seconds))
        }
        return .double(seconds)
    }
}
