import Foundation
import Testing

@testable import SwiftqCore

/// `YAMLImplicitTags` types plain scalars as Yams' `Resolver.default` did when Yams read the configuration: the
/// expected tags below and in Fixtures/yaml-implicit-tags.txt were recorded from Yams 6.2.2.
@Suite struct YAMLImplicitTagsTests {
    /// (plain scalar, the tag Yams gave it).
    static let examples: [(String, YAMLTag)] = [
        ("", .null),
        ("~", .null),
        ("null", .null),
        ("Null", .null),
        ("NULL", .null),
        ("nULL", .str),
        ("yes", .bool),
        ("Yes", .bool),
        ("YES", .bool),
        ("yEs", .str),
        ("no", .bool),
        ("on", .bool),
        ("OFF", .bool),
        ("true", .bool),
        ("False", .bool),
        ("y", .str),
        ("n", .str),
        ("0", .int),
        ("-0", .int),
        ("+0", .int),
        ("00", .int),
        ("010", .int),
        ("0o17", .int),
        ("0o", .str),
        ("0b", .str),
        ("0b101", .int),
        ("-0b1_0", .int),
        ("0x", .str),
        ("0x1F", .int),
        ("0xg", .str),
        ("12", .int),
        ("1_000", .int),
        ("_1", .str),
        ("1__", .int),
        ("01_", .int),
        ("0_", .int),
        ("09", .float),
        ("08.5", .float),
        ("1:20", .int),
        ("1:60", .str),
        ("190:20:30", .int),
        ("1:2:3", .int),
        ("1:", .str),
        (":1", .str),
        ("0:30", .str),
        ("1:20.5", .float),
        ("1:20.", .float),
        ("-1:2:3.4", .float),
        ("1.5", .float),
        ("1.", .float),
        (".5", .float),
        ("._", .float),
        (".", .str),
        ("-.5", .str),
        ("1e5", .float),
        ("1e", .str),
        ("1e+5", .float),
        ("1.5E-3", .float),
        (".5e5", .str),
        (".5e+5", .float),
        (".inf", .float),
        ("-.inf", .float),
        ("+.Inf", .float),
        (".INF", .float),
        ("inf", .str),
        (".nan", .float),
        ("-.nan", .str),
        (".NaN", .float),
        ("NaN", .str),
        ("<<", .merge),
        ("<", .str),
        ("=", .value),
        ("==", .str),
        ("2001-12-14", .timestamp),
        ("2001-12-1", .str),
        ("2001-1-1t1:02:03", .timestamp),
        ("2001-12-14t21:59:43.10-05:00", .timestamp),
        ("2001-12-14 21:59:43.10 -5", .timestamp),
        ("2001-12-14T21:59:43Z", .timestamp),
        ("2001-12-14T21:59:43 Z", .timestamp),
        ("2001-12-14T21:59:43+", .str),
        ("2001-12-14T21:59:43+1:", .str),
        ("2001-12-14  \t21:59:43.", .timestamp),
        ("2001-12-14T21:59", .str),
        ("20011-12-14", .str),
        ("2001-123-1", .str),
        ("true\n", .bool),
        ("5\r\n", .int),
        ("5\n\n", .str),
        ("5 ", .int),
        ("5", .int),
        ("~\r", .null),
        ("\n", .null),
        ("5 ", .str),
        (" 5", .str),
        ("1,000", .str),
        ("one", .str),
        ("redis://localhost:6379/0", .str),
        ("30s", .str),
        ("5m", .str),
        ("١٢", .str),
        ("５", .str),
    ]

    @Test(arguments: examples)
    func matchesYamsOnExamples(_ string: String, _ tag: YAMLTag) {
        #expect(YAMLImplicitTags.resolve(string) == tag, "\(string.debugDescription)")
    }

    /// Random strings over the characters the rules care about, and shapes the random strings rarely hit
    /// (numbers, times and dates with random digits).
    static func generatedStrings() -> [String] {
        let alphabet = Array("0123456789_:.-+eExXoObB TtZz\tainfNINFulyesrAY~<=\n\r")
        var generator = TagFuzzGenerator(state: 20_241_122)
        var strings: [String] = []
        for _ in 0..<20_000 {
            let length = Int(generator.next() % 14)
            var string = ""
            for _ in 0..<length { string.append(alphabet[Int(generator.next() % UInt64(alphabet.count))]) }
            strings.append(string)
        }
        let shapes = ["d", "dd:dd", "d_d:d.d", "dddd-dd-dd", "dddd-d-dTdd:dd:dd.dd+dd:dd", "-d.ddEd", ".dde-d"]
        for shape in shapes {
            for _ in 0..<500 {
                var string = ""
                for character in shape {
                    string.append(character == "d" ? Character(String(generator.next() % 10)) : character)
                }
                strings.append(string)
            }
        }
        return strings
    }

    @Test func matchesYamsOnGeneratedStrings() throws {
        let url = try #require(Bundle.module.url(forResource: "Fixtures/yaml-implicit-tags", withExtension: "txt"))
        let recorded = try String(contentsOf: url, encoding: .utf8).split(separator: "\n")
            .filter { !$0.hasPrefix("#") }.joined()
        let codes: [Character: YAMLTag] = [
            "b": .bool, "i": .int, "f": .float, "m": .merge, "n": .null, "t": .timestamp, "v": .value, "s": .str,
        ]
        let strings = Self.generatedStrings()
        try #require(recorded.count == strings.count)
        var mismatches: [String] = []
        for (string, code) in zip(strings, recorded) where YAMLImplicitTags.resolve(string) != codes[code] {
            mismatches.append(string)
        }
        #expect(mismatches.isEmpty, "\(mismatches.prefix(20).map(\.debugDescription))")
    }
}

/// SplitMix64, so a failure reproduces.
private struct TagFuzzGenerator {
    var state: UInt64

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var value = state
        value = (value ^ (value >> 30)) &* 0xBF58_476D_1CE4_E5B9
        value = (value ^ (value >> 27)) &* 0x94D0_49BB_1331_11EB
        return value ^ (value >> 31)
    }
}
