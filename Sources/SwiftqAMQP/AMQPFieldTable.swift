import CRabbitMQ
import OrderedCollections
import SwiftqCore

/// How AMQP field tables (message headers, queue arguments) map to ``JSONValue`` and back, and the wire encoding of a
/// table on its own (for tests and tools; ``AMQPConnection`` uses the same mapping on every message).
///
/// ## Decoding (every kind rabbitmq-c 0.11 returns)
/// | wire | rabbitmq-c kind | JSONValue |
/// |---|---|---|
/// | `S` long string | UTF8 | `.string`, or `{"__bytes__": "<base64>"}` when the bytes are not UTF-8 |
/// | `x` byte array | BYTES | `{"__bytes__": "<base64>"}` |
/// | `t` | BOOLEAN | `.bool` |
/// | `b` `B` `s` `u` `I` `i` `l` | I8 U8 I16 U16 I32 U32 I64 | `.int` (exact) |
/// | `L` | U64 | `.int(Int64(bitPattern:))`: py-amqp writes large ints as `L` **signed** and reads `L` as signed, so the bit pattern is the Python value; a genuine unsigned value above `Int64.max` (no Python client sends one) becomes negative |
/// | `f` `d` | F32 F64 | `.double` |
/// | `D` decimal | DECIMAL | `.double(value / 10^scale)`, the value read as signed 32 bits as RabbitMQ and py-amqp write it |
/// | `T` timestamp | TIMESTAMP | `.int` seconds since the epoch |
/// | `V` | VOID | `.null` |
/// | `A` | ARRAY | `.array` |
/// | `F` | TABLE | `.object` in wire order (a repeated key keeps its last value) |
///
/// Byte strings have no JSON form, so they are kept losslessly as a one-member object whose `__bytes__` member is the
/// standard base64 of the bytes; a lossy repair of invalid UTF-8 would silently change the header. Python reads both
/// `x` and a non-UTF-8 `S` as `bytes`, which Celery's JSON serializer cannot carry in a task anyway, so these only
/// show up with non-Celery producers. rabbitmq-c 0.11 does not know `U` (py-amqp's signed 16-bit letter, which
/// py-amqp never writes): a frame containing it fails to decode, and the connection reports a library error.
///
/// ## Encoding (what py-amqp's `_write_item` does, with two deliberate refinements)
/// `.string` → `S`, `.bool` → `t`, `.int` → `I` when it fits in signed 32 bits, else `l` (signed 64), `.double` →
/// `d`, `.null` → `V`, `.array` → `A`, `.object` → `F`, and `{"__bytes__": "<base64>"}` → `x`.
/// - py-amqp writes ints outside ±(2³¹−1) as `L` with a signed value; swiftq writes `l`, the letter RabbitMQ and
///   every other client read as signed 64 bits. py-amqp reads `l` as signed too, so Python sees the same int.
/// - py-amqp writes −2³¹ as `L`; swiftq writes it as `I`, which holds it exactly. Python again sees the same int.
/// - `.bigInt` (beyond 64 bits) cannot be sent: an ``AMQPError`` of kind
///   ``AMQPError/Kind-swift.enum/invalidArgument(_:)``, as py-amqp's `struct.pack` raises for it.
public enum AMQPFieldTable {
    /// The wire encoding of `table`: a 32-bit big-endian length, then the entries.
    ///
    /// The corresponding C function is `amqp_encode_table`.
    public static func encode(_ table: OrderedDictionary<String, JSONValue>) throws(AMQPError) -> [UInt8] {
        let pool = RabbitMQPool()
        var input = try pool.table(table)
        var capacity = 4096
        while true {
            var buffer = [UInt8](repeating: 0, count: capacity)
            var offset = 0
            let status = buffer.withUnsafeMutableBytes { raw in
                amqp_encode_table(amqp_bytes_t(len: raw.count, bytes: raw.baseAddress), &input, &offset)
            }
            if status == AMQP_STATUS_OK.rawValue {
                return Array(buffer[..<offset])
            }
            guard status == AMQP_STATUS_TABLE_TOO_BIG.rawValue, capacity < 1 << 30 else {
                throw AMQPError(
                    .library(status: status, message: rabbitMQStatusText(status)),
                    "cannot encode field table: \(rabbitMQStatusText(status))",
                    isRecoverable: false
                )
            }
            capacity *= 4
        }
    }

    /// The table encoded in `bytes` (a 32-bit big-endian length, then the entries), as ``AMQPConnection`` decodes
    /// headers.
    ///
    /// The corresponding C function is `amqp_decode_table`.
    public static func decode(_ bytes: [UInt8]) throws(AMQPError) -> OrderedDictionary<String, JSONValue> {
        let pool = RabbitMQPool()
        var bytes = bytes
        return try pool.withPool { (cPool) throws(AMQPError) -> OrderedDictionary<String, JSONValue> in
            // The decoded strings point into `bytes`: copy them out before the buffer pointer goes away.
            let result = bytes.withUnsafeMutableBytes {
                raw -> Result<OrderedDictionary<String, JSONValue>, AMQPError> in
                var output = amqp_table_t()
                var offset = 0
                let status = amqp_decode_table(
                    amqp_bytes_t(len: raw.count, bytes: raw.baseAddress),
                    cPool,
                    &output,
                    &offset
                )
                guard status == AMQP_STATUS_OK.rawValue else {
                    return .failure(
                        AMQPError(
                            .library(status: status, message: rabbitMQStatusText(status)),
                            "cannot decode field table: \(rabbitMQStatusText(status))",
                            isRecoverable: false
                        )
                    )
                }
                do throws(AMQPError) {
                    return .success(try output.json())
                } catch {
                    return .failure(error)
                }
            }
            return try result.get()
        }
    }
}
