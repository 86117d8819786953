/// `%XX` decoding of URL parts (user, password, host, path, query values), shared by the broker URL parsers.
///
/// `+` stays a plus: kombu and redis-py unquote with `unquote`, not `unquote_plus`, and it is not a space in a
/// URL's user info or path.
public enum PercentDecoding {
    /// Why a part could not be decoded; the caller wraps it in its own error with the URL and the part's name.
    public enum Failure: Error, Sendable, Equatable, CustomStringConvertible {
        /// A `%` not followed by two hex digits.
        case badEscape
        /// The decoded bytes are not UTF-8.
        case notUTF8

        public var description: String {
            switch self {
            case .badEscape: "has a '%' that is not followed by two hex digits"
            case .notUTF8: "is not UTF-8 after percent-decoding"
            }
        }
    }

    /// The decoded text.
    public static func decode(_ text: Substring) throws(Failure) -> String {
        guard text.contains("%") else { return String(text) }
        var bytes: [UInt8] = []
        var iterator = Array(text.utf8).makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else {
                throw .badEscape
            }
            bytes.append(high << 4 | low)
        }
        guard let decoded = String(validating: bytes, as: UTF8.self) else { throw .notUTF8 }
        return decoded
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
