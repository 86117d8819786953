/// Standard base64 (RFC 4648 §4, `+` and `/`) for kombu's `body_encoding: "base64"` (celery-wire-protocol.md §2.1).
///
/// Python's `base64.b64decode`, which kombu uses, silently *drops* characters outside the alphabet. Dropping them
/// here would turn a corrupted envelope into a different, possibly valid, body, so the decoder is stricter: it skips
/// only ASCII whitespace (`base64.encodebytes` output has newlines), and rejects every other character outside the
/// alphabet, `=` anywhere but at the end, and lengths that cannot be base64. Missing padding is accepted, because it
/// loses nothing and some non-Python producers leave it out.
public enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    /// 6-bit value of each byte, or `invalid` / `whitespace`.
    private static let decodeTable: [UInt8] = {
        var table = [UInt8](repeating: invalid, count: 256)
        for (index, byte) in alphabet.enumerated() {
            table[Int(byte)] = UInt8(index)
        }
        for byte in [UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\r"), UInt8(ascii: "\n")] {
            table[Int(byte)] = whitespace
        }
        return table
    }()

    private static let invalid: UInt8 = 0xFF
    private static let whitespace: UInt8 = 0xFE

    /// Why ``decode(_:)`` refused its input.
    public struct DecodingError: Error, Equatable {
        /// What is wrong, for example `invalid character '%' at offset 12`.
        public var message: String
    }

    /// The padded base64 text of `bytes`, as Python's `base64.b64encode` writes it.
    public static func encode(_ bytes: some Collection<UInt8>) -> String {
        var output: [UInt8] = []
        if bytes.withContiguousStorageIfAvailable({ append($0, to: &output) }) != nil {
            return String(decoding: output, as: UTF8.self)
        }
        append(Array(bytes), to: &output)
        return String(decoding: output, as: UTF8.self)
    }

    /// Appends the padded base64 text of `bytes` to `output` (a message envelope is built in one buffer); a loop over
    /// raw buffers, since the generic one over `some Collection` was the writer's hottest code with events on.
    public static func append(_ bytes: [UInt8], to output: inout [UInt8]) {
        bytes.withUnsafeBufferPointer { append($0, to: &output) }
    }

    private static func append(_ input: UnsafeBufferPointer<UInt8>, to output: inout [UInt8]) {
        let encodedCount = (input.count + 2) / 3 * 4
        guard encodedCount > 0 else { return }
        let start = output.count
        output.append(contentsOf: repeatElement(UInt8(ascii: "="), count: encodedCount))
        output.withUnsafeMutableBufferPointer { buffer in
            alphabet.withUnsafeBufferPointer { table in
                var out = start
                var index = 0
                let whole = input.count - input.count % 3
                while index < whole {
                    let group = UInt32(input[index]) << 16 | UInt32(input[index + 1]) << 8 | UInt32(input[index + 2])
                    buffer[out] = table[Int(group >> 18 & 0x3F)]
                    buffer[out + 1] = table[Int(group >> 12 & 0x3F)]
                    buffer[out + 2] = table[Int(group >> 6 & 0x3F)]
                    buffer[out + 3] = table[Int(group & 0x3F)]
                    index += 3
                    out += 4
                }
                let rest = input.count - whole
                guard rest > 0 else { return }
                // The '=' padding is already in place.
                let group = UInt32(input[index]) << 16 | (rest == 2 ? UInt32(input[index + 1]) << 8 : 0)
                buffer[out] = table[Int(group >> 18 & 0x3F)]
                buffer[out + 1] = table[Int(group >> 12 & 0x3F)]
                if rest == 2 { buffer[out + 2] = table[Int(group >> 6 & 0x3F)] }
            }
        }
    }

    /// The bytes encoded by `text`; see the type documentation for what is accepted.
    public static func decode(_ text: String) throws(DecodingError) -> [UInt8] {
        var text = text
        return try text.withUTF8 { utf8 in Result { () throws(DecodingError) in try decode(utf8) } }.get()
    }

    /// The bytes encoded by the base64 text `bytes` (UTF-8, as in a JSON string without escapes): ``decode(_:)-1``
    /// without making a `String` of a body first.
    public static func decode(_ bytes: some Collection<UInt8>) throws(DecodingError) -> [UInt8] {
        let result = bytes.withContiguousStorageIfAvailable { buffer in
            Result { () throws(DecodingError) in try decode(buffer) }
        }
        if let result { return try result.get() }
        return try Array(bytes).withUnsafeBufferPointer { buffer in
            Result { () throws(DecodingError) in try decode(buffer) }
        }.get()
    }

    private static func decode(_ input: UnsafeBufferPointer<UInt8>) throws(DecodingError) -> [UInt8] {
        var failure: DecodingError?
        // Written in place: at most three bytes per four characters, and two more for a final partial group.
        let output = [UInt8](unsafeUninitializedCapacity: input.count / 4 * 3 + 2) { buffer, written in
            decodeTable.withUnsafeBufferPointer { table in
                do throws(DecodingError) {
                    written = try decode(input, into: buffer, table: table)
                } catch {
                    failure = error
                    written = 0
                }
            }
        }
        if let failure { throw failure }
        return output
    }

    /// Decodes `input` into `output` (large enough), returning how many bytes it wrote.
    private static func decode(
        _ input: UnsafeBufferPointer<UInt8>,
        into output: UnsafeMutableBufferPointer<UInt8>,
        table: UnsafeBufferPointer<UInt8>
    ) throws(DecodingError) -> Int {
        var out = 0
        var group: UInt32 = 0
        var count = 0  // significant characters in `group`
        var total = 0  // significant characters so far
        var padding = 0
        for offset in input.indices {
            let byte = input[offset]
            let value = table[Int(byte)]
            if value < 64 && padding == 0 {
                group = group << 6 | UInt32(value)
                count += 1
                if count == 4 {
                    output[out] = UInt8(truncatingIfNeeded: group >> 16)
                    output[out + 1] = UInt8(truncatingIfNeeded: group >> 8)
                    output[out + 2] = UInt8(truncatingIfNeeded: group)
                    out += 3
                    group = 0
                    count = 0
                    total += 4
                }
                continue
            }
            if value == whitespace { continue }
            if byte == UInt8(ascii: "=") {
                padding += 1
                continue
            }
            guard value != invalid else {
                throw DecodingError(message: "invalid character \(describe(byte)) at offset \(offset)")
            }
            throw DecodingError(message: "data after padding at offset \(offset)")
        }
        total += count
        switch count {
        case 0:
            guard padding == 0 else { throw DecodingError(message: "unexpected padding") }
        case 1:
            throw DecodingError(message: "truncated input (\(total) base64 characters)")
        case 2:
            guard padding == 0 || padding == 2 else { throw DecodingError(message: "incorrect padding") }
            output[out] = UInt8(truncatingIfNeeded: group >> 4)
            out += 1
        default:
            guard padding <= 1 else { throw DecodingError(message: "incorrect padding") }
            output[out] = UInt8(truncatingIfNeeded: group >> 10)
            output[out + 1] = UInt8(truncatingIfNeeded: group >> 2)
            out += 2
        }
        return out
    }

    private static func describe(_ byte: UInt8) -> String {
        if byte >= 0x20 && byte < 0x7F {
            return "'\(Character(Unicode.Scalar(byte)))'"
        }
        let hex = String(byte, radix: 16, uppercase: true)
        return "0x" + (hex.count == 1 ? "0" + hex : hex)
    }
}
