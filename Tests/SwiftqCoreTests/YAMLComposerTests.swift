import Testing

@testable import SwiftqCore

/// The libyaml-based composer: tags, styles, marks, aliases, merge keys kept as keys, and its errors.
@Suite struct YAMLComposerTests {
    static func tags(_ node: YAMLNode) -> [String] {
        switch node {
        case .scalar(let scalar): [scalar.tag.rawValue.replacing("tag:yaml.org,2002:", with: "")]
        case .mapping(let mapping): mapping.flatMap { tags($0.key) + tags($0.value) }
        case .sequence(let sequence): sequence.flatMap(tags)
        }
    }

    @Test func typesPlainScalarsOnlyAndKeepsExplicitTagsAndQuotes() throws {
        let yaml = """
            a: 5
            b: "5"
            c: !!str 5
            d: [yes, 'no', ~, 1.5, <<, 2001-12-14]
            e: {f: 0x1F, g: text, 7: seven, ~: null key, on: bool key}
            <<: {h: merge key}
            i: |
              5
            j: !!int "7"
            """
        let root = try #require(try YAMLComposer.compose(yaml))
        // The tags Yams gave this document (a to h), then a block scalar and an explicit tag on a quoted value.
        #expect(
            Self.tags(root) == [
                "str", "int", "str", "str", "str", "str", "str", "bool", "str", "null", "float", "merge", "timestamp",
                "str", "str", "int", "str", "str", "int", "str", "null", "str", "bool", "str", "merge", "str", "str",
                "str", "str", "str", "int",
            ]
        )
        guard case .mapping(let mapping) = root else {
            Issue.record("root is not a mapping")
            return
        }
        #expect(mapping.map { $0.key.scalar?.string } == ["a", "b", "c", "d", "e", "<<", "i", "j"])
        #expect(mapping[1].value.scalar?.style == .doubleQuoted)
        #expect(mapping[6].value.scalar?.string == "5\n")
        #expect(mapping[3].value.mark == YAMLMark(line: 4, column: 4))
        #expect(mapping[4].value.tag == .map)
        #expect(mapping[3].value.tag == .seq)
    }

    @Test func emptyAndCommentOnlyTextsHaveNoDocument() throws {
        #expect(try YAMLComposer.compose("") == nil)
        #expect(try YAMLComposer.compose("# nothing\n\n") == nil)
    }

    @Test func aliasesCopyTheirAnchoredNodeWithItsMark() throws {
        let root = try #require(try YAMLComposer.compose("a: &x [1, 2]\nb: *x\n"))
        guard case .mapping(let mapping) = root else {
            Issue.record("root is not a mapping")
            return
        }
        #expect(mapping[1].value == mapping[0].value)
        #expect(mapping[1].value.mark == YAMLMark(line: 1, column: 4))
    }

    @Test func anUndefinedAliasIsAnError() {
        #expect(
            throws: YAMLError(code: .undefinedAlias, problem: "found undefined alias", mark: .init(line: 2, column: 4))
        ) {
            try YAMLComposer.compose("a: 1\nb: *x\n")
        }
    }

    @Test func plainAndQuotedKeysOfOneTextAreDistinct() throws {
        let root = try #require(try YAMLComposer.compose("yes: 1\n\"yes\": 2\n"))
        #expect(Self.tags(root) == ["bool", "int", "str", "int"])
    }

    @Test func repeatedKeysAreAnErrorAtTheFirstOccurrenceOfTheFirstSortedKey() {
        #expect(
            throws: YAMLError(
                code: .duplicateKeys,
                problem: "duplicate keys",
                mark: .init(line: 3, column: 1),
                keys: ["a", "b"]
            )
        ) {
            try YAMLComposer.compose("x: 0\nb: 1\na: 1\n'a': 2\nb: 3\n")
        }
    }

    @Test func aNULInADoubleQuotedScalarIsKept() throws {
        let root = try #require(try YAMLComposer.compose("a: \"x\\0y\"\n"))
        guard case .mapping(let mapping) = root else {
            Issue.record("root is not a mapping")
            return
        }
        #expect(mapping[0].value.scalar?.string == "x\u{0}y")
    }

    @Test func syntaxErrorsCarryLibYAMLsProblemContextAndMarks() {
        #expect(
            throws: YAMLError(
                code: .scanner,
                problem: "found unexpected end of stream",
                mark: .init(line: 2, column: 1),
                context: .init(text: "while scanning a quoted scalar", mark: .init(line: 1, column: 4))
            )
        ) {
            try YAMLComposer.compose("a: \"b\n")
        }
    }

    @Test func aSecondDocumentIsAnError() {
        #expect(
            throws: YAMLError(
                code: .multipleDocuments,
                problem: "but found another document",
                mark: .init(line: 2, column: 1)
            )
        ) {
            try YAMLComposer.compose("a: 1\n---\nb: 2\n")
        }
    }

    @Test func controlCharactersAreReaderErrorsWithTheirByteOffset() {
        #expect(
            throws: YAMLError(
                code: .reader,
                problem: "control characters are not allowed",
                byteOffset: 5,
                value: 7
            )
        ) {
            try YAMLComposer.compose("a: é\u{7}\n")
        }
    }

    @Test func aReaderErrorIsLocatedInUnicodeScalars() {
        do {
            _ = try Configuration.parse("worker:\r\n  hostname: é\u{7}\n", file: "config.yaml")
            Issue.record("accepted a control character")
        } catch {
            #expect(
                error.diagnostics == [
                    ConfigurationDiagnostic(
                        file: "config.yaml",
                        line: 2,
                        column: 14,
                        message: "control characters are not allowed (byte 0x7)"
                    )
                ]
            )
        }
    }
}
