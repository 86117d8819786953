import OrderedCollections

/// Encodes `Encodable` values straight into ``JSONValue``, keeping what Foundation's `JSONEncoder` loses on the
/// way through text: a `Double` stays a number with a fraction (`7.0`, not `7`), so a Python client gets a
/// `float` where the Swift code returned one, and key order follows the encoding order.
public struct JSONValueEncoder {
    /// Creates an encoder.
    public init() {}

    /// Encodes `value`.
    public func encode<Value: Encodable>(_ value: Value) throws -> JSONValue {
        let root = Box()
        try value.encode(to: ValueEncoder(box: root, codingPath: []))
        return root.resolve()
    }
}

/// A slot that an encoding container fills, possibly after its parent container was created.
private final class Box {
    var value: JSONValue?
    var children: [Box] = []
    var keyed: OrderedDictionary<String, Box> = [:]
    var kind: Kind = .single

    enum Kind {
        case single
        case array
        case object
    }

    func resolve() -> JSONValue {
        switch kind {
        case .single: value ?? .null
        case .array: .array(children.map { $0.resolve() })
        case .object: .object(keyed.mapValues { $0.resolve() })
        }
    }
}

private struct ValueEncoder: Encoder {
    let box: Box
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        if box.kind != .object {
            box.kind = .object
            box.keyed = [:]
        }
        return KeyedEncodingContainer(KeyedContainer<Key>(box: box, codingPath: codingPath))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        box.kind = .array
        return UnkeyedContainer(box: box, codingPath: codingPath)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer {
        SingleContainer(box: box, codingPath: codingPath)
    }
}

/// Encodes one primitive or nested value into a box.
private func encodeValue<Value: Encodable>(_ value: Value, into box: Box, codingPath: [any CodingKey]) throws {
    switch value {
    case let json as JSONValue: box.value = json
    case let string as String: box.value = .string(string)
    case let bool as Bool: box.value = .bool(bool)
    case let double as Double: box.value = .double(double)
    case let float as Float: box.value = .double(Double(float))
    case let int as Int: box.value = .int(Int64(int))
    case let int as Int64: box.value = .int(int)
    case let int as Int32: box.value = .int(Int64(int))
    case let int as Int16: box.value = .int(Int64(int))
    case let int as Int8: box.value = .int(Int64(int))
    case let int as UInt: box.value = int <= UInt(Int64.max) ? .int(Int64(int)) : .bigInt(String(int))
    case let int as UInt64: box.value = int <= UInt64(Int64.max) ? .int(Int64(int)) : .bigInt(String(int))
    case let int as UInt32: box.value = .int(Int64(int))
    case let int as UInt16: box.value = .int(Int64(int))
    case let int as UInt8: box.value = .int(Int64(int))
    default:
        try value.encode(to: ValueEncoder(box: box, codingPath: codingPath))
        if box.kind != .single {
            box.value = box.resolve()
            box.kind = .single
        }
    }
}

private struct KeyedContainer<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let box: Box
    let codingPath: [any CodingKey]

    mutating func encodeNil(forKey key: Key) throws {
        box.keyed[key.stringValue] = leaf(.null)
    }

    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        let child = Box()
        try encodeValue(value, into: child, codingPath: codingPath + [key])
        box.keyed[key.stringValue] = child
    }

    mutating func nestedContainer<NestedKey: CodingKey>(
        keyedBy keyType: NestedKey.Type,
        forKey key: Key
    ) -> KeyedEncodingContainer<NestedKey> {
        let child = Box()
        child.kind = .object
        box.keyed[key.stringValue] = child
        return KeyedEncodingContainer(KeyedContainer<NestedKey>(box: child, codingPath: codingPath + [key]))
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        let child = Box()
        child.kind = .array
        box.keyed[key.stringValue] = child
        return UnkeyedContainer(box: child, codingPath: codingPath + [key])
    }

    mutating func superEncoder() -> any Encoder {
        let child = Box()
        box.keyed["super"] = child
        return ValueEncoder(box: child, codingPath: codingPath)
    }

    mutating func superEncoder(forKey key: Key) -> any Encoder {
        let child = Box()
        box.keyed[key.stringValue] = child
        return ValueEncoder(box: child, codingPath: codingPath + [key])
    }
}

private struct UnkeyedContainer: UnkeyedEncodingContainer {
    let box: Box
    let codingPath: [any CodingKey]
    var count: Int { box.children.count }

    mutating func encodeNil() throws {
        box.children.append(leaf(.null))
    }

    mutating func encode<T: Encodable>(_ value: T) throws {
        let child = Box()
        try encodeValue(value, into: child, codingPath: codingPath)
        box.children.append(child)
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<
        NestedKey
    > {
        let child = Box()
        child.kind = .object
        box.children.append(child)
        return KeyedEncodingContainer(KeyedContainer<NestedKey>(box: child, codingPath: codingPath))
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        let child = Box()
        child.kind = .array
        box.children.append(child)
        return UnkeyedContainer(box: child, codingPath: codingPath)
    }

    mutating func superEncoder() -> any Encoder {
        let child = Box()
        box.children.append(child)
        return ValueEncoder(box: child, codingPath: codingPath)
    }
}

private struct SingleContainer: SingleValueEncodingContainer {
    let box: Box
    let codingPath: [any CodingKey]

    mutating func encodeNil() throws { box.value = .null }

    mutating func encode<T: Encodable>(_ value: T) throws {
        try encodeValue(value, into: box, codingPath: codingPath)
    }
}

private func leaf(_ value: JSONValue) -> Box {
    let box = Box()
    box.value = value
    return box
}
