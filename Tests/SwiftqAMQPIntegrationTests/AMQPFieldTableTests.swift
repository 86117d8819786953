import OrderedCollections
import SwiftqAMQP
import SwiftqCore
import Testing

/// Builds the wire form of a table by hand, so that kinds Swift never writes (py-amqp's 'L', unsigned ints,
/// decimals, non-UTF-8 strings) can be decoded.
private struct WireTable {
    var entries: [UInt8] = []

    mutating func add(_ key: String, _ type: Character, _ payload: [UInt8]) {
        entries.append(UInt8(key.utf8.count))
        entries += Array(key.utf8)
        entries.append(type.asciiValue!)
        entries += payload
    }

    var bytes: [UInt8] { bigEndian(UInt32(entries.count)) + entries }
}

private func bigEndian<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
    withUnsafeBytes(of: value.bigEndian) { Array($0) }
}

private func longString(_ bytes: [UInt8]) -> [UInt8] { bigEndian(UInt32(bytes.count)) + bytes }

/// The type letter of each top-level entry of an encoded table, in order.
private func typeLetters(_ encoded: [UInt8]) -> [Character] {
    // Only used for tables whose values are scalars of known sizes or long strings.
    var letters: [Character] = []
    var offset = 4
    while offset < encoded.count {
        let keyLength = Int(encoded[offset])
        offset += 1 + keyLength
        let letter = Character(Unicode.Scalar(encoded[offset]))
        letters.append(letter)
        offset += 1
        switch letter {
        case "t", "b", "B": offset += 1
        case "s", "u", "U": offset += 2
        case "I", "i", "f": offset += 4
        case "l", "L", "d", "T": offset += 8
        case "D": offset += 5
        case "V": break
        case "S", "x", "A", "F":
            let length = encoded[offset..<offset + 4].reduce(0) { $0 << 8 | Int($1) }
            offset += 4 + length
        default: return letters
        }
    }
    return letters
}

@Suite("AMQP field tables ↔ JSONValue")
struct AMQPFieldTableTests {
    /// Celery's headers as a Python 5.7 client sends them (§1.2): strings, nulls, ints, bools, `timelimit`,
    /// `stamps`, floats and nesting survive a round trip exactly.
    @Test func celeryHeadersRoundTrip() throws {
        let headers: OrderedDictionary<String, JSONValue> = [
            "lang": "py", "task": "swiftq.add", "id": "6c1f0e4e-3b3f-4c8e-9d7a-1f2e3d4c5b6a", "shadow": .null,
            "eta": "2030-01-02T03:04:05.678000+00:00", "expires": .null, "group": .null, "group_index": .null,
            "retries": 0, "timelimit": [30, 20.5], "root_id": "r", "parent_id": .null, "argsrepr": "(2, 3)",
            "kwargsrepr": "{}", "origin": "gen1@host", "ignore_result": false, "replaced_task_nesting": 0,
            "stamped_headers": .null, "stamps": ["a": ["x", 1], "b": .object([:])], "x-unicode": "héllo ✓ 🐍",
            "x-big": .int(5_000_000_000), "x-negative-big": .int(-5_000_000_000), "x-min": .int(Int64.min),
            "x-max": .int(Int64.max), "x-i32-min": .int(Int64(Int32.min)), "x-float": .double(-0.25),
            "x-nested": [[], [[:]], ["k": [1, [2, [3]]]]], "x-empty": "", "x-true": true,
        ]
        let encoded = try AMQPFieldTable.encode(headers)
        #expect(try AMQPFieldTable.decode(encoded) == headers)
    }

    /// The type letters are py-amqp's (`_write_item`), with `l` for large ints (see AMQPFieldTable).
    @Test func encodesLikePyAMQP() throws {
        let table: OrderedDictionary<String, JSONValue> = [
            "s": "text", "t": true, "i": 7, "neg": -7, "min32": .int(Int64(Int32.min)), "big": .int(1 << 40),
            "d": 1.5, "v": .null, "a": [1], "f": ["k": 1], "x": ["__bytes__": "AAEC"],
        ]
        let letters = typeLetters(try AMQPFieldTable.encode(table))
        #expect(letters == ["S", "t", "I", "I", "I", "l", "d", "V", "A", "F", "x"])
    }

    @Test func decodesEveryKindRabbitMQCReturns() throws {
        var wire = WireTable()
        wire.add("b", "b", [0xFF])  // int8 -1
        wire.add("B", "B", [0xFF])  // uint8 255
        wire.add("s", "s", bigEndian(Int16(-2)))  // RabbitMQ's signed 16 (py-amqp reads it so too)
        wire.add("u", "u", bigEndian(UInt16(65535)))
        wire.add("I", "I", bigEndian(Int32(-123)))
        wire.add("i", "i", bigEndian(UInt32.max))
        wire.add("l", "l", bigEndian(Int64(-9_000_000_000)))
        wire.add("L", "L", bigEndian(Int64(-5_000_000_000)))  // py-amqp writes big ints as 'L', signed
        wire.add("Lmax", "L", bigEndian(UInt64.max))  // an unsigned value above Int64.max: read as signed
        wire.add("f", "f", bigEndian(Float(1.5).bitPattern))
        wire.add("d", "d", bigEndian(Double(-2.25).bitPattern))
        wire.add("D", "D", [2] + bigEndian(Int32(-12345)))  // Decimal('-123.45'), as py-amqp writes it
        wire.add("T", "T", bigEndian(UInt64(1_700_000_000)))
        wire.add("V", "V", [])
        wire.add("t", "t", [1])
        wire.add("S", "S", longString(Array("héllo".utf8)))
        wire.add("badutf8", "S", longString([0xC3, 0x28, 0xFF]))
        wire.add("x", "x", longString([0, 1, 2, 0xFF]))
        wire.add("A", "A", longString([UInt8(ascii: "I")] + bigEndian(Int32(1)) + [UInt8(ascii: "V")]))
        var inner = WireTable()
        inner.add("k", "t", [0])
        wire.add("F", "F", inner.bytes)

        let decoded = try AMQPFieldTable.decode(wire.bytes)
        let expected: OrderedDictionary<String, JSONValue> = [
            "b": -1, "B": 255, "s": -2, "u": 65535, "I": -123, "i": .int(Int64(UInt32.max)),
            "l": .int(-9_000_000_000), "L": .int(-5_000_000_000), "Lmax": -1, "f": 1.5, "d": -2.25,
            "D": .double(-123.45), "T": .int(1_700_000_000), "V": .null, "t": true, "S": "héllo",
            "badutf8": ["__bytes__": .string(Base64.encode([0xC3, 0x28, 0xFF]))],
            "x": ["__bytes__": .string(Base64.encode([0, 1, 2, 0xFF]))], "A": [1, .null], "F": ["k": false],
        ]
        #expect(decoded == expected)
    }

    /// Bytes come back as bytes: `x` in, the tagged object, `x` out.
    @Test func bytesRoundTripLosslessly() throws {
        var wire = WireTable()
        wire.add("x", "x", longString([0, 0xFE, 0xFF]))
        let decoded = try AMQPFieldTable.decode(wire.bytes)
        #expect(try AMQPFieldTable.encode(decoded) == wire.bytes)
    }

    @Test func unencodableValuesAreTypedErrors() {
        #expect {
            try AMQPFieldTable.encode(["n": .bigInt("123456789012345678901234567890")])
        } throws: { error in
            guard let error = error as? AMQPError, case .invalidArgument(let text) = error.kind else { return false }
            return text.contains("n") && text.contains("64 bits")
        }
        #expect(throws: AMQPError.self) { try AMQPFieldTable.encode([String(repeating: "k", count: 300): 1]) }
        #expect(throws: AMQPError.self) { try AMQPFieldTable.encode(["x": ["__bytes__": "!!notbase64"]]) }
    }

    /// rabbitmq-c 0.11 does not know py-amqp's `U`; truncated input is refused too. Neither crashes.
    @Test func malformedTablesAreTypedErrors() {
        var wire = WireTable()
        wire.add("U", "U", bigEndian(Int16(1)))
        #expect(throws: AMQPError.self) { try AMQPFieldTable.decode(wire.bytes) }
        #expect(throws: AMQPError.self) { try AMQPFieldTable.decode([0, 0, 0, 9, 1]) }
        #expect(throws: AMQPError.self) { try AMQPFieldTable.decode([]) }
    }
}
