/// A reply from the server, copied out of hiredis' memory (RESP2).
///
/// Bulk strings stay bytes (`bulk`), since payloads are binary; ``string`` decodes them when text is expected.
/// An error reply is a value here (`error`): inside a pipeline or a transaction it is one reply among others.
/// ``RedisConnection/command(_:)-(RedisArgument...)`` turns a top-level error reply into a thrown ``RedisError``.
public enum RedisReply: Sendable, Hashable, CustomStringConvertible {
    /// A status reply such as `OK` or `PONG` (`+…`).
    case status(String)
    /// An error reply (`-ERR …`), with its text.
    case error(String)
    /// An integer reply (`:…`).
    case integer(Int64)
    /// A bulk string (`$…`), byte for byte.
    case bulk([UInt8])
    /// A null bulk string or null array (`$-1`, `*-1`): a missing key, a timed-out blocking pop.
    case null
    /// An array reply (`*…`).
    case array([RedisReply])

    /// The text of a bulk string or status reply (bytes that are not UTF-8 are repaired with U+FFFD); `nil`
    /// otherwise.
    public var string: String? {
        switch self {
        case .bulk(let bytes): String(decoding: bytes, as: UTF8.self)
        case .status(let text): text
        default: nil
        }
    }

    /// The bytes of a bulk string or status reply; `nil` otherwise.
    public var bytes: [UInt8]? {
        switch self {
        case .bulk(let bytes): bytes
        case .status(let text): Array(text.utf8)
        default: nil
        }
    }

    /// The value of an integer reply, or of a bulk string holding a decimal integer (as `ZSCORE`-like commands and
    /// Lua scripts return numbers as text); `nil` otherwise.
    public var integer: Int64? {
        switch self {
        case .integer(let value): value
        case .bulk(let bytes): Int64(String(decoding: bytes, as: UTF8.self))
        default: nil
        }
    }

    /// The value of a bulk string holding a decimal number (a sorted-set score); `nil` otherwise.
    public var double: Double? {
        switch self {
        case .integer(let value): Double(value)
        case .bulk(let bytes): Double(String(decoding: bytes, as: UTF8.self))
        default: nil
        }
    }

    /// The elements of an array reply; `nil` otherwise.
    public var array: [RedisReply]? {
        if case .array(let elements) = self { return elements }
        return nil
    }

    /// Whether this is a null reply.
    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }

    /// The text of an error reply; `nil` otherwise.
    public var errorMessage: String? {
        if case .error(let text) = self { return text }
        return nil
    }

    /// Whether this is the status reply `OK`.
    public var isOK: Bool {
        self == .status("OK")
    }

    /// A compact rendering for logs and test failures; bulk bytes outside printable ASCII are escaped.
    public var description: String {
        switch self {
        case .status(let text): "+\(text)"
        case .error(let text): "-\(text)"
        case .integer(let value): ":\(value)"
        case .bulk(let bytes): "\"\(Self.escaped(bytes.prefix(200)))\(bytes.count > 200 ? "…" : "")\""
        case .null: "(nil)"
        case .array(let elements): "[" + elements.map(\.description).joined(separator: ", ") + "]"
        }
    }

    static func escaped(_ bytes: some Sequence<UInt8>) -> String {
        var text = ""
        for byte in bytes {
            switch byte {
            case UInt8(ascii: "\\"): text += "\\\\"
            case 0x20..<0x7F: text.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                let hex = String(byte, radix: 16)
                text += "\\x" + (hex.count == 1 ? "0" + hex : hex)
            }
        }
        return text
    }
}
