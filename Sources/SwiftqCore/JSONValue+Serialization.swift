extension JSONValue {
    /// The compact JSON text as UTF-8: no insignificant whitespace, object keys in stored order, non-ASCII characters
    /// written as raw UTF-8 (Python reads it back unchanged).
    ///
    /// The output always parses back to an equal value with `JSONValue(parsing:)`: doubles use the shortest text that
    /// round-trips and always contain `.` or `e` (`5.0`, `1e-05`, `1e+16`), so they stay doubles; NaN and the
    /// infinities are written as Python writes them (`NaN`, `Infinity`, `-Infinity`).
    public func serialized() -> [UInt8] {
        var buffer: [UInt8] = []
        serialize(into: &buffer)
        return buffer
    }

    /// The JSON text Python's `json.dumps` writes with its defaults, as kombu does for Celery's result meta: `", "` and
    /// `": "` as separators and every non-ASCII character escaped as `\uXXXX` (`ensure_ascii`). Stored results are
    /// written this way so that they are byte for byte what a Python worker stores.
    public func pythonSerialized() -> [UInt8] {
        var buffer: [UInt8] = []
        serialize(into: &buffer, python: true)
        return buffer
    }

    /// The compact JSON text produced by ``serialized()``, as a `String`.
    public var jsonString: String {
        String(decoding: serialized(), as: UTF8.self)
    }

    /// Appends the compact JSON text produced by ``serialized()`` to `buffer`, so a message can be built in one buffer
    /// (for example after a frame header) without intermediate copies.
    public func serialize(into buffer: inout [UInt8]) {
        serialize(into: &buffer, python: false)
    }

    private func serialize(into buffer: inout [UInt8], python: Bool) {
        switch self {
        case .null:
            buffer.append(contentsOf: "null".utf8)
        case .bool(let value):
            buffer.append(contentsOf: value ? "true".utf8 : "false".utf8)
        case .int(let value):
            Self.appendInteger(value, to: &buffer)
        case .bigInt(let text):
            buffer.append(contentsOf: text.utf8)
        case .double(let value):
            Self.appendDouble(value, to: &buffer)
        case .string(let value):
            Self.appendString(value, to: &buffer, asciiOnly: python)
        case .array(let elements):
            buffer.append(UInt8(ascii: "["))
            for (index, element) in elements.enumerated() {
                if index > 0 { Self.appendSeparator(",", python: python, to: &buffer) }
                element.serialize(into: &buffer, python: python)
            }
            buffer.append(UInt8(ascii: "]"))
        case .object(let members):
            buffer.append(UInt8(ascii: "{"))
            for (index, member) in members.enumerated() {
                if index > 0 { Self.appendSeparator(",", python: python, to: &buffer) }
                Self.appendString(member.key, to: &buffer, asciiOnly: python)
                Self.appendSeparator(":", python: python, to: &buffer)
                member.value.serialize(into: &buffer, python: python)
            }
            buffer.append(UInt8(ascii: "}"))
        }
    }

    private static func appendSeparator(_ character: Unicode.Scalar, python: Bool, to buffer: inout [UInt8]) {
        buffer.append(UInt8(ascii: character))
        if python { buffer.append(UInt8(ascii: " ")) }
    }

    static func appendInteger(_ value: Int64, to buffer: inout [UInt8]) {
        if value < 0 { buffer.append(UInt8(ascii: "-")) }
        var magnitude = value.magnitude
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { digits in
            var index = digits.count
            repeat {
                index -= 1
                digits[index] = UInt8(ascii: "0") + UInt8(magnitude % 10)
                magnitude /= 10
            } while magnitude != 0
            buffer.append(contentsOf: UnsafeBufferPointer(rebasing: digits[index...]))
        }
    }

    static func appendDouble(_ value: Double, to buffer: inout [UInt8]) {
        if value.isNaN {
            buffer.append(contentsOf: "NaN".utf8)
        } else if value.isInfinite {
            buffer.append(contentsOf: value < 0 ? "-Infinity".utf8 : "Infinity".utf8)
        } else {
            // Swift's description is the shortest text that round-trips, and for finite values it always has a '.'
            // or an exponent. The check keeps the output a float even if that ever changed.
            let text = value.description
            buffer.append(contentsOf: text.utf8)
            if !text.utf8.contains(where: { $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "e") }) {
                buffer.append(contentsOf: ".0".utf8)
            }
        }
    }

    /// Writes a quoted string, escaping `"`, `\` and control characters; everything else is copied as UTF-8, or, with
    /// `asciiOnly`, escaped as Python's `ensure_ascii` does (`\u00e9`, surrogate pairs above U+FFFF).
    static func appendString(_ string: String, to buffer: inout [UInt8], asciiOnly: Bool = false) {
        let start = buffer.count
        buffer.append(UInt8(ascii: "\""))
        var string = string
        let escapedAll = string.withUTF8 { utf8 -> Bool in
            guard let base = utf8.baseAddress else { return true }
            var runStart = 0
            var index = 0
            while true {
                index = JSONByteScan.plainRunEnd(base, from: index, to: utf8.count)
                guard index < utf8.count else { break }
                let byte = utf8[index]
                if byte >= 0x80 {
                    // Not ASCII: copied as it is, unless only ASCII may be written (Python's ensure_ascii).
                    if asciiOnly { return false }
                    index += 1
                    continue
                }
                buffer.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart..<index]))
                index += 1
                runStart = index
                buffer.append(UInt8(ascii: "\\"))
                switch byte {
                case UInt8(ascii: "\""): buffer.append(UInt8(ascii: "\""))
                case UInt8(ascii: "\\"): buffer.append(UInt8(ascii: "\\"))
                case 0x0A: buffer.append(UInt8(ascii: "n"))
                case 0x0D: buffer.append(UInt8(ascii: "r"))
                case 0x09: buffer.append(UInt8(ascii: "t"))
                case 0x08: buffer.append(UInt8(ascii: "b"))
                case 0x0C: buffer.append(UInt8(ascii: "f"))
                default:
                    let hexDigits: StaticString = "0123456789abcdef"
                    buffer.append(contentsOf: "u00".utf8)
                    buffer.append(hexDigits.utf8Start[Int(byte >> 4)])
                    buffer.append(hexDigits.utf8Start[Int(byte & 0x0F)])
                }
            }
            buffer.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart...]))
            return true
        }
        guard escapedAll else {
            buffer.removeSubrange(start...)
            appendASCIIString(string, to: &buffer)
            return
        }
        buffer.append(UInt8(ascii: "\""))
    }

    private static func appendASCIIString(_ string: String, to buffer: inout [UInt8]) {
        let hexDigits: StaticString = "0123456789abcdef"
        func appendUnit(_ unit: UInt16) {
            buffer.append(contentsOf: "\\u".utf8)
            for shift in stride(from: 12, through: 0, by: -4) {
                buffer.append(hexDigits.utf8Start[Int((unit >> UInt16(shift)) & 0xF)])
            }
        }
        buffer.append(UInt8(ascii: "\""))
        for scalar in string.unicodeScalars {
            switch scalar.value {
            case 0x22: buffer.append(contentsOf: "\\\"".utf8)
            case 0x5C: buffer.append(contentsOf: "\\\\".utf8)
            case 0x0A: buffer.append(contentsOf: "\\n".utf8)
            case 0x0D: buffer.append(contentsOf: "\\r".utf8)
            case 0x09: buffer.append(contentsOf: "\\t".utf8)
            case 0x08: buffer.append(contentsOf: "\\b".utf8)
            case 0x0C: buffer.append(contentsOf: "\\f".utf8)
            case 0x20..<0x80: buffer.append(UInt8(scalar.value))
            default:
                for unit in String(scalar).utf16 { appendUnit(unit) }
            }
        }
        buffer.append(UInt8(ascii: "\""))
    }
}
