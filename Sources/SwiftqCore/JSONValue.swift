import OrderedCollections

/// A JSON document value, as exchanged with Celery (task args, kwargs and results) and over the control socket.
///
/// The representation is chosen so that a value received from Python and sent back is *exactly* what Python
/// produced, not merely something equivalent:
///
/// - Integers and floats are distinct cases. `1` parses as ``int(_:)`` and `1.0` or `1e0` as ``double(_:)``, so a
///   task echoing its argument never turns a Python `int` into a `float` (or the reverse).
/// - Python integers are unbounded. Integers that do not fit `Int64` are kept as their exact decimal text in
///   ``bigInt(_:)`` instead of being rounded to a `Double`.
/// - Python dictionaries are ordered, so objects are stored in an `OrderedDictionary` and serialized in the order
///   their keys were first seen.
/// - Python's `json` module writes `NaN`, `Infinity` and `-Infinity` for non-finite floats; the parser accepts them
///   and the serializer writes them back.
///
/// Parse with `JSONValue(parsing:)` and serialize with ``serialized()``, ``serialize(into:)`` or ``jsonString``. `Codable` conformance exists so the value can be embedded in other
/// `Codable` types, but it is subject to the limits of whichever encoder or decoder is used.
///
/// ## Equality
///
/// Equality is structural and stricter than Python's `==`: `.int(1)` is not equal to `.double(1.0)`, objects compare
/// their keys *in order*, and `.double(.nan)` is equal to itself (so the type obeys the `Hashable` laws).
/// `.double(0.0)` and `.double(-0.0)` are equal, as they are for `Double`, although they serialize differently.
/// Strings and keys compare with Swift `String` semantics (Unicode canonical equivalence).
public enum JSONValue: Sendable {
    /// JSON `null` (Python `None`).
    case null
    /// JSON `true` or `false`.
    case bool(Bool)
    /// An integer that fits `Int64`. Numbers without a fraction or exponent always parse to this case when they fit.
    case int(Int64)
    /// An integer outside the `Int64` range, kept as its exact decimal text, for example
    /// `"-123456789012345678901234567890"`.
    ///
    /// The parser only produces this case for values that do not fit `Int64`, and the text is always a valid JSON
    /// integer (optional `-`, no leading zeros). When constructing it yourself, keep to the same form: the text is
    /// written to the output verbatim.
    case bigInt(String)
    /// A number written with a fraction or an exponent (`1.0`, `1e3`), or one of Python's `NaN`, `Infinity`,
    /// `-Infinity`.
    case double(Double)
    /// A string.
    case string(String)
    /// An array.
    case array([JSONValue])
    /// An object whose keys keep their insertion order.
    case object(OrderedDictionary<String, JSONValue>)
}

// MARK: - Accessors

extension JSONValue {
    /// The payload of a ``string(_:)`` value; `nil` for every other case.
    public var stringValue: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    /// The payload of an ``int(_:)`` value; `nil` for every other case.
    ///
    /// Doubles are not converted, even when integral: a value the sender wrote as a float is not an integer.
    public var intValue: Int64? {
        if case .int(let value) = self { return value }
        return nil
    }

    /// The numeric value as a `Double`: the payload of ``double(_:)``, or an integer (``int(_:)`` or ``bigInt(_:)``)
    /// converted to the nearest `Double`. `nil` for non-numbers.
    public var doubleValue: Double? {
        switch self {
        case .double(let value): return value
        case .int(let value): return Double(value)
        case .bigInt(let text): return Double(text)
        default: return nil
        }
    }

    /// The payload of a ``bool(_:)`` value; `nil` for every other case.
    public var boolValue: Bool? {
        if case .bool(let value) = self { return value }
        return nil
    }

    /// The elements of an ``array(_:)`` value; `nil` for every other case.
    public var arrayValue: [JSONValue]? {
        if case .array(let value) = self { return value }
        return nil
    }

    /// The members of an ``object(_:)`` value; `nil` for every other case.
    public var objectValue: OrderedDictionary<String, JSONValue>? {
        if case .object(let value) = self { return value }
        return nil
    }

    /// Whether the value is ``null``.
    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }

    /// The member named `key` of an object; `nil` if the value is not an object or has no such member.
    public subscript(key: String) -> JSONValue? {
        if case .object(let members) = self { return members[key] }
        return nil
    }

    /// The element at `index` of an array; `nil` if the value is not an array or `index` is out of bounds.
    public subscript(index: Int) -> JSONValue? {
        if case .array(let elements) = self, elements.indices.contains(index) { return elements[index] }
        return nil
    }

    /// The JSON type name for error messages: `"null"`, `"boolean"`, `"integer"` (both ``int(_:)`` and
    /// ``bigInt(_:)``), `"number"`, `"string"`, `"array"` or `"object"`.
    public var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "boolean"
        case .int, .bigInt: return "integer"
        case .double: return "number"
        case .string: return "string"
        case .array: return "array"
        case .object: return "object"
        }
    }
}

// MARK: - Equatable, Hashable

extension JSONValue: Hashable {
    /// Structural equality; see "Equality" in the type documentation. NaN is equal to NaN.
    public static func == (lhs: JSONValue, rhs: JSONValue) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): return true
        case (.bool(let left), .bool(let right)): return left == right
        case (.int(let left), .int(let right)): return left == right
        case (.bigInt(let left), .bigInt(let right)): return left == right
        case (.double(let left), .double(let right)): return left == right || (left.isNaN && right.isNaN)
        case (.string(let left), .string(let right)): return left == right
        case (.array(let left), .array(let right)): return left == right
        case (.object(let left), .object(let right)): return left == right
        default: return false
        }
    }

    public func hash(into hasher: inout Hasher) {
        switch self {
        case .null:
            hasher.combine(0 as UInt8)
        case .bool(let value):
            hasher.combine(1 as UInt8)
            hasher.combine(value)
        case .int(let value):
            hasher.combine(2 as UInt8)
            hasher.combine(value)
        case .bigInt(let text):
            hasher.combine(3 as UInt8)
            hasher.combine(text)
        case .double(let value):
            hasher.combine(4 as UInt8)
            // All NaNs are equal, so they must hash alike whatever their payload.
            hasher.combine(value.isNaN ? .nan : value)
        case .string(let value):
            hasher.combine(5 as UInt8)
            hasher.combine(value)
        case .array(let elements):
            hasher.combine(6 as UInt8)
            hasher.combine(elements)
        case .object(let members):
            hasher.combine(7 as UInt8)
            hasher.combine(members)
        }
    }
}

// MARK: - Literals

extension JSONValue: ExpressibleByNilLiteral {
    public init(nilLiteral: ()) {
        self = .null
    }
}

extension JSONValue: ExpressibleByBooleanLiteral {
    public init(booleanLiteral value: Bool) {
        self = .bool(value)
    }
}

extension JSONValue: ExpressibleByIntegerLiteral {
    public init(integerLiteral value: Int64) {
        self = .int(value)
    }
}

extension JSONValue: ExpressibleByFloatLiteral {
    public init(floatLiteral value: Double) {
        self = .double(value)
    }
}

extension JSONValue: ExpressibleByStringLiteral {
    public init(stringLiteral value: String) {
        self = .string(value)
    }
}

extension JSONValue: ExpressibleByArrayLiteral {
    public init(arrayLiteral elements: JSONValue...) {
        self = .array(elements)
    }
}

extension JSONValue: ExpressibleByDictionaryLiteral {
    /// Builds an object in literal order. A repeated key keeps its first position and takes its last value, as in
    /// Python.
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        var members = OrderedDictionary<String, JSONValue>(minimumCapacity: elements.count)
        for (key, value) in elements {
            members[key] = value
        }
        self = .object(members)
    }
}

// MARK: - Description

extension JSONValue: CustomStringConvertible {
    /// The compact JSON text, as produced by ``jsonString``.
    public var description: String {
        jsonString
    }
}
