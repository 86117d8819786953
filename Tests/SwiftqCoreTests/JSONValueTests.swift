import Foundation
import OrderedCollections
import SwiftqCore
import Testing

// MARK: - Helpers

/// Parses `text`, returning the error instead of throwing it, or `nil` when parsing succeeded.
private func parseError(_ text: String, maxDepth: Int = JSONValue.defaultMaxDepth) -> JSONParseError? {
    parseError(bytes: Array(text.utf8), maxDepth: maxDepth)
}

private func parseError(bytes: [UInt8], maxDepth: Int = JSONValue.defaultMaxDepth) -> JSONParseError? {
    do {
        _ = try JSONValue(parsing: bytes, maxDepth: maxDepth)
        return nil
    } catch {
        return error
    }
}

/// Bytes of a JSON string literal: a quote, `content`, a quote.
private func quoted(_ content: [UInt8]) -> [UInt8] {
    [UInt8(ascii: "\"")] + content + [UInt8(ascii: "\"")]
}

/// SplitMix64: a tiny deterministic generator so the fuzz test is reproducible.
private struct SplitMix64: RandomNumberGenerator {
    var state: UInt64

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var value = state
        value = (value ^ (value >> 30)) &* 0xBF58_476D_1CE4_E5B9
        value = (value ^ (value >> 27)) &* 0x94D0_49BB_1331_11EB
        return value ^ (value >> 31)
    }
}

private func nestedArrays(_ depth: Int) -> String {
    String(repeating: "[", count: depth) + String(repeating: "]", count: depth)
}

// MARK: - Round trips

@Suite struct JSONValueRoundTripTests {
    /// Canonical compact texts: parse then serialize must give back the same bytes.
    @Test(
        arguments: [
            "null", "true", "false", "0", "-1", "42", "-9223372036854775808", "9223372036854775807",
            "123456789012345678901234567890", "-123456789012345678901234567890", "1.0", "-0.0", "0.1", "1.5",
            "1e+16", "1e-05", "NaN", "Infinity", "-Infinity", #""""#, #""abc""#, "\"hé ✓ 𝄞\"", "[]", "{}",
            "[1,\"a\",null,true,2.5,[],{}]", #"{"a":{"b":[true,{"c":null}]},"d":-3}"#,
        ]
    )
    func canonicalTextRoundTrips(_ text: String) throws {
        let value = try JSONValue(parsing: text)
        #expect(value.jsonString == text)
        #expect(value.serialized() == Array(text.utf8))
        #expect(try JSONValue(parsing: value.serialized()) == value)
    }

    @Test func everyCaseRoundTrips() throws {
        let values: [JSONValue] = [
            .null, .bool(true), .bool(false), .int(0), .int(-7), .int(.max), .int(.min),
            .bigInt("99999999999999999999"), .bigInt("-123456789012345678901234567890"), .double(1.0), .double(-2.5),
            .double(0.1), .double(.greatestFiniteMagnitude), .double(.leastNonzeroMagnitude), .double(.nan),
            .double(.infinity), .double(-.infinity), .string(""), .string("plain"), .string("q\"b\\n\n"),
            .array([]), .array([.int(1), .double(1), .string("1")]), .object([:]),
            .object(["k": .array([.null, .object(["n": .bool(false)])])]),
        ]
        for value in values {
            let reparsed = try JSONValue(parsing: value.serialized())
            #expect(reparsed == value, "\(value)")
            #expect(reparsed.serialized() == value.serialized())
        }
    }

    @Test func integerAndDoubleStayDistinct() throws {
        #expect(try JSONValue(parsing: "1") == .int(1))
        #expect(try JSONValue(parsing: "1.0") == .double(1.0))
        #expect(try JSONValue(parsing: "1e0") == .double(1.0))
        #expect(try JSONValue(parsing: "1E+2") == .double(100))
        #expect(try JSONValue(parsing: "1e-2") == .double(0.01))
        #expect(try JSONValue(parsing: "0e5") == .double(0))
        #expect(try JSONValue(parsing: "-0") == .int(0))
        #expect(JSONValue.int(1) != JSONValue.double(1.0))
        #expect(JSONValue.int(1).jsonString == "1")
        #expect(JSONValue.double(1.0).jsonString == "1.0")
        #expect(JSONValue.double(100).jsonString == "100.0")
        #expect(JSONValue.double(1e3).jsonString == "1000.0")
        #expect(try JSONValue(parsing: JSONValue.double(1e300).serialized()) == .double(1e300))

        let negativeZero = try JSONValue(parsing: "-0.0").doubleValue
        #expect(negativeZero == 0 && negativeZero?.sign == .minus)
        #expect(JSONValue.double(-0.0).jsonString == "-0.0")
    }

    @Test func int64BoundsAndBigIntegers() throws {
        #expect(try JSONValue(parsing: "9223372036854775807") == .int(.max))
        #expect(try JSONValue(parsing: "-9223372036854775808") == .int(.min))
        #expect(try JSONValue(parsing: "9223372036854775808") == .bigInt("9223372036854775808"))
        #expect(try JSONValue(parsing: "-9223372036854775809") == .bigInt("-9223372036854775809"))
        #expect(try JSONValue(parsing: "10000000000000000000") == .bigInt("10000000000000000000"))
        #expect(try JSONValue(parsing: "18446744073709551616") == .bigInt("18446744073709551616"))
        let huge = "-" + String(repeating: "9", count: 500)
        #expect(try JSONValue(parsing: huge) == .bigInt(huge))
        #expect(try JSONValue(parsing: "[1000000000000000000000,1]") == [.bigInt("1000000000000000000000"), 1])

        #expect(JSONValue.int(.min).jsonString == "-9223372036854775808")
        #expect(JSONValue.int(.max).jsonString == "9223372036854775807")
        #expect(JSONValue.bigInt("-123456789012345678901234567890").jsonString == "-123456789012345678901234567890")
        // A big integer with a fraction is a double, not a big integer.
        #expect(try JSONValue(parsing: "123456789012345678901234567890.0") == .double(1.2345678901234568e29))
    }

    @Test func doublesParseCorrectlyRoundedAndSerializeShortest() throws {
        let texts = [
            "0.1", "0.30000000000000004", "5e-324", "4.9e-324", "2.2250738585072014e-308", "2.2250738585072011e-308",
            "1.7976931348623157e308", "1e21", "1e22", "1e23", "123456789.123", "9007199254740993.0",
            "3.14159265358979323846264338327950288", "0.000000000000000000000000000001234", "7.0e-10", "1e-400",
            "-1e-400", "1e400", "-1e400", "89255.0e-22", "8.98846567431158e307",
            "0." + String(repeating: "0", count: 400) + "1e401", String(repeating: "1", count: 400) + ".5",
        ]
        for text in texts {
            let expected = try #require(Double(text))
            let value = try JSONValue(parsing: text)
            #expect(value == .double(expected), "\(text)")
            #expect(value.doubleValue?.sign == expected.sign, "\(text)")
            // Whatever the serializer writes must come back as the same double.
            #expect(try JSONValue(parsing: value.serialized()) == value, "\(text)")
        }
        #expect(JSONValue.double(0.1).jsonString == "0.1")
        #expect(JSONValue.double(5.0).jsonString == "5.0")
        #expect(JSONValue.double(0.30000000000000004).jsonString == "0.30000000000000004")
        #expect(JSONValue.double(1e16).jsonString == "1e+16")
        #expect(try JSONValue(parsing: JSONValue.double(1e-5).serialized()) == .double(1e-5))
    }

    /// Checks the fast decimal path against the standard library's correctly rounded conversion.
    @Test func randomDecimalTextsMatchStandardLibrary() throws {
        var rng = SplitMix64(state: 7)
        for _ in 0..<5000 {
            let integerDigits = Int.random(in: 1...12, using: &rng)
            var text = Bool.random(using: &rng) ? "-" : ""
            text += String(Int.random(in: 1...9, using: &rng))
            for _ in 1..<integerDigits { text += String(Int.random(in: 0...9, using: &rng)) }
            text += "."
            for _ in 0..<Int.random(in: 1...12, using: &rng) { text += String(Int.random(in: 0...9, using: &rng)) }
            if Bool.random(using: &rng) { text += "e\(Int.random(in: -40...40, using: &rng))" }
            let expected = try #require(Double(text))
            #expect(try JSONValue(parsing: text) == .double(expected), "\(text)")
        }
    }

    @Test func nonFiniteNumbersUsePythonSpelling() throws {
        let value = try JSONValue(parsing: "[NaN, Infinity, -Infinity]")
        #expect(value[0]?.doubleValue?.isNaN == true)
        #expect(value[1] == .double(.infinity))
        #expect(value[2] == .double(-.infinity))
        #expect(value.jsonString == "[NaN,Infinity,-Infinity]")
        #expect(JSONValue.double(.nan) == JSONValue.double(.nan))
        #expect(JSONValue.double(.nan).hashValue == JSONValue.double(-.nan).hashValue)
        #expect(JSONValue.double(-.infinity).jsonString == "-Infinity")
        for bad in ["nan", "-NaN", "+Infinity", "infinity", "Inf", "NaN1", "-Infinit"] {
            #expect(parseError(bad) != nil, "\(bad)")
        }
    }

    @Test func keyOrderIsPreserved() throws {
        let text = #"{"z":1,"a":2,"m":{"y":1,"b":2,"k":[{"3":0,"1":0,"2":0}]},"_":[],"é":null}"#
        let value = try JSONValue(parsing: text)
        #expect(value.jsonString == text)
        #expect(value.objectValue.map { Array($0.keys) } == ["z", "a", "m", "_", "é"])
        // Order is part of the value.
        #expect(try JSONValue(parsing: #"{"a":1,"b":2}"#) != JSONValue(parsing: #"{"b":2,"a":1}"#))
    }

    @Test func duplicateKeysLastValueWinsAtFirstPosition() throws {
        let value = try JSONValue(parsing: #"{"a":1,"b":2,"a":3}"#)
        #expect(value.jsonString == #"{"a":3,"b":2}"#)
        let literal: JSONValue = ["a": 1, "b": 2, "a": 3]
        #expect(literal == value)
    }

    /// The parser looks for duplicates by the keys' text for small objects and by hashing for large ones: the same
    /// key spelt with an escape, duplicates in a large object and in objects nested in each other are all merged.
    @Test func duplicateKeysAreFoundWhateverTheirSpellingOrTheObjectsSize() throws {
        #expect(try JSONValue(parsing: #"{"a":1,"\u0061":2}"#).jsonString == #"{"a":2}"#)
        #expect(try JSONValue(parsing: #"{"\n":1,"b":2,"\u000a":3}"#).jsonString == #"{"\n":3,"b":2}"#)
        #expect(try JSONValue(parsing: #"{"ab":1,"ba":2,"a":3,"b":4}"#).jsonString == #"{"ab":1,"ba":2,"a":3,"b":4}"#)

        for size in [15, 16, 32, 33, 40] {
            let members = (0..<size).map { #""k\#($0)":\#($0)"# }
            let text = "{" + (members + [#""k0":"last""#, #""k\#(size - 1)":"end""#]).joined(separator: ",") + "}"
            let object = try #require(try JSONValue(parsing: text).objectValue)
            #expect(object.count == size)
            #expect(Array(object.keys) == (0..<size).map { "k\($0)" })
            #expect(object["k0"] == .string("last"))
            #expect(object["k\(size - 1)"] == .string("end"))
            #expect(object["k1"] == .int(1))
        }

        let nested = #"{"a":[{"x":1,"x":2},{"y":{"a":0,"a":[1,{"z":3}]}}],"b":{"a":4},"a":{"c":5,"c":6}}"#
        #expect(try JSONValue(parsing: nested).jsonString == #"{"a":{"c":6},"b":{"a":4}}"#)
        let kept = #"{"a":[{"x":1,"x":2},{"y":{"a":0,"a":[1,{"z":3}]}}],"b":{"a":4}}"#
        #expect(try JSONValue(parsing: kept).jsonString == #"{"a":[{"x":2},{"y":{"a":[1,{"z":3}]}}],"b":{"a":4}}"#)
    }

    @Test func whitespaceAroundTokens() throws {
        let value = try JSONValue(parsing: " \t\r\n{ \"a\" :\n[ 1 ,\t2 ] , \"b\"\r: { } }\n ")
        #expect(value.jsonString == #"{"a":[1,2],"b":{}}"#)
    }

    @Test func oneMebibyteStrings() throws {
        let ascii = String(repeating: "abcdefgh", count: 131_072)
        let asciiValue = JSONValue.string(ascii)
        #expect(try JSONValue(parsing: asciiValue.serialized()) == asciiValue)

        let pattern = "a\"b\\c\nd\u{1}é✓𝄞 "
        let mixed = String(repeating: pattern, count: (1 << 20) / pattern.utf8.count + 1)
        #expect(mixed.utf8.count >= 1 << 20)
        let value = JSONValue.array([.string(mixed)])
        let bytes = value.serialized()
        let reparsed = try JSONValue(parsing: bytes)
        #expect(reparsed[0]?.stringValue?.utf8.elementsEqual(mixed.utf8) == true)
        #expect(reparsed.serialized() == bytes)
    }

    @Test func generatedValuesRoundTrip() throws {
        var generator = ValueGenerator(rng: SplitMix64(state: 0x5EED))
        for _ in 0..<1500 {
            let value = generator.value(depth: 0)
            let bytes = value.serialized()
            let reparsed = try JSONValue(parsing: bytes)
            #expect(reparsed == value, "\(value)")
            #expect(reparsed.serialized() == bytes)
        }
    }
}

/// Builds random values covering every case, with strings drawn from all UTF-8 lengths and all escapes.
private struct ValueGenerator {
    var rng: SplitMix64

    mutating func value(depth: Int) -> JSONValue {
        let choice = Int.random(in: 0..<(depth < 4 ? 10 : 8), using: &rng)
        switch choice {
        case 0: return .null
        case 1: return .bool(Bool.random(using: &rng))
        case 2:
            let extremes: [Int64] = [.min, .max, 0, -1, 1]
            return Bool.random(using: &rng)
                ? .int(Int64(bitPattern: rng.next()) >> Int64.random(in: 0...63, using: &rng))
                : .int(extremes.randomElement(using: &rng) ?? 0)
        case 3:
            var digits = String(Int.random(in: 1...9, using: &rng))
            for _ in 0..<Int.random(in: 19...60, using: &rng) { digits += String(Int.random(in: 0...9, using: &rng)) }
            return .bigInt(Bool.random(using: &rng) ? "-" + digits : digits)
        case 4: return .double(Double(bitPattern: rng.next()))
        case 5: return .double(Double(Int.random(in: -100_000...100_000, using: &rng)) / 64)
        case 6, 7: return .string(string())
        case 8: return .array((0..<Int.random(in: 0...6, using: &rng)).map { _ in value(depth: depth + 1) })
        default:
            var members = OrderedDictionary<String, JSONValue>()
            for _ in 0..<Int.random(in: 0...6, using: &rng) {
                members[string()] = value(depth: depth + 1)
            }
            return .object(members)
        }
    }

    mutating func string() -> String {
        var scalars = String.UnicodeScalarView()
        for _ in 0..<Int.random(in: 0...12, using: &rng) {
            let range: ClosedRange<UInt32> =
                switch Int.random(in: 0..<6, using: &rng) {
                case 0: 0x00...0x1F
                case 1, 2: 0x20...0x7F
                case 3: 0x80...0x7FF
                case 4: [0x800...0xD7FF, 0xE000...0xFFFF].randomElement(using: &rng) ?? 0x800...0xD7FF
                default: 0x1_0000...0x10_FFFF
                }
            if let scalar = Unicode.Scalar(UInt32.random(in: range, using: &rng)) {
                scalars.append(scalar)
            }
        }
        return String(scalars)
    }
}

// MARK: - Strings

@Suite struct JSONValueStringTests {
    @Test func unicodeRawAndEscaped() throws {
        let expected = JSONValue.string("héllo ✓ 𝄞")
        #expect(try JSONValue(parsing: "\"héllo ✓ 𝄞\"") == expected)
        #expect(try JSONValue(parsing: Array("\"héllo ✓ 𝄞\"".utf8)) == expected)
        #expect(try JSONValue(parsing: #""h\u00e9llo \u2713 \ud834\udd1e""#) == expected)
        #expect(try JSONValue(parsing: #""h\u00E9llo \u2713 \uD834\uDD1E""#) == expected)
        // Non-ASCII is written as raw UTF-8, not escaped.
        #expect(expected.serialized() == Array("\"héllo ✓ 𝄞\"".utf8))
        #expect(
            try JSONValue(parsing: #""\u0041\u00ff\u0800\uffff\udbff\udfff""#) == "A\u{FF}\u{800}\u{FFFF}\u{10FFFF}"
        )
    }

    @Test func loneSurrogatesBecomeReplacementCharacter() throws {
        #expect(try JSONValue(parsing: #""\ud834""#) == "\u{FFFD}")
        #expect(try JSONValue(parsing: #""\udd1e""#) == "\u{FFFD}")
        #expect(try JSONValue(parsing: #""\ud834x""#) == "\u{FFFD}x")
        #expect(try JSONValue(parsing: #""\ud834\u0041""#) == "\u{FFFD}A")
        #expect(try JSONValue(parsing: #""\ud834\ud834\udd1e""#) == "\u{FFFD}𝄞")
        #expect(try JSONValue(parsing: #""\udd1e\ud834""#) == "\u{FFFD}\u{FFFD}")
        #expect(parseError(#""\ud834\u12""#) != nil)
    }

    @Test func everyEscapeParses() throws {
        let value = try JSONValue(parsing: #""\"\\\/\b\f\n\r\t\u0000\u001f\u007f""#)
        #expect(value == .string("\"\\/\u{8}\u{C}\n\r\t\u{0}\u{1F}\u{7F}"))
    }

    @Test func serializerEscapesQuotesBackslashesAndControlCharacters() throws {
        #expect(JSONValue.string("\"\\/\u{8}\u{C}\n\r\t").jsonString == #""\"\\/\b\f\n\r\t""#)
        #expect(
            JSONValue.string("\u{0}\u{1}\u{1B}\u{1F}\u{7F}").jsonString == #""\u0000\u0001\u001b\u001f"# + "\u{7F}\""
        )
        #expect(JSONValue.object(["a\"b": 1]).jsonString == #"{"a\"b":1}"#)
        // Every control character survives a round trip.
        let controls = String(String.UnicodeScalarView((0..<0x20).compactMap(Unicode.Scalar.init)))
        let value = JSONValue.string(controls)
        #expect(!value.serialized().contains { $0 < 0x20 })
        #expect(try JSONValue(parsing: value.serialized()) == value)
    }

    /// Strings are scanned eight bytes at a time, by the parser and by the serializer: a byte that needs attention
    /// (a quote, a backslash, a control character, a byte above 0x7F) must be found wherever it falls, in the first
    /// word, on either side of a word's edge and in the bytes after the last whole word.
    @Test func bytesThatNeedAttentionAreFoundAtEveryOffset() throws {
        func escaped(_ byte: UInt8) -> [UInt8] {
            switch byte {
            case UInt8(ascii: "\""): return Array(#"\""#.utf8)
            case UInt8(ascii: "\\"): return Array(#"\\"#.utf8)
            case 0x08: return Array(#"\b"#.utf8)
            case 0x09: return Array(#"\t"#.utf8)
            case 0x0A: return Array(#"\n"#.utf8)
            case 0x0C: return Array(#"\f"#.utf8)
            case 0x0D: return Array(#"\r"#.utf8)
            case ..<0x20: return Array(String(format: "\\u%04x", Int(byte)).utf8)
            default: return [byte]
            }
        }
        let interesting: [UInt8] = [0x00, 0x01, 0x08, 0x0A, 0x1F, 0x20, 0x21, 0x22, 0x23, 0x5B, 0x5C, 0x5D, 0x7E, 0x7F]
        for length in 1...25 {
            for offset in 0..<length {
                for byte in interesting {
                    var bytes = [UInt8](repeating: UInt8(ascii: "a"), count: length)
                    bytes[offset] = byte
                    let text = String(decoding: bytes, as: UTF8.self)
                    let serialized = JSONValue.string(text).serialized()
                    #expect(serialized == quoted(bytes.flatMap(escaped)), "byte \(byte) at \(offset) of \(length)")
                    #expect(try JSONValue(parsing: serialized) == .string(text))
                    let raw = parseError(bytes: quoted(bytes))
                    switch byte {
                    case ..<0x20: #expect(raw?.offset == offset + 1, "raw control \(byte) at \(offset) of \(length)")
                    case UInt8(ascii: "\""): #expect(raw != nil)  // The string ends early; the rest is not JSON.
                    case UInt8(ascii: "\\"): #expect(raw != nil)  // `\a` (or `\"` then no end) is not an escape.
                    default: #expect(raw == nil)
                    }
                }
                // Two-byte and four-byte UTF-8 at the offset: copied, or escaped for Python's ensure_ascii.
                for (scalar, python) in [("é", #"\u00e9"#), ("😀", #"\ud83d\ude00"#)] {
                    let text = String(repeating: "a", count: offset) + scalar + String(repeating: "b", count: length)
                    let value = JSONValue.string(text)
                    #expect(value.serialized() == quoted(Array(text.utf8)))
                    let ascii = String(repeating: "a", count: offset) + python + String(repeating: "b", count: length)
                    #expect(value.pythonSerialized() == quoted(Array(ascii.utf8)))
                    #expect(try JSONValue(parsing: value.serialized()) == value)
                    #expect(try JSONValue(parsing: value.pythonSerialized()) == value)
                }
                // A byte that cannot start UTF-8, at the offset, is refused.
                var invalid = [UInt8](repeating: UInt8(ascii: "a"), count: length)
                invalid[offset] = 0xFF
                #expect(parseError(bytes: quoted(invalid)) != nil)
            }
        }
    }

    @Test(arguments: 0..<0x20)
    func rawControlCharactersAreRejected(_ byte: Int) {
        let error = parseError(bytes: quoted([UInt8(ascii: "a"), UInt8(byte), UInt8(ascii: "b")]))
        #expect(error?.offset == 2)
        // Also after an escape, where the slower path runs.
        #expect(parseError(bytes: quoted(Array(#"\n"#.utf8) + [UInt8(byte)]))?.offset == 3)
    }

    @Test(
        arguments: [
            [0x80], [0xBF], [0xC0, 0xAF], [0xC1, 0xBF], [0xC3], [0xC3, 0x41], [0xE0, 0x80, 0xAF], [0xE0, 0x9F, 0xBF],
            [0xED, 0xA0, 0x80], [0xED, 0xBF, 0xBF], [0xE2, 0x9C], [0xE2, 0x28, 0xA1], [0xF0, 0x8F, 0xBF, 0xBF],
            [0xF4, 0x90, 0x80, 0x80], [0xF5, 0x80, 0x80, 0x80], [0xF0, 0x9D, 0x84], [0xFE], [0xFF],
        ] as [[UInt8]]
    )
    func invalidUTF8IsRejected(_ sequence: [UInt8]) {
        #expect(parseError(bytes: quoted([UInt8(ascii: "x")] + sequence))?.offset == 2)
        #expect(parseError(bytes: quoted(Array(#"\t"#.utf8) + sequence + [UInt8(ascii: "y")]))?.offset == 3)
        #expect(parseError(bytes: sequence) != nil)
    }

    @Test(
        arguments: [
            [0xC2, 0x80], [0xDF, 0xBF], [0xE0, 0xA0, 0x80], [0xED, 0x9F, 0xBF], [0xEE, 0x80, 0x80], [0xEF, 0xBF, 0xBF],
            [0xF0, 0x90, 0x80, 0x80], [0xF4, 0x8F, 0xBF, 0xBF],
        ] as [[UInt8]]
    )
    func validUTF8BoundariesAreAccepted(_ sequence: [UInt8]) throws {
        let value = try JSONValue(parsing: quoted(sequence))
        #expect(value.stringValue.map { Array($0.utf8) } == sequence)
    }
}

// MARK: - Rejected input

@Suite struct JSONValueErrorTests {
    @Test(
        arguments: [
            ("", 0), ("   ", 3), ("[1,]", 3), (#"{"a":1,}"#, 7), (#""abc"#, 0), (#"["abc"#, 1), ("[", 1), ("{", 1),
            ("[1", 2), (#"{"a""#, 4), (#"{"a"}"#, 4), (#"{"a" 1}"#, 5), ("{1:2}", 1), ("[1 2]", 3), ("+1", 0),
            (".5", 0), ("1.", 2), ("1.e5", 2), ("1e", 2), ("1e+", 3), ("-", 1), ("-a", 1), ("tru", 0), ("nul", 0),
            ("True", 0), ("'a'", 0), (#""\x""#, 1), (#""\u12G4""#, 1), (#""\"#, 0), ("[1]]", 3), ("1 2", 2),
            ("{} x", 3), ("nulll", 4), ("truex", 4), ("1.5.3", 3), ("\u{C}1", 0), ("\u{B}1", 0), ("\u{A0}1", 0),
            ("[1,,2]", 3), (#"{"a":}"#, 5), (#"{,}"#, 1), ("[\"a\":1]", 4), ("\u{FEFF}1", 0), ("0x10", 1),
        ]
    )
    func malformedInputIsRejectedAtTheRightOffset(_ text: String, _ offset: Int) {
        let error = parseError(text)
        #expect(error != nil)
        #expect(error?.offset == offset, "\(String(describing: error))")
    }

    @Test(arguments: ["01", "-01", "00", "[01]", "-00.5", "012e3"])
    func leadingZerosAreRejected(_ text: String) {
        #expect(parseError(text)?.message == "leading zeros are not allowed")
    }

    @Test func zeroFormsAreAccepted() throws {
        #expect(try JSONValue(parsing: "0") == 0)
        #expect(try JSONValue(parsing: "-0") == 0)
        #expect(try JSONValue(parsing: "0.5") == 0.5)
        #expect(try JSONValue(parsing: "[0,-0.0e0]") == [0, -0.0])
    }

    @Test func errorMessageAndDescription() {
        let error = parseError("[1, 2 3]")
        #expect(error == JSONParseError(offset: 6, message: "expected ',' or ']'"))
        #expect(error?.description == "invalid JSON at byte 6: expected ',' or ']'")
        #expect(parseError(#"{"a":1 "b"}"#)?.message == "expected ',' or '}'")
        #expect(parseError("[1,")?.message == "unexpected end of input, expected a value")
        #expect(parseError(#""abc"#)?.message == "unterminated string")
        // Offsets count UTF-8 bytes, not characters.
        #expect(parseError("[\"é\" x]")?.offset == 6)
    }

    @Test func nestingDepthLimit() {
        #expect(parseError(nestedArrays(512)) == nil)
        #expect(parseError(nestedArrays(513))?.offset == 512)
        #expect(parseError(nestedArrays(513))?.message == "maximum nesting depth of 512 exceeded")
        let objects = { (depth: Int) in
            String(repeating: #"{"a":"#, count: depth) + "1" + String(repeating: "}", count: depth)
        }
        #expect(parseError(objects(512)) == nil)
        #expect(parseError(objects(513)) != nil)
        #expect(parseError("[[1]]", maxDepth: 2) == nil)
        #expect(parseError("[[[1]]]", maxDepth: 2) != nil)
        #expect(parseError("[{}]", maxDepth: 2) == nil)
        #expect(parseError("[{\"a\":[]}]", maxDepth: 2) != nil)
        #expect(parseError("7", maxDepth: 0) == nil)
        #expect(parseError("[]", maxDepth: 0) != nil)
    }

    /// The parser does not recurse, so a raised limit is not bounded by the thread's stack.
    @Test func raisedDepthLimit() throws {
        let depth = 5000
        var value = try JSONValue(parsing: nestedArrays(depth), maxDepth: depth)
        var levels = 0
        while let inner = value[0] {
            levels += 1
            value = inner
        }
        #expect(levels == depth - 1)
    }
}

// MARK: - API surface

@Suite struct JSONValueAPITests {
    @Test func literalsBuildTheMatchingCases() {
        let value: JSONValue = ["s": "x", "i": 3, "d": 2.5, "b": true, "n": nil, "a": [1, "two"], "o": ["k": []]]
        let expected = JSONValue.object([
            "s": .string("x"), "i": .int(3), "d": .double(2.5), "b": .bool(true), "n": .null,
            "a": .array([.int(1), .string("two")]), "o": .object(["k": .array([])]),
        ])
        #expect(value == expected)
        #expect(value.description == #"{"s":"x","i":3,"d":2.5,"b":true,"n":null,"a":[1,"two"],"o":{"k":[]}}"#)
        #expect("\(JSONValue.array([1, nil]))" == "[1,null]")
    }

    @Test func accessors() {
        let value: JSONValue = ["a": [10, 2.5, "s", true, nil], "big": .bigInt("100000000000000000000")]
        #expect(value["a"]?[0]?.intValue == 10)
        #expect(value["a"]?[0]?.doubleValue == 10)
        #expect(value["a"]?[1]?.doubleValue == 2.5)
        #expect(value["a"]?[1]?.intValue == nil)
        #expect(value["a"]?[2]?.stringValue == "s")
        #expect(value["a"]?[3]?.boolValue == true)
        #expect(value["a"]?[4]?.isNull == true)
        #expect(value["a"]?[5] == nil)
        #expect(value["a"]?[-1] == nil)
        #expect(value["a"]?.arrayValue?.count == 5)
        #expect(value["missing"] == nil)
        #expect(value[0] == nil)
        #expect(value["a"]?["a"] == nil)
        #expect(value.objectValue?.keys.elementsEqual(["a", "big"]) == true)
        #expect(value["big"]?.intValue == nil)
        #expect(value["big"]?.doubleValue == 1e20)
        #expect(JSONValue.string("1").intValue == nil)
        #expect(JSONValue.int(1).stringValue == nil)
        #expect(JSONValue.int(0).boolValue == nil)
        #expect(!JSONValue.int(0).isNull)
        #expect(JSONValue.null.arrayValue == nil)
        #expect(JSONValue.null.objectValue == nil)
    }

    @Test func typeNames() {
        let values: [JSONValue] = [nil, true, 1, .bigInt("100000000000000000000"), 1.5, "s", [], [:]]
        #expect(
            values.map(\.typeName) == ["null", "boolean", "integer", "integer", "number", "string", "array", "object"]
        )
    }

    @Test func hashingMatchesEquality() {
        let set: Set<JSONValue> = [1, 1.0, "1", [1], ["1": 1], .double(.nan), .double(.nan), .double(0), .double(-0.0)]
        #expect(set.count == 7)
        #expect(set.contains(.double(.nan)))
    }

    @Test func inputCollections() throws {
        let text = #"{"k":[1,2.5,"v"]}"#
        let expected: JSONValue = ["k": [1, 2.5, "v"]]
        #expect(try JSONValue(parsing: text) == expected)
        #expect(try JSONValue(parsing: Array(text.utf8)) == expected)
        #expect(try JSONValue(parsing: Data(text.utf8)) == expected)
        #expect(try JSONValue(parsing: AnyCollection(Array(text.utf8))) == expected)
        #expect(try JSONValue(parsing: text.utf8.lazy.map { $0 }) == expected)
        let framed = Array("xx\(text)yy".utf8)
        #expect(try JSONValue(parsing: framed[2..<(framed.count - 2)]) == expected)
        // Offsets are relative to the start of the slice.
        let bad = Array("xx[1 2]".utf8)
        var offset: Int?
        do { _ = try JSONValue(parsing: bad[2...]) } catch { offset = error.offset }
        #expect(offset == 3)
    }

    @Test func serializeAppendsToExistingBuffer() {
        var buffer = Array("frame:".utf8)
        JSONValue.array([1, "a"]).serialize(into: &buffer)
        JSONValue.null.serialize(into: &buffer)
        #expect(String(decoding: buffer, as: UTF8.self) == #"frame:[1,"a"]null"#)
    }

    @Test func codableThroughFoundation() throws {
        struct Envelope: Codable, Equatable {
            var id: String
            var args: JSONValue
            var kwargs: JSONValue
        }
        let envelope = Envelope(
            id: "t1",
            args: [1, 2.5, "x", nil, true, [[]]],
            kwargs: ["nested": ["deep": [-7]]]
        )
        let data = try JSONEncoder().encode(envelope)
        let decoded = try JSONDecoder().decode(Envelope.self, from: data)
        #expect(decoded == envelope)
        // The Foundation output is valid JSON for our own parser too.
        let parsed = try JSONValue(parsing: data)
        #expect(parsed["args"] == envelope.args)
        // Big integers keep their digits, as a string.
        let big = try JSONEncoder().encode([JSONValue.bigInt("123456789012345678901234567890")])
        #expect(try JSONValue(parsing: big) == ["123456789012345678901234567890"])
    }
}

/// The Python-style text used for stored result meta: kombu's `json.dumps` defaults.
@Suite struct JSONValuePythonStyleTests {
    @Test func separatorsAndEscapesAreThoseOfPythonsJsonDumps() throws {
        let value: JSONValue = [
            "status": "SUCCESS", "result": [1, 2.5, "é", "𝄞", nil, true, "tab\t\"q\"\\", "\u{1F}"], "children": [],
        ]
        // Python: json.dumps({"status": "SUCCESS", "result": [1, 2.5, "é", "𝄞", None, True, 'tab\t"q"\\', "\x1f"],
        //                     "children": []})
        let expected =
            #"{"status": "SUCCESS", "result": [1, 2.5, "\u00e9", "\ud834\udd1e", null, true, "tab\t\"q\"\\", "\u001f"], "children": []}"#
        #expect(String(decoding: value.pythonSerialized(), as: UTF8.self) == expected)
        #expect(try JSONValue(parsing: value.pythonSerialized()) == value)
        // The compact form is unchanged.
        #expect(value.jsonString.hasPrefix(#"{"status":"SUCCESS","result":[1,2.5,"é""#))
    }
}

/// Deferred members (`JSONValue.parsing(_:deferring:)`): the pool child leaves a task's request context as text.
@Suite struct JSONValueDeferredMemberTests {
    @Test func deferredMembersComeBackAsTheirTextAndTheRestIsParsed() throws {
        let text =
            #"{"type":"execute","request" : {"a":"}\"]","b":[1,{"c":null}],"d":-1.5e3} ,"#
            + #""n":12,"s":"x","body":[[1],{}],"t":true}"#
        let (value, raw) = try JSONValue.parsing(Array(text.utf8), deferring: ["request", "n", "s", "t", "absent"])
        #expect(
            raw["request"].map { String(decoding: $0, as: UTF8.self) } == #"{"a":"}\"]","b":[1,{"c":null}],"d":-1.5e3}"#
        )
        #expect(raw["n"].map { String(decoding: $0, as: UTF8.self) } == "12")
        #expect(raw["s"].map { String(decoding: $0, as: UTF8.self) } == #""x""#)
        #expect(raw["t"].map { String(decoding: $0, as: UTF8.self) } == "true")
        #expect(raw["absent"] == nil)
        #expect(value == ["type": "execute", "request": nil, "n": nil, "s": nil, "body": [[1], [:]], "t": nil])
        // The same text without deferral parses as before, and its deferred parts parse to the same members.
        let whole = try JSONValue(parsing: text)
        #expect(try JSONValue(parsing: raw["request"]!) == whole["request"])
    }

    @Test func onlyTheOutermostObjectDefers() throws {
        let (value, raw) = try JSONValue.parsing(
            Array(#"{"x":{"request":[1]},"request":[]}"#.utf8),
            deferring: ["request"]
        )
        #expect(value == ["x": ["request": [1]], "request": nil])
        #expect(raw["request"].map(Array.init) == Array("[]".utf8))
        let (array, none) = try JSONValue.parsing(Array(#"[{"request":1}]"#.utf8), deferring: ["request"])
        #expect(array == [["request": 1]])
        #expect(none.isEmpty)
    }

    @Test func aDeferredMemberThatDoesNotEndIsAnError() {
        for bad in [
            #"{"request":{"a":1"#, #"{"request":"abc"#, #"{"request":}"#, #"{"request":{"a":"\"#, #"{"request":]}"#,
        ] {
            #expect(throws: JSONParseError.self, "\(bad)") {
                try JSONValue.parsing(Array(bad.utf8), deferring: ["request"])
            }
        }
    }
}
