/// One argument of a Redis command: a byte string, sent with its explicit length so that NUL bytes and any other
/// binary content arrive unchanged.
///
/// Commands are built from string literals (`["LPUSH", key, payload]`); numbers are sent as their decimal text, which
/// is how Redis reads counts, scores and timeouts.
public struct RedisArgument: Sendable, Hashable, ExpressibleByStringLiteral, ExpressibleByIntegerLiteral,
    CustomStringConvertible
{
    /// The bytes sent to the server.
    public var bytes: [UInt8]

    /// An argument with exactly these bytes.
    public init(_ bytes: [UInt8]) {
        self.bytes = bytes
    }

    /// The UTF-8 bytes of a string.
    public init(_ string: String) {
        self.bytes = Array(string.utf8)
    }

    /// The UTF-8 bytes of a string slice.
    public init(_ string: Substring) {
        self.bytes = Array(string.utf8)
    }

    /// The decimal text of an integer.
    public init(_ value: Int) {
        self.bytes = Array(String(value).utf8)
    }

    /// The decimal text of a number, as Redis parses scores and timeouts (`"1.5"`, `"0.25"`); non-finite values are
    /// written `inf`, `-inf` and `nan` the way Redis spells them.
    public init(_ value: Double) {
        if value.isNaN {
            self.bytes = Array("nan".utf8)
        } else if value.isInfinite {
            self.bytes = Array((value < 0 ? "-inf" : "inf").utf8)
        } else {
            self.bytes = Array(String(value).utf8)
        }
    }

    public init(stringLiteral value: String) {
        self.init(value)
    }

    public init(integerLiteral value: Int) {
        self.init(value)
    }

    /// The bytes as text, with anything that is not printable ASCII escaped (`\x06`), for logs and test failures.
    public var description: String {
        RedisReply.escaped(bytes)
    }
}
