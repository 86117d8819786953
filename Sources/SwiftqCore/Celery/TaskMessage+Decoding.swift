import OrderedCollections

extension TaskMessage {
    /// The content types the worker accepts: Celery's default `accept_content = ['json']` (§1.1). Pickle, YAML and
    /// msgpack bodies are refused, as a Python worker with the default setting refuses them.
    public static let acceptedContentTypes: Set<String> = ["application/json"]

    /// The `compression` header values that mean a zlib stream: kombu registers zlib under `application/x-gzip` with
    /// the aliases `gzip` and `zlib` (`kombu/compression.py`; §1.5).
    public static let zlibCompressionNames: Set<String> = ["application/x-gzip", "gzip", "zlib"]

    /// The most bytes a compressed body may inflate to: 256 MiB, far above any real task body, yet low enough that a
    /// hostile body of a few kilobytes (zlib reaches ratios above 1000:1) cannot make the worker allocate gigabytes.
    public static let maximumInflatedBodySize = 256 << 20

    /// Decodes the task in an envelope.
    ///
    /// In order, as a Python worker does it (§1.6, §1.7):
    /// 1. The content type must be `application/json` (``acceptedContentTypes``), else `.contentDisallowed`.
    /// 2. A `compression` header of `application/x-gzip` (or `gzip`, `zlib`) inflates the body as a zlib stream;
    ///    any other compression is `.unsupportedCompression`, a stream that does not inflate `.badBodyEncoding`.
    /// 3. A `task` header makes it protocol 2. Without one, a body object with a `task` member is protocol 1, which
    ///    is refused with `.protocolV1` naming the task; anything else is `.notATask`.
    /// 4. The `task` and `id` headers must be strings (`.missingHeader`), the body JSON (`.notJSON`) of the form
    ///    `[args (list), kwargs (object), embed (object or null)]` (`.badBody`), and the optional headers of their
    ///    documented types (`.badHeader`; an `eta` or `expires` must parse as ISO 8601). Unknown headers are kept.
    ///
    /// Every error carries the task id and name once they are known, so the worker can store a `FAILURE` for them.
    public static func decode(_ envelope: RedisEnvelope) throws(MessageDecodingError) -> TaskMessage {
        try decode(
            contentType: envelope.contentType,
            headers: envelope.headerObject,
            known: envelope.knownHeaders,
            properties: envelope.properties,
            body: envelope.body,
            redelivered: envelope.redelivered
        )
    }

    /// Decodes a task from the parts every transport has, so a transport needs no Redis types: the content type and
    /// encoding, the headers, the properties under kombu's names (`correlation_id`, `reply_to`, `priority`,
    /// `delivery_mode`, …; only `correlation_id` and `reply_to` are read), the raw body (before decompression) and
    /// whether the broker redelivered it.
    ///
    /// The checks and their order are those of ``decode(_:)``, which calls this.
    public static func decode(
        contentType: String?,
        contentEncoding: String?,
        headers: OrderedDictionary<String, JSONValue>,
        properties: OrderedDictionary<String, JSONValue>,
        body rawBody: [UInt8],
        redelivered: Bool
    ) throws(MessageDecodingError) -> TaskMessage {
        try decode(
            contentType: contentType,
            headers: LazyJSONObject(headers),
            known: KnownHeaderValues(headers),
            properties: properties,
            body: rawBody,
            redelivered: redelivered
        )
    }

    /// ``decode(contentType:contentEncoding:headers:properties:body:redelivered:)`` with the headers the decoder reads
    /// found already (`known`), so that `headers` may stay text.
    private static func decode(
        contentType: String?,
        headers: LazyJSONObject,
        known: KnownHeaderValues,
        properties: OrderedDictionary<String, JSONValue>,
        body rawBody: [UInt8],
        redelivered: Bool
    ) throws(MessageDecodingError) -> TaskMessage {
        let context = HeaderReader(known: known)

        // The usual type first: compared, not hashed.
        guard let contentType, contentType == "application/json" || acceptedContentTypes.contains(contentType) else {
            let named = contentType.map { "content type \($0)" } ?? "a message without a content type"
            throw context.error(
                .contentDisallowed,
                "refusing \(named): only application/json is accepted (Celery's accept_content = ['json'])"
            )
        }
        let bodyBytes = try context.inflated(rawBody, compression: context.known[.compression])

        guard context.task != nil else {
            throw detectProtocolV1(bodyBytes)
        }
        // The reader already names the task in its errors when these are strings.
        let name = try context.requiredString("task", context.task)
        let id = try context.requiredString("id", context.id)

        let body: JSONValue
        do {
            body = try JSONValue(parsing: bodyBytes)
        } catch {
            throw context.error(.notJSON, "task body is not JSON: \(error)")
        }
        guard case .array(let parts) = body, parts.count == 3 else {
            let got = body.arrayValue.map { "an array of \($0.count) elements" } ?? body.typeName
            throw context.error(.badBody, "task body must be [args, kwargs, embed], got \(got)")
        }
        guard case .array(let args) = parts[0] else {
            throw context.error(.badBody, "task args (body[0]) must be a list, got \(parts[0].typeName)")
        }
        guard case .object(let kwargs) = parts[1] else {
            throw context.error(.badBody, "task kwargs (body[1]) must be an object, got \(parts[1].typeName)")
        }
        guard parts[2].isNull || parts[2].objectValue != nil else {
            throw context.error(.badBody, "task embed (body[2]) must be an object or null, got \(parts[2].typeName)")
        }

        // On Redis the exchange and routing key travel in the properties (kombu's `delivery_info`); an AMQP
        // transport sets them from the delivery.
        let deliveryInfo = properties["delivery_info"]
        let received = Received(
            properties: properties,
            exchange: deliveryInfo?["exchange"]?.stringValue,
            routingKey: deliveryInfo?["routing_key"]?.stringValue
        )
        // Arguments are evaluated in order: a message with several bad headers names the first of them, as before.
        // Built in the call that boxes it: a `Fields` made first and then boxed was copied and destroyed (two dozen
        // retains and releases per message).
        return TaskMessage(
            fields: Fields(
                id: id,
                name: name,
                shadow: try context.optionalString(.shadow),
                args: args,
                kwargs: kwargs,
                embed: parts[2],
                headers: headers,
                rootID: try context.optionalString(.rootID),
                parentID: try context.optionalString(.parentID),
                group: try context.optionalString(.group),
                groupIndex: try context.optionalInt(.groupIndex),
                eta: try context.optionalTimestamp(.eta),
                expires: try context.optionalTimestamp(.expires),
                retries: try context.optionalInt(.retries) ?? 0,
                timeLimit: try context.timeLimit(),
                argsRepr: try context.optionalString(.argsRepr),
                kwargsRepr: try context.optionalString(.kwargsRepr),
                origin: try context.optionalString(.origin),
                ignoreResult: try context.optionalBool(.ignoreResult),
                replyTo: properties["reply_to"]?.stringValue,
                correlationID: properties["correlation_id"]?.stringValue,
                redelivered: redelivered,
                wire: WireBody(bytes: bodyBytes),
                delivery: DeliveryDetails(value: received),
                deliveryCount: FoundDeliveryCount(value: known[.deliveryCount]?.intValue)
            )
        )
    }

    /// The error for a message without a `task` header: `.protocolV1` if the body is a protocol 1 task, else
    /// `.notATask` (or `.notJSON` when the body cannot even be read).
    private static func detectProtocolV1(_ body: [UInt8]) -> MessageDecodingError {
        let payload: JSONValue
        do {
            payload = try JSONValue(parsing: body)
        } catch {
            return MessageDecodingError(.notJSON, "message has no task header and its body is not JSON: \(error)")
        }
        guard let task = payload["task"] else {
            return MessageDecodingError(
                .notATask,
                "not a Celery task: no \"task\" header (protocol 2) and no \"task\" in the body (protocol 1)"
            )
        }
        let id = payload["id"]?.stringValue
        let name = task.stringValue
        return MessageDecodingError(
            .protocolV1,
            "task \(name ?? task.jsonString)[\(id ?? "no id")] uses Celery message protocol 1, which swiftq does not "
                + "support; send it with protocol 2 (task_protocol = 2, the default since Celery 4)",
            taskID: id,
            taskName: name
        )
    }
}

/// The protocol 2 headers the decoder reads, and those the worker reads for every task besides (`redelivered`, set by
/// kombu's restore; RabbitMQ's `x-delivery-count`).
enum KnownHeader: Int, CaseIterable {
    case id, task, compression, shadow, rootID, parentID, group, groupIndex, eta, expires, retries, timeLimit
    case argsRepr, kwargsRepr, origin, ignoreResult, redelivered, deliveryCount

    /// The header's name on the wire.
    var name: String { literal.description }

    /// ``name`` as a literal, to compare bytes with.
    var literal: StaticString {
        switch self {
        case .id: "id"
        case .task: "task"
        case .compression: "compression"
        case .shadow: "shadow"
        case .rootID: "root_id"
        case .parentID: "parent_id"
        case .group: "group"
        case .groupIndex: "group_index"
        case .eta: "eta"
        case .expires: "expires"
        case .retries: "retries"
        case .timeLimit: "timelimit"
        case .argsRepr: "argsrepr"
        case .kwargsRepr: "kwargsrepr"
        case .origin: "origin"
        case .ignoreResult: "ignore_result"
        case .redelivered: "redelivered"
        case .deliveryCount: "x-delivery-count"
        }
    }

    /// The header named `name`, if the decoder reads it: by length first, so that each name is compared with two
    /// or three others at most (small ASCII strings compare as integers; no hashing, and no table to look up: a
    /// table by length measured ~3k instructions more per message). The names are ``name``'s; the wrong-type tests
    /// cover each of them.
    init?(_ name: String) {
        let known: KnownHeader? =
            switch name.utf8.count {
            case 2: name == "id" ? .id : nil
            case 3: name == "eta" ? .eta : nil
            case 4: name == "task" ? .task : nil
            case 5: name == "group" ? .group : nil
            case 6: name == "shadow" ? .shadow : name == "origin" ? .origin : nil
            case 7: name == "root_id" ? .rootID : name == "retries" ? .retries : name == "expires" ? .expires : nil
            case 8: name == "argsrepr" ? .argsRepr : nil
            case 9: name == "parent_id" ? .parentID : name == "timelimit" ? .timeLimit : nil
            case 10: name == "kwargsrepr" ? .kwargsRepr : nil
            case 11:
                name == "group_index"
                    ? .groupIndex : name == "compression" ? .compression : name == "redelivered" ? .redelivered : nil
            case 13: name == "ignore_result" ? .ignoreResult : nil
            case 16: name == "x-delivery-count" ? .deliveryCount : nil
            default: nil
            }
        guard let known else { return nil }
        self = known
    }

    /// The header whose name is the UTF-8 `name`, if the decoder reads it: as ``init(_:)``, on the bytes of a key not
    /// made into a string (``KnownHeaderValues/record(_:_:)``).
    init?(utf8 name: UnsafeBufferPointer<UInt8>) {
        // Byte by byte against the name's literal: `elementsEqual` on a string's UTF-8 view cost ~400 instructions.
        func named(_ header: KnownHeader) -> KnownHeader? {
            let literal = header.literal
            guard literal.utf8CodeUnitCount == name.count else { return nil }
            let bytes = literal.utf8Start
            for index in 0..<name.count where name[index] != bytes[index] { return nil }
            return header
        }
        let known: KnownHeader? =
            switch name.count {
            case 2: named(.id)
            case 3: named(.eta)
            case 4: named(.task)
            case 5: named(.group)
            case 6: named(.shadow) ?? named(.origin)
            case 7: named(.rootID) ?? named(.retries) ?? named(.expires)
            case 8: named(.argsRepr)
            case 9: named(.parentID) ?? named(.timeLimit)
            case 10: named(.kwargsRepr)
            case 11: named(.groupIndex) ?? named(.compression) ?? named(.redelivered)
            case 13: named(.ignoreResult)
            case 16: named(.deliveryCount)
            default: nil
            }
        guard let known else { return nil }
        self = known
    }
}

/// The values of the ``KnownHeader``s in one message, found in one pass over its headers (a task's ~20 headers were
/// looked up one by one, a hash of each name: a tenth of the AMQP connection thread's time).
struct KnownHeaderValues: Sendable, Equatable {
    private var values: [JSONValue?]

    init(_ headers: OrderedDictionary<String, JSONValue>) {
        values = Array(repeating: nil, count: KnownHeader.allCases.count)
        for index in headers.keys.indices {
            guard let known = KnownHeader(headers.keys[index]) else { continue }
            values[known.rawValue] = headers.values[index]
        }
    }

    /// Takes one member of the headers as the envelope's parse hands it over
    /// (``JSONValue/parsing(_:deferring:visitingMembersOf:maxDepth:_:)``): a later value of a header replaces an
    /// earlier one, as in the dictionary the text decodes to; a nil name starts a new headers object, forgetting all.
    mutating func record(_ name: UnsafeBufferPointer<UInt8>?, _ value: JSONValue) {
        guard let name else {
            for index in values.indices { values[index] = nil }
            return
        }
        if let known = KnownHeader(utf8: name) { values[known.rawValue] = value }
    }

    subscript(header: KnownHeader) -> JSONValue? { values[header.rawValue] }
}

/// Reads typed protocol 2 headers, turning a wrong type into a `.badHeader` error that names the header and task.
private struct HeaderReader {
    let known: KnownHeaderValues
    /// The `id` and `task` headers (every error names them, and the decoder reads them too).
    var id: JSONValue? { known[.id] }
    var task: JSONValue? { known[.task] }
    var taskID: String? { id?.stringValue }
    var taskName: String? { task?.stringValue }

    init(known: KnownHeaderValues) {
        self.known = known
    }

    func error(_ code: MessageDecodingError.Code, _ message: String) -> MessageDecodingError {
        MessageDecodingError(code, message, taskID: taskID, taskName: taskName)
    }

    private func wrongType(_ name: String, _ expected: String, _ value: JSONValue) -> MessageDecodingError {
        error(.badHeader, "header \"\(name)\" must be \(expected), got \(value.typeName) \(value.jsonString)")
    }

    /// A required string header, `value` being what ``headers`` holds under `name`.
    func requiredString(_ name: String, _ value: JSONValue?) throws(MessageDecodingError) -> String {
        guard let value else {
            throw error(.missingHeader, "required header \"\(name)\" is missing")
        }
        guard case .string(let text) = value else {
            throw error(.missingHeader, "required header \"\(name)\" must be a string, got \(value.typeName)")
        }
        return text
    }

    func optionalString(_ header: KnownHeader) throws(MessageDecodingError) -> String? {
        switch known[header] {
        case nil, .null?: return nil
        case .string(let text)?: return text
        case let other?: throw wrongType(header.name, "a string or null", other)
        }
    }

    func optionalInt(_ header: KnownHeader) throws(MessageDecodingError) -> Int? {
        switch known[header] {
        case nil, .null?: return nil
        case .int(let number)?: return Int(number)
        case let other?: throw wrongType(header.name, "an integer or null", other)
        }
    }

    func optionalBool(_ header: KnownHeader) throws(MessageDecodingError) -> Bool? {
        switch known[header] {
        case nil, .null?: return nil
        case .bool(let flag)?: return flag
        case let other?: throw wrongType(header.name, "a boolean or null", other)
        }
    }

    func optionalTimestamp(_ header: KnownHeader) throws(MessageDecodingError) -> CeleryTimestamp? {
        guard let text = try optionalString(header) else { return nil }
        guard let timestamp = CeleryTimestamp(iso8601: text) else {
            throw error(
                .badHeader,
                "header \"\(header.name)\" is not an ISO 8601 time: \(JSONValue.string(text).jsonString)"
            )
        }
        return timestamp
    }

    /// `timelimit`: `[hard, soft]`, each a number or null; absent or null means no limits.
    func timeLimit() throws(MessageDecodingError) -> TaskMessage.TimeLimit {
        switch known[.timeLimit] {
        case nil, .null?:
            return TaskMessage.TimeLimit()
        case .array(let limits)? where limits.count == 2:
            func seconds(_ value: JSONValue) throws(MessageDecodingError) -> Double? {
                if value.isNull { return nil }
                guard let number = value.doubleValue else {
                    throw wrongType("timelimit", "[hard, soft] with numbers or nulls", .array(limits))
                }
                return number
            }
            return TaskMessage.TimeLimit(hard: try seconds(limits[0]), soft: try seconds(limits[1]))
        case let other?:
            throw wrongType("timelimit", "[hard, soft] with numbers or nulls", other)
        }
    }

    /// The body after the `compression` header is applied.
    func inflated(_ body: [UInt8], compression: JSONValue?) throws(MessageDecodingError) -> [UInt8] {
        switch compression {
        case nil, .null?:
            return body
        case .string(let name)? where TaskMessage.zlibCompressionNames.contains(name):
            do {
                return try Zlib.inflate(body, limit: TaskMessage.maximumInflatedBodySize)
            } catch {
                throw self.error(.badBodyEncoding, "body does not inflate as zlib (\(name)): \(error.message)")
            }
        case .string(let name)?:
            throw error(
                .unsupportedCompression,
                "body compression \(name) is not supported: only application/x-gzip (a zlib stream, what kombu "
                    + "sends for compression='zlib' or 'gzip') is"
            )
        case let other?:
            throw wrongType("compression", "a string", other)
        }
    }
}
