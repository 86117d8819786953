import OrderedCollections

/// `Codable` support, so a `JSONValue` can be a field of other `Codable` types (configuration, YAML, ...).
///
/// This path goes through the generic `Encoder`/`Decoder` model and inherits its limits: decoders do not report key
/// order (Foundation's `JSONDecoder` does not), and many cannot tell `1` from `1.0` (a float with an integral value
/// may come back as ``int(_:)``). Use `JSONValue(parsing:)` and ``serialized()`` where exactness matters.
extension JSONValue: Codable {
    /// Decodes `null`, then tries `Bool`, `Int64`, `Double` and `String`, then a keyed container (object), then an
    /// unkeyed container (array).
    public init(from decoder: any Decoder) throws {
        if let container = try? decoder.singleValueContainer() {
            if container.decodeNil() {
                self = .null
                return
            }
            if let value = try? container.decode(Bool.self) {
                self = .bool(value)
                return
            }
            if let value = try? container.decode(Int64.self) {
                self = .int(value)
                return
            }
            if let value = try? container.decode(Double.self) {
                self = .double(value)
                return
            }
            if let value = try? container.decode(String.self) {
                self = .string(value)
                return
            }
        }
        if let container = try? decoder.container(keyedBy: MemberKey.self) {
            var members = OrderedDictionary<String, JSONValue>()
            for key in container.allKeys {
                members[key.stringValue] = try container.decode(JSONValue.self, forKey: key)
            }
            self = .object(members)
            return
        }
        var container = try decoder.unkeyedContainer()
        var elements: [JSONValue] = []
        while !container.isAtEnd {
            elements.append(try container.decode(JSONValue.self))
        }
        self = .array(elements)
    }

    /// Encodes each case as the matching JSON type. A ``bigInt(_:)`` is encoded as a string holding its exact digits,
    /// because encoders have no arbitrary-precision integer type and a `Double` would silently lose digits.
    public func encode(to encoder: any Encoder) throws {
        switch self {
        case .null:
            var container = encoder.singleValueContainer()
            try container.encodeNil()
        case .bool(let value):
            var container = encoder.singleValueContainer()
            try container.encode(value)
        case .int(let value):
            var container = encoder.singleValueContainer()
            try container.encode(value)
        case .bigInt(let text):
            var container = encoder.singleValueContainer()
            try container.encode(text)
        case .double(let value):
            var container = encoder.singleValueContainer()
            try container.encode(value)
        case .string(let value):
            var container = encoder.singleValueContainer()
            try container.encode(value)
        case .array(let elements):
            var container = encoder.unkeyedContainer()
            for element in elements {
                try container.encode(element)
            }
        case .object(let members):
            var container = encoder.container(keyedBy: MemberKey.self)
            for (key, value) in members {
                try container.encode(value, forKey: MemberKey(stringValue: key))
            }
        }
    }
}

/// A coding key for arbitrary object member names.
private struct MemberKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }

    init(stringValue: String) {
        self.stringValue = stringValue
    }

    init?(intValue: Int) {
        self.stringValue = String(intValue)
    }
}
