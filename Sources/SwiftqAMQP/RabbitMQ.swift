import CRabbitMQ
import OrderedCollections
import SwiftqCore

// The conversions between rabbitmq-c's C values (amqp_bytes_t, amqp_table_t, amqp_basic_properties_t, replies) and
// Swift values. Everything decoded here is copied at once: rabbitmq-c's decoded frames live in per-channel pools that
// are recycled after each event.

// MARK: - Bytes

extension amqp_bytes_t {
    /// A copy of the bytes.
    var array: [UInt8] {
        guard len > 0, let bytes else { return [] }
        return Array(UnsafeRawBufferPointer(start: bytes, count: len))
    }

    /// The bytes where they are, no copy: valid only as long as what holds them (the frame, the pool).
    var buffer: UnsafeBufferPointer<UInt8> {
        guard len > 0, let bytes else { return UnsafeBufferPointer(start: nil, count: 0) }
        return UnsafeBufferPointer(start: bytes.assumingMemoryBound(to: UInt8.self), count: len)
    }

    /// The bytes as UTF-8 text; invalid sequences are repaired (names, header keys and reply texts, never header
    /// values).
    var string: String {
        String(decoding: buffer, as: UTF8.self)
    }
}

/// A scratch pool for the C values of one call (a table to encode, the properties of a publish): every C string and
/// array built for the call is allocated in it and freed together when the call returns.
///
/// The corresponding C functions are `init_amqp_pool`, `amqp_pool_alloc` and `empty_amqp_pool`.
final class RabbitMQPool {
    private var pool = amqp_pool_t()

    init() {
        init_amqp_pool(&pool, 4096)
    }

    deinit {
        empty_amqp_pool(&pool)
    }

    /// A copy of `bytes` that lives as long as the pool. Never `amqp_cstring_bytes` on a Swift string: its pointer
    /// dies when the call that made it returns (PLATFORM-NOTES, "Dangling pointer trap").
    func bytes(_ bytes: some Collection<UInt8>) throws(AMQPError) -> amqp_bytes_t {
        let count = bytes.count
        guard count > 0 else { return amqp_empty_bytes }
        guard let memory = amqp_pool_alloc(&pool, count) else { throw Self.outOfMemory }
        let buffer = UnsafeMutableRawBufferPointer(start: memory, count: count)
        buffer.copyBytes(from: bytes)
        return amqp_bytes_t(len: count, bytes: memory)
    }

    func bytes(_ text: String) throws(AMQPError) -> amqp_bytes_t {
        try bytes(Array(text.utf8))
    }

    /// Uninitialized room for `count` values of `T` that lives as long as the pool.
    func allocate<T>(_ type: T.Type, count: Int) throws(AMQPError) -> UnsafeMutablePointer<T> {
        guard let memory = amqp_pool_alloc(&pool, MemoryLayout<T>.stride * max(count, 1)) else {
            throw Self.outOfMemory
        }
        return memory.bindMemory(to: T.self, capacity: max(count, 1))
    }

    /// The pool itself, for rabbitmq-c functions that allocate (`amqp_decode_table`).
    func withPool<R>(_ body: (UnsafeMutablePointer<amqp_pool_t>) throws(AMQPError) -> R) throws(AMQPError) -> R {
        try body(&pool)
    }

    private static var outOfMemory: AMQPError {
        AMQPError(
            .library(status: -1, message: "out of memory"),
            "rabbitmq-c pool allocation failed",
            isRecoverable: true
        )
    }
}

// MARK: - Field tables: C → JSONValue

/// The header key ``AMQPFieldTable`` uses for byte strings (`x` values, and `S` values that are not UTF-8).
let bytesKey = "__bytes__"

extension amqp_field_value_t {
    /// The value as JSON; see ``AMQPFieldTable`` for the mapping of each kind.
    func json(depth: Int = 0) throws(AMQPError) -> JSONValue {
        guard depth < 64 else {
            throw AMQPError(
                .protocolError("field table nested too deeply"),
                "field table nested more than 64 levels deep",
                isRecoverable: false
            )
        }
        switch Int32(kind) {
        case Int32(AMQP_FIELD_KIND_BOOLEAN.rawValue): return .bool(value.boolean != 0)
        case Int32(AMQP_FIELD_KIND_I8.rawValue): return .int(Int64(value.i8))
        case Int32(AMQP_FIELD_KIND_U8.rawValue): return .int(Int64(value.u8))
        case Int32(AMQP_FIELD_KIND_I16.rawValue): return .int(Int64(value.i16))
        case Int32(AMQP_FIELD_KIND_U16.rawValue): return .int(Int64(value.u16))
        case Int32(AMQP_FIELD_KIND_I32.rawValue): return .int(Int64(value.i32))
        case Int32(AMQP_FIELD_KIND_U32.rawValue): return .int(Int64(value.u32))
        case Int32(AMQP_FIELD_KIND_I64.rawValue): return .int(value.i64)
        // 'L': rabbitmq-c reads it as unsigned, but py-amqp writes (and reads) 'L' as *signed* 64 bits: the bit
        // pattern is the Python int.
        case Int32(AMQP_FIELD_KIND_U64.rawValue): return .int(Int64(bitPattern: value.u64))
        case Int32(AMQP_FIELD_KIND_F32.rawValue): return .double(Double(value.f32))
        case Int32(AMQP_FIELD_KIND_F64.rawValue): return .double(value.f64)
        case Int32(AMQP_FIELD_KIND_DECIMAL.rawValue):
            // The value is signed on the wire (RabbitMQ, py-amqp); rabbitmq-c stores it as uint32.
            let unscaled = Double(Int32(bitPattern: value.decimal.value))
            var scale = 1.0
            for _ in 0..<min(Int(value.decimal.decimals), 400) { scale *= 10 }
            return .double(unscaled / scale)
        case Int32(AMQP_FIELD_KIND_TIMESTAMP.rawValue): return .int(Int64(bitPattern: value.u64))
        case Int32(AMQP_FIELD_KIND_VOID.rawValue): return .null
        case Int32(AMQP_FIELD_KIND_UTF8.rawValue):
            if let text = String(validatingUTF8Bytes: value.bytes.buffer) { return .string(text) }
            return .object([bytesKey: .string(Base64.encode(value.bytes.array))])
        case Int32(AMQP_FIELD_KIND_BYTES.rawValue):
            return .object([bytesKey: .string(Base64.encode(value.bytes.array))])
        case Int32(AMQP_FIELD_KIND_ARRAY.rawValue):
            var items: [JSONValue] = []
            let array = value.array
            items.reserveCapacity(Int(max(array.num_entries, 0)))
            for index in 0..<Int(max(array.num_entries, 0)) {
                guard let entries = array.entries else { break }
                items.append(try entries[index].json(depth: depth + 1))
            }
            return .array(items)
        case Int32(AMQP_FIELD_KIND_TABLE.rawValue):
            return .object(try value.table.json(depth: depth + 1))
        default:
            // rabbitmq-c refuses unknown kinds while decoding the frame, so this is not reached.
            throw AMQPError(
                .protocolError("unknown field kind \(kind)"),
                "unknown AMQP field kind '\(Unicode.Scalar(kind))'",
                isRecoverable: false
            )
        }
    }
}

extension amqp_table_t {
    /// The table as an ordered dictionary in wire order; a repeated key keeps its last value.
    func json(depth: Int = 0) throws(AMQPError) -> OrderedDictionary<String, JSONValue> {
        guard let entries, num_entries > 0 else { return [:] }
        var keys: [String] = []
        var values: [JSONValue] = []
        keys.reserveCapacity(Int(num_entries))
        values.reserveCapacity(Int(num_entries))
        for index in 0..<Int(num_entries) {
            keys.append(entries[index].key.string)
            values.append(try entries[index].value.json(depth: depth))
        }
        return OrderedDictionary(jsonMembers: keys, values: values)
    }
}

// MARK: - Field tables: JSONValue → C

extension RabbitMQPool {
    /// The C table for `dictionary`, allocated in the pool.
    func table(_ dictionary: OrderedDictionary<String, JSONValue>, depth: Int = 0) throws(AMQPError) -> amqp_table_t {
        guard !dictionary.isEmpty else { return amqp_table_t(num_entries: 0, entries: nil) }
        let entries = try allocate(amqp_table_entry_t.self, count: dictionary.count)
        for (index, (key, value)) in dictionary.enumerated() {
            guard key.utf8.count <= 255 else {
                throw AMQPError.invalidArgument("header name longer than 255 bytes: \(key.prefix(40))…")
            }
            let field = try fieldValue(value, key: key, depth: depth)
            (entries + index).initialize(to: amqp_table_entry_t(key: try bytes(key), value: field))
        }
        return amqp_table_t(num_entries: Int32(dictionary.count), entries: entries)
    }

    /// The C field for `value`, written as py-amqp writes Python values (see ``AMQPFieldTable``).
    func fieldValue(_ value: JSONValue, key: String, depth: Int) throws(AMQPError) -> amqp_field_value_t {
        guard depth < 64 else { throw AMQPError.invalidArgument("header \(key) is nested more than 64 levels deep") }
        var field = amqp_field_value_t()
        switch value {
        case .null:
            field.kind = UInt8(AMQP_FIELD_KIND_VOID.rawValue)
        case .bool(let flag):
            field.kind = UInt8(AMQP_FIELD_KIND_BOOLEAN.rawValue)
            field.value.boolean = flag ? 1 : 0
        case .int(let number):
            if let small = Int32(exactly: number) {
                field.kind = UInt8(AMQP_FIELD_KIND_I32.rawValue)
                field.value.i32 = small
            } else {
                field.kind = UInt8(AMQP_FIELD_KIND_I64.rawValue)
                field.value.i64 = number
            }
        case .bigInt(let text):
            throw AMQPError.invalidArgument(
                "header \(key): the integer \(text.prefix(40)) does not fit in 64 bits, the largest AMQP integer"
            )
        case .double(let number):
            field.kind = UInt8(AMQP_FIELD_KIND_F64.rawValue)
            field.value.f64 = number
        case .string(let text):
            field.kind = UInt8(AMQP_FIELD_KIND_UTF8.rawValue)
            field.value.bytes = try bytes(text)
        case .array(let items):
            field.kind = UInt8(AMQP_FIELD_KIND_ARRAY.rawValue)
            let entries = try allocate(amqp_field_value_t.self, count: items.count)
            for (index, item) in items.enumerated() {
                (entries + index).initialize(to: try fieldValue(item, key: key, depth: depth + 1))
            }
            field.value.array = amqp_array_t(num_entries: Int32(items.count), entries: items.isEmpty ? nil : entries)
        case .object(let members):
            if members.count == 1, case .string(let encoded)? = members[bytesKey] {
                guard let decoded = try? Base64.decode(encoded) else {
                    throw AMQPError.invalidArgument("header \(key): \(bytesKey) is not valid base64")
                }
                field.kind = UInt8(AMQP_FIELD_KIND_BYTES.rawValue)
                field.value.bytes = try bytes(decoded)
            } else {
                field.kind = UInt8(AMQP_FIELD_KIND_TABLE.rawValue)
                field.value.table = try table(members, depth: depth + 1)
            }
        }
        return field
    }
}

// MARK: - Properties

extension amqp_basic_properties_t {
    /// A copy of the properties that are present (flag set).
    func swiftProperties() throws(AMQPError) -> AMQPProperties {
        func has(_ flag: Int32) -> Bool { _flags & amqp_flags_t(flag) != 0 }
        var result = AMQPProperties()
        if has(AMQP_BASIC_CONTENT_TYPE_FLAG) { result.contentType = content_type.string }
        if has(AMQP_BASIC_CONTENT_ENCODING_FLAG) { result.contentEncoding = content_encoding.string }
        if has(AMQP_BASIC_HEADERS_FLAG) { result.headers = try headers.json() }
        if has(AMQP_BASIC_DELIVERY_MODE_FLAG) { result.deliveryMode = delivery_mode }
        if has(AMQP_BASIC_PRIORITY_FLAG) { result.priority = priority }
        if has(AMQP_BASIC_CORRELATION_ID_FLAG) { result.correlationID = correlation_id.string }
        if has(AMQP_BASIC_REPLY_TO_FLAG) { result.replyTo = reply_to.string }
        if has(AMQP_BASIC_EXPIRATION_FLAG) { result.expiration = expiration.string }
        if has(AMQP_BASIC_MESSAGE_ID_FLAG) { result.messageID = message_id.string }
        if has(AMQP_BASIC_TIMESTAMP_FLAG) { result.timestamp = timestamp }
        if has(AMQP_BASIC_TYPE_FLAG) { result.type = type.string }
        if has(AMQP_BASIC_USER_ID_FLAG) { result.userID = user_id.string }
        if has(AMQP_BASIC_APP_ID_FLAG) { result.appID = app_id.string }
        return result
    }
}

extension RabbitMQPool {
    /// The C properties for `properties`, their strings and headers allocated in the pool.
    func properties(_ properties: AMQPProperties) throws(AMQPError) -> amqp_basic_properties_t {
        var result = amqp_basic_properties_t()
        var flags: Int32 = 0
        func shortString(_ value: String, _ name: String) throws(AMQPError) -> amqp_bytes_t {
            guard value.utf8.count <= 255 else {
                throw AMQPError.invalidArgument("property \(name) is longer than 255 bytes")
            }
            return try bytes(value)
        }
        if let value = properties.contentType {
            result.content_type = try shortString(value, "content_type")
            flags |= AMQP_BASIC_CONTENT_TYPE_FLAG
        }
        if let value = properties.contentEncoding {
            result.content_encoding = try shortString(value, "content_encoding")
            flags |= AMQP_BASIC_CONTENT_ENCODING_FLAG
        }
        if !properties.headers.isEmpty {
            result.headers = try table(properties.headers)
            flags |= AMQP_BASIC_HEADERS_FLAG
        }
        if let value = properties.deliveryMode {
            result.delivery_mode = value
            flags |= AMQP_BASIC_DELIVERY_MODE_FLAG
        }
        if let value = properties.priority {
            result.priority = value
            flags |= AMQP_BASIC_PRIORITY_FLAG
        }
        if let value = properties.correlationID {
            result.correlation_id = try shortString(value, "correlation_id")
            flags |= AMQP_BASIC_CORRELATION_ID_FLAG
        }
        if let value = properties.replyTo {
            result.reply_to = try shortString(value, "reply_to")
            flags |= AMQP_BASIC_REPLY_TO_FLAG
        }
        if let value = properties.expiration {
            result.expiration = try shortString(value, "expiration")
            flags |= AMQP_BASIC_EXPIRATION_FLAG
        }
        if let value = properties.messageID {
            result.message_id = try shortString(value, "message_id")
            flags |= AMQP_BASIC_MESSAGE_ID_FLAG
        }
        if let value = properties.timestamp {
            result.timestamp = value
            flags |= AMQP_BASIC_TIMESTAMP_FLAG
        }
        if let value = properties.type {
            result.type = try shortString(value, "type")
            flags |= AMQP_BASIC_TYPE_FLAG
        }
        if let value = properties.userID {
            result.user_id = try shortString(value, "user_id")
            flags |= AMQP_BASIC_USER_ID_FLAG
        }
        if let value = properties.appID {
            result.app_id = try shortString(value, "app_id")
            flags |= AMQP_BASIC_APP_ID_FLAG
        }
        result._flags = amqp_flags_t(flags)
        return result
    }
}

// MARK: - Status codes

/// rabbitmq-c's text for a status code. The corresponding C function is `amqp_error_string2`.
func rabbitMQStatusText(_ status: Int32) -> String {
    guard let text = amqp_error_string2(status) else { return "status \(status)" }
    return String(cString: text)
}
