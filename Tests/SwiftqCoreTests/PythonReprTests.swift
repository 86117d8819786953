import Foundation
import SwiftqCore
import Testing

/// One row: a value as JSON text, the limit, and Celery's `saferepr` of it as a list (or dict or scalar) and, for
/// arrays, as a tuple.
struct ReprCase: Sendable, CustomTestStringConvertible {
    var json: String
    var limit: Int
    var list: String
    var tuple: String?

    init(_ json: String, _ limit: Int, _ list: String, _ tuple: String?) {
        self.json = json
        self.limit = limit
        self.list = list
        self.tuple = tuple
    }

    var testDescription: String { "\(json.prefix(40)) limit \(limit)" }
}

/// `PythonRepr` against `celery.utils.saferepr.saferepr`, which is what Celery puts in `argsrepr`/`kwargsrepr`.
/// The expected strings were computed by Celery 5.7 with `dev/python-repr-table.py`; rows too long for a source line
/// are in `Fixtures/python-repr/long.json`, written by the same script.
@Suite struct PythonReprTests {
    static let cases: [ReprCase] = [
        ReprCase("null", 1024, "None", nil),
        ReprCase("true", 1024, "True", nil),
        ReprCase("false", 1024, "False", nil),
        ReprCase("0", 1024, "0", nil),
        ReprCase("-5", 1024, "-5", nil),
        ReprCase("12345678901234567890123", 1024, "12345678901234567890123", nil),
        ReprCase("-98765432109876543210", 1024, "-98765432109876543210", nil),
        ReprCase("1.5", 1024, "1.5", nil),
        ReprCase("0.1", 1024, "0.1", nil),
        ReprCase("5.0", 1024, "5.0", nil),
        ReprCase("-0.0", 1024, "-0.0", nil),
        ReprCase("1e16", 1024, "1e+16", nil),
        ReprCase("1e15", 1024, "1000000000000000.0", nil),
        ReprCase("123456789012345.6", 1024, "123456789012345.6", nil),
        ReprCase("1e-05", 1024, "1e-05", nil),
        ReprCase("0.0001", 1024, "0.0001", nil),
        ReprCase("0.00012345", 1024, "0.00012345", nil),
        ReprCase("1.7976931348623157e308", 1024, "1.7976931348623157e+308", nil),
        ReprCase("5e-324", 1024, "5e-324", nil),
        ReprCase("2.5e-10", 1024, "2.5e-10", nil),
        ReprCase("-1.25e+22", 1024, "-1.25e+22", nil),
        ReprCase("NaN", 1024, "nan", nil),
        ReprCase("Infinity", 1024, "inf", nil),
        ReprCase("-Infinity", 1024, "-inf", nil),
        ReprCase("\"\"", 1024, "''", nil),
        ReprCase("\"a\"", 1024, "'a'", nil),
        ReprCase("\"it's\"", 1024, "'it\\'s'", nil),
        ReprCase("\"say \\\"hi\\\"\"", 1024, "'say \"hi\"'", nil),
        ReprCase("\"both ' and \\\"\"", 1024, "'both \\' and \"'", nil),
        ReprCase("\"line\\nbreak\"", 1024, "'line\nbreak'", nil),
        ReprCase("\"back\\\\slash\"", 1024, "'back\\slash'", nil),
        ReprCase("\"tab\\there\"", 1024, "'tab\there'", nil),
        ReprCase("\"h\\u00e9llo \\u2713 \\ud834\\udd1e\"", 1024, "'héllo ✓ 𝄞'", nil),
        ReprCase("[]", 1024, "[]", "()"),
        ReprCase("{}", 1024, "{}", nil),
        ReprCase("[1, \"a\"]", 1024, "[1, 'a']", "(1, 'a')"),
        ReprCase("{\"k\": null}", 1024, "{'k': None}", nil),
        ReprCase("[1]", 1024, "[1]", "(1,)"),
        ReprCase("[1, [2, [3, [4, [5]]]]]", 1024, "[1, [2, [3, [...]]]]", "(1, [2, [3, [...]]])"),
        ReprCase("{\"a\": {\"b\": {\"c\": {\"d\": 1}}}}", 1024, "{'a': {'b': {'c': {...}}}}", nil),
        ReprCase("[[[[]]]]", 1024, "[[[[...]]]]", "([[[...]]],)"),
        ReprCase("[{\"x\": [1, {\"y\": 2}]}, []]", 1024, "[{'x': [1, {...}]}, []]", "({'x': [1, {...}]}, [])"),
        ReprCase("[[[{}], []], {}]", 1024, "[[[{...}], []], {}]", "([[{...}], []], {})"),
        ReprCase("[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]", 10, "[1, 2, 3, , ...]", "(1, 2, 3, , ...)"),
        ReprCase("[[1, 2, 3], [4, 5, 6]]", 8, "[[1, 2, , ...]]", "([1, 2, , ...])"),
        ReprCase("{\"alpha\": [1, 2, 3], \"beta\": 2}", 12, "{'alpha': [1..., ...]}", nil),
        ReprCase("\"hello world again\"", 9, "'hello...'", nil),
        ReprCase("[\"hello world\", \"x\"]", 6, "['hello...', ...]", "('hello...', ...)"),
        ReprCase("[1, 2]", 4, "[1, , ...]", "(1, , ...)"),
        ReprCase("[123, 4]", 3, "[12..., ...]", "(12..., ...)"),
        ReprCase("{\"k\": \"a b c d e f\"}", 9, "{'k': 'a...'}", nil),
        ReprCase("[[[\"deep\", \"deeper\"], 2], 3]", 5, "[[['de...', ...]]]", "([['de...', ...]])"),
    ]

    static let longCases: [ReprCase] = {
        guard let url = try? CeleryFixture.url(directory: "python-repr", file: "long.json"),
            let text = try? String(contentsOf: url, encoding: .utf8),
            let rows = try? JSONValue(parsing: text).arrayValue
        else { return [] }
        return rows.compactMap { row in
            guard let json = row["json"]?.stringValue, let limit = row["limit"]?.intValue,
                let list = row["list"]?.stringValue
            else { return nil }
            return ReprCase(json, Int(limit), list, row["tuple"]?.stringValue)
        }
    }()

    @Test(arguments: cases + longCases)
    func matchesCelerySaferepr(_ row: ReprCase) throws {
        let value = try JSONValue(parsing: row.json)
        #expect(PythonRepr.repr(value, limit: row.limit) == row.list)
        if let tuple = row.tuple {
            #expect(PythonRepr.argsRepr(value.arrayValue ?? [], limit: row.limit) == tuple)
        }
    }

    @Test func longCasesWereLoaded() {
        #expect(Self.longCases.count >= 6)
    }

    @Test func noLimitAndOtherLevels() {
        let deep: JSONValue = [1, [2, [3, [4, [5]]]]]
        #expect(PythonRepr.repr(deep, maxLevels: 0) == "[1, [2, [3, [4, [5]]]]]")
        #expect(PythonRepr.repr(deep, maxLevels: 1) == "[1, [...]]")
        let long = JSONValue.string(String(repeating: "word ", count: 400))
        #expect(PythonRepr.repr(long, limit: nil).count == 2_002)
    }

    @Test func aHugeListCostsOnlyWhatFits() {
        let huge = JSONValue.array(Array(repeating: .int(7), count: 300_000))
        let repr = PythonRepr.repr(huge)
        #expect(repr.hasSuffix(", ...]"))
        #expect(repr.count < 1_100)
    }

    @Test func pythonFloatFormatting() {
        #expect(PythonRepr.repr(.double(100)) == "100.0")
        #expect(PythonRepr.repr(.double(1e22)) == "1e+22")
        #expect(PythonRepr.repr(.double(-2.5e-7)) == "-2.5e-07")
        #expect(PythonRepr.repr(.double(9_999_999_999_999_998)) == "9999999999999998.0")
        #expect(PythonRepr.repr(.double(0.3)) == "0.3")
        #expect(PythonRepr.repr(.double(1.0 / 3.0)) == "0.3333333333333333")
    }
}
