import Testing
import Yams

@testable import SwiftqCore

/// `YAMLImplicitTags` replaces Yams' regular-expression resolver (see its doc comment): it must type every plain
/// scalar exactly as `Resolver.default` does.
@Suite struct YAMLImplicitTagsTests {
    static func yamsTag(_ string: String) -> String {
        Resolver.default.resolveTag(of: Node(string)).rawValue
    }

    static let examples = [
        "", "~", "null", "Null", "NULL", "nULL", "yes", "Yes", "YES", "yEs", "no", "on", "OFF", "true", "False",
        "y", "n", "0", "-0", "+0", "00", "010", "0o17", "0o", "0b", "0b101", "-0b1_0", "0x", "0x1F", "0xg", "12",
        "1_000", "_1", "1__", "01_", "0_", "09", "08.5", "1:20", "1:60", "190:20:30", "1:2:3", "1:", ":1", "0:30",
        "1:20.5", "1:20.", "-1:2:3.4", "1.5", "1.", ".5", "._", ".", "-.5", "1e5", "1e", "1e+5", "1.5E-3", ".5e5",
        ".5e+5", ".inf", "-.inf", "+.Inf", ".INF", "inf", ".nan", "-.nan", ".NaN", "NaN", "<<", "<", "=", "==",
        "2001-12-14", "2001-12-1", "2001-1-1t1:02:03", "2001-12-14t21:59:43.10-05:00", "2001-12-14 21:59:43.10 -5",
        "2001-12-14T21:59:43Z", "2001-12-14T21:59:43 Z", "2001-12-14T21:59:43+", "2001-12-14T21:59:43+1:",
        "2001-12-14  \t21:59:43.", "2001-12-14T21:59", "20011-12-14", "2001-123-1", "true\n", "5\r\n", "5\n\n",
        "5\u{2028}", "5\u{85}", "~\r", "\n", "5 ", " 5", "1,000", "one", "redis://localhost:6379/0", "30s", "5m",
        "١٢", "５",
    ]

    @Test(arguments: examples)
    func matchesYamsOnExamples(_ string: String) {
        #expect(YAMLImplicitTags.resolve(string).rawValue == Self.yamsTag(string), "\(string.debugDescription)")
    }

    @Test func matchesYamsOnGeneratedStrings() {
        let alphabet = Array("0123456789_:.-+eExXoObB TtZz\tainfNINFulyesrAY~<=\n\r")
        var generator = TagFuzzGenerator(state: 20_241_122)
        var mismatches: [String] = []
        for _ in 0..<20_000 {
            let length = Int(generator.next() % 14)
            var string = ""
            for _ in 0..<length { string.append(alphabet[Int(generator.next() % UInt64(alphabet.count))]) }
            if YAMLImplicitTags.resolve(string).rawValue != Self.yamsTag(string) { mismatches.append(string) }
        }
        // Shapes the random strings rarely hit: numbers, times and dates with random digits.
        let shapes = ["d", "dd:dd", "d_d:d.d", "dddd-dd-dd", "dddd-d-dTdd:dd:dd.dd+dd:dd", "-d.ddEd", ".dde-d"]
        for shape in shapes {
            for _ in 0..<500 {
                var string = ""
                for character in shape {
                    string.append(character == "d" ? Character(String(generator.next() % 10)) : character)
                }
                if YAMLImplicitTags.resolve(string).rawValue != Self.yamsTag(string) { mismatches.append(string) }
            }
        }
        #expect(mismatches.isEmpty, "\(mismatches.prefix(20).map(\.debugDescription))")
    }

    @Test func retagTypesPlainScalarsOnlyAndKeepsExplicitTagsAndQuotes() throws {
        let yaml = """
            a: 5
            b: "5"
            c: !!str 5
            d: [yes, 'no', ~, 1.5, <<, 2001-12-14]
            e: {f: 0x1F, g: text, 7: seven, ~: null key, on: bool key}
            <<: {h: merge key}
            """
        let retagged = try #require(try YAMLImplicitTags.compose(yaml))
        let reference = try #require(try Yams.compose(yaml: yaml))
        func tags(_ node: Node) -> [String] {
            switch node {
            case .scalar: [node.tag.rawValue]
            case .mapping(let mapping): mapping.flatMap { tags($0.key) + tags($0.value) }
            case .sequence(let sequence): sequence.flatMap(tags)
            case .alias: ["alias"]
            }
        }
        #expect(tags(retagged) == tags(reference))
        // Keys a to h; values "5", !!str 5, 'no', text, seven, null key, bool key and merge key.
        #expect(tags(retagged).filter { $0 == Tag.Name.str.rawValue }.count == 16)
    }
}

/// Keys that differ only in type collide under `Resolver.basic`; the fallback keeps Yams' own view of them.
@Suite struct YAMLImplicitTagsDuplicateKeyTests {
    @Test func plainAndQuotedKeysOfOneTextAreDistinctAsBefore() throws {
        let yaml = "yes: 1\n\"yes\": 2\n"
        let composed = try #require(try YAMLImplicitTags.compose(yaml))
        #expect(composed == (try Yams.compose(yaml: yaml)))
    }

    @Test func trueDuplicatesAreStillAnError() {
        #expect(throws: YamlError.self) { try YAMLImplicitTags.compose("a: 1\na: 2\n") }
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
