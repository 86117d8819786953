/// Why a JSON text was rejected, and where.
///
/// The ``offset`` counts bytes of UTF-8 input from zero, so it points at the same place whether the input arrived
/// as bytes or as a `String`.
public struct JSONParseError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Byte offset of the problem in the input.
    public var offset: Int
    /// What is wrong, without the position, for example `expected ',' or ']'`.
    public var message: String

    public init(offset: Int, message: String) {
        self.offset = offset
        self.message = message
    }

    /// For example `invalid JSON at byte 17: expected ',' or ']'`.
    public var description: String {
        "invalid JSON at byte \(offset): \(message)"
    }
}
