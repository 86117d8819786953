import OrderedCollections

/// A kombu Redis envelope as popped from a queue list (celery-wire-protocol.md §2.1).
///
/// kombu's Redis transport stores each message as one JSON object:
///
/// ```json
/// {"body": "W1syLCAzXSwge30s…", "content-encoding": "utf-8", "content-type": "application/json",
///  "headers": {"lang": "py", "task": "tasks.add", "id": "…", …},
///  "properties": {"correlation_id": "…", "reply_to": "…", "delivery_mode": 2,
///                 "delivery_info": {"exchange": "", "routing_key": "celery"}, "priority": 0,
///                 "body_encoding": "base64", "delivery_tag": "…"}}
/// ```
///
/// ``decode(_:)`` reads that layer only: it decodes `body` from its `body_encoding` but leaves its content (content
/// type, compression, the task itself) to ``TaskMessage/decode(_:)``. The exact bytes are kept in ``raw``, because
/// the `unacked` hash must hold the envelope exactly as popped for kombu's restore to work (§2.2, §2.6).
public struct RedisEnvelope: Sendable, Equatable {
    /// The exact bytes as popped: what goes into `unacked` as `[envelope, exchange, routing_key]`.
    public var raw: [UInt8]
    /// `content-type` (with a hyphen, unlike AMQP): `application/json` from Celery's default serializer (§1.1).
    public var contentType: String?
    /// `content-encoding`: `utf-8`, or `binary` for raw bytes bodies (§1.1).
    public var contentEncoding: String?
    /// `headers`: the task headers for protocol 2 (§1.2), empty for protocol 1. `[:]` when absent or null.
    ///
    /// A decoded envelope keeps them as text (``headerObject``): this decodes them at each read.
    public var headers: OrderedDictionary<String, JSONValue> {
        get { headerObject.members }
        set {
            headerObject = LazyJSONObject(newValue)
            knownHeaders = KnownHeaderValues(newValue)
        }
    }
    /// The headers, as text while nothing has read them.
    package private(set) var headerObject: LazyJSONObject
    /// The headers the task decoder reads, found when the envelope was decoded.
    private(set) var knownHeaders: KnownHeaderValues
    /// `properties`: `correlation_id`, `reply_to`, `delivery_mode`, `delivery_info`, `priority`, `body_encoding`,
    /// `delivery_tag` and whatever else the producer put there (§2.1). `[:]` when absent or null.
    public var properties: OrderedDictionary<String, JSONValue>
    /// The body, decoded: base64-decoded when `properties.body_encoding` is `base64` (every Python producer),
    /// otherwise the UTF-8 of the `body` string.
    public var body: [UInt8]
    /// `properties.delivery_tag`: a UUID string per publish, the key of the `unacked` hash (§2.1).
    public var deliveryTag: String?
    /// `properties.delivery_info.exchange`; `""` (the anonymous exchange, as Python publishes tasks) when absent.
    public var exchange: String
    /// `properties.delivery_info.routing_key`: the queue name for tasks published to exchange `""`.
    public var routingKey: String
    /// `properties.priority`, 0 when absent or not a number (as kombu's `_get_message_priority` falls back). On Redis
    /// 0 is the *highest* priority (§2.4); see ``listKey(queue:priority:)``.
    public var priority: Int
    /// Whether kombu restored the message after a consumer failed to ack it: `headers.redelivered` or
    /// `properties.delivery_info.redelivered` is `true` (§2.6).
    public var redelivered: Bool

    /// Creates an envelope from its parts; ``decode(_:)`` is the usual way to get one.
    public init(
        raw: [UInt8],
        contentType: String?,
        contentEncoding: String?,
        headers: OrderedDictionary<String, JSONValue>,
        properties: OrderedDictionary<String, JSONValue>,
        body: [UInt8],
        deliveryTag: String?,
        exchange: String,
        routingKey: String,
        priority: Int,
        redelivered: Bool
    ) {
        self.raw = raw
        self.contentType = contentType
        self.contentEncoding = contentEncoding
        self.headerObject = LazyJSONObject(headers)
        self.knownHeaders = KnownHeaderValues(headers)
        self.properties = properties
        self.body = body
        self.deliveryTag = deliveryTag
        self.exchange = exchange
        self.routingKey = routingKey
        self.priority = priority
        self.redelivered = redelivered
    }
}

// MARK: - Decoding

extension RedisEnvelope {
    /// Decodes one list element.
    ///
    /// - Throws: ``MessageDecodingError`` with `.notJSON` (not JSON at all), `.badEnvelope` (not an object, or
    ///   `body`, `headers`, `properties`, `content-type`, `content-encoding` or `delivery_info` of the wrong type) or
    ///   `.badBodyEncoding` (invalid base64, or a `body_encoding` kombu does not know). The task id and name are
    ///   filled in from the headers when they can be read.
    public static func decode(_ bytes: some Collection<UInt8>) throws(MessageDecodingError) -> RedisEnvelope {
        let raw = Array(bytes)
        // The body is only delimited by the parser: a base64 body is decoded from the envelope's own bytes, without
        // a `String` of it first (the largest member, and the only one read just once).
        let value: JSONValue
        let bodyText: ArraySlice<UInt8>?
        let headersText: ArraySlice<UInt8>?
        // The headers are validated and read in the same pass, without a dictionary (they stay text).
        var knownHeaders = KnownHeaderValues([:])
        do {
            let parsed = try JSONValue.parsing(raw, deferring: deferredMembers, visitingMembersOf: "headers") {
                knownHeaders.record($0, $1)
            }
            (value, bodyText, headersText) = (parsed.value, parsed.raw["body"], parsed.raw["headers"])
        } catch {
            throw MessageDecodingError(.notJSON, "envelope is not JSON: \(error)")
        }
        guard case .object(let envelope) = value else {
            throw MessageDecodingError(.badEnvelope, "envelope must be a JSON object, got \(value.typeName)")
        }

        let headerObject: LazyJSONObject
        (headerObject, knownHeaders) = try headers(headersText, known: knownHeaders)
        // From here on errors can name the task, if the headers say which it is.
        let context = TaskNaming(knownHeaders)
        let properties = try object(envelope["properties"], "properties", context: context)
        let contentType = try string(envelope["content-type"], "content-type", context: context)
        let contentEncoding = try string(envelope["content-encoding"], "content-encoding", context: context)
        let deliveryInfo = try object(properties["delivery_info"], "properties.delivery_info", context: context)
        let deliveryTag = try string(properties["delivery_tag"], "properties.delivery_tag", context: context)

        // The body string's UTF-8: its text in the envelope when that needs no unescaping (every base64 body),
        // else the string the JSON text stands for.
        let bodyUTF8: ArraySlice<UInt8>
        if let bodyText, bodyText.count >= 2, bodyText.first == UInt8(ascii: "\""),
            !bodyText.contains(UInt8(ascii: "\\"))
        {
            bodyUTF8 = bodyText.dropFirst().dropLast()
        } else {
            let member: JSONValue?
            do {
                member = try bodyText.map { (text) throws(JSONParseError) in try JSONValue(parsing: text) }
            } catch {
                throw MessageDecodingError(.notJSON, "envelope is not JSON: \(error)")
            }
            guard case .string(let text)? = member else {
                throw MessageDecodingError(
                    .badEnvelope,
                    "envelope \"body\" must be a string, got \(member?.typeName ?? "nothing")",
                    taskID: context.id,
                    taskName: context.name
                )
            }
            bodyUTF8 = Array(text.utf8)[...]
        }
        let body: [UInt8]
        switch properties["body_encoding"] {
        case nil, .null?:
            body = Array(bodyUTF8)
        case .string("base64")?:
            do {
                body = try Base64.decode(bodyUTF8)
            } catch {
                throw MessageDecodingError(
                    .badBodyEncoding,
                    "body is not valid base64: \(error.message)",
                    taskID: context.id,
                    taskName: context.name
                )
            }
        case .string(let encoding)? where encoding.lowercased() == "utf-8":
            // kombu's decode_body passes utf-8 bodies through unchanged.
            body = Array(bodyUTF8)
        case let other?:
            throw MessageDecodingError(
                .badBodyEncoding,
                "unknown body_encoding \(other.jsonString) (kombu knows base64 and utf-8)",
                taskID: context.id,
                taskName: context.name
            )
        }

        let priority: Int
        switch properties["priority"] {
        case .int(let number)?: priority = Int(clamping: number)
        case .double(let number)? where number.isFinite && abs(number) < 1e15: priority = Int(number)
        default: priority = 0
        }

        var decoded = RedisEnvelope(
            raw: raw,
            contentType: contentType,
            contentEncoding: contentEncoding,
            headers: [:],
            properties: properties,
            body: body,
            deliveryTag: deliveryTag,
            exchange: deliveryInfo["exchange"]?.stringValue ?? "",
            routingKey: deliveryInfo["routing_key"]?.stringValue ?? "",
            priority: priority,
            redelivered: knownHeaders[.redelivered] == .bool(true) || deliveryInfo["redelivered"] == .bool(true)
        )
        decoded.headerObject = headerObject
        decoded.knownHeaders = knownHeaders
        return decoded
    }

    /// The members that the first parse only delimits: the body (decoded from its text), and the headers (read by
    /// ``headers(_:)``).
    private static let deferredMembers = ["body", "headers"]

    /// The `headers` member from its text (nil when absent) and what the parse found in it (`known`): an object is
    /// kept as text (the parse validated it); `null` is no headers; anything else is a `.badEnvelope`.
    private static func headers(
        _ text: ArraySlice<UInt8>?,
        known: KnownHeaderValues
    ) throws(MessageDecodingError) -> (LazyJSONObject, KnownHeaderValues) {
        guard let text else { return (LazyJSONObject(), KnownHeaderValues([:])) }
        if text.first == UInt8(ascii: "{") { return (LazyJSONObject(validatedText: text), known) }
        let member: JSONValue
        do {
            member = try JSONValue(parsing: text)
        } catch {
            throw MessageDecodingError(.notJSON, "envelope is not JSON: \(error)")
        }
        let members = try object(member, "headers", context: TaskNaming(KnownHeaderValues([:])))
        return (LazyJSONObject(members), KnownHeaderValues(members))
    }

    /// The task an error names, from the headers.
    private struct TaskNaming {
        var id: String?
        var name: String?

        init(_ known: KnownHeaderValues) {
            id = known[.id]?.stringValue
            name = known[.task]?.stringValue
        }
    }

    private static func object(
        _ value: JSONValue?,
        _ name: String,
        context: TaskNaming
    ) throws(MessageDecodingError) -> OrderedDictionary<String, JSONValue> {
        switch value {
        case nil, .null?: return [:]
        case .object(let members)?: return members
        case let other?:
            throw MessageDecodingError(
                .badEnvelope,
                "envelope \"\(name)\" must be an object, got \(other.typeName)",
                taskID: context.id,
                taskName: context.name
            )
        }
    }

    private static func string(
        _ value: JSONValue?,
        _ name: String,
        context: TaskNaming
    ) throws(MessageDecodingError) -> String? {
        switch value {
        case nil, .null?: return nil
        case .string(let text)?: return text
        case let other?:
            throw MessageDecodingError(
                .badEnvelope,
                "envelope \"\(name)\" must be a string, got \(other.typeName)",
                taskID: context.id,
                taskName: context.name
            )
        }
    }
}

// MARK: - Priority lists

extension RedisEnvelope {
    /// kombu's separator between a queue name and its priority bucket: `"\x06\x16"` (§2.2).
    public static let prioritySeparator = "\u{06}\u{16}"

    /// kombu's default `priority_steps`: the buckets a priority falls into (§2.4).
    public static let prioritySteps = [0, 3, 6, 9]

    /// The Redis list a message of `priority` is pushed to: priority is clamped to 0...9 and put in the highest
    /// step not above it, so 0–2 → `queue`, 3–5 → `queue\x06\x163`, 6–8 → `…6`, 9 → `…9` (kombu's
    /// `_get_message_priority` and `_q_for_pri`; §2.4). On Redis a *lower* number is served first.
    public static func listKey(queue: String, priority: Int) -> String {
        let clamped = min(max(priority, 0), 9)
        let step = prioritySteps.last { $0 <= clamped } ?? 0
        return step == 0 ? queue : queue + prioritySeparator + String(step)
    }

    /// The list keys a consumer of `queues` passes to `BRPOP`, in kombu's order: bucket first, then queue
    /// (`q1 q2 q1\x06\x163 q2\x06\x163 …`; §2.4).
    public static func listKeys(consuming queues: [String]) -> [String] {
        prioritySteps.flatMap { step in queues.map { step == 0 ? $0 : $0 + prioritySeparator + String(step) } }
    }
}
