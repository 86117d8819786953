import Foundation
import OrderedCollections
import SwiftqCore
import Testing

/// A Redis envelope's headers stay text after decoding (``LazyJSONObject``): the decoder reads the headers it needs in
/// the same pass that validates them, and the dictionary is built only for a reader of ``TaskMessage/headers``.
@Suite struct LazyHeadersTests {
    /// An envelope in kombu's layout whose `headers` member is `headers`, JSON text as given.
    static func envelope(headers: String, extra: String = "") -> [UInt8] {
        let body = Data(#"[[2, 3], {}, {"callbacks": null}]"#.utf8).base64EncodedString()
        let text =
            #"{"body": "\#(body)", "content-encoding": "utf-8", "content-type": "application/json", "headers": "#
            + headers + extra
            + #", "properties": {"correlation_id": "c1", "reply_to": "r1", "delivery_mode": 2, "#
            + #""delivery_info": {"exchange": "", "routing_key": "celery"}, "priority": 0, "#
            + #""body_encoding": "base64", "delivery_tag": "t1"}}"#
        return Array(text.utf8)
    }

    static let celeryHeaders =
        #"{"lang": "py", "task": "tasks.add", "id": "a1", "shadow": null, "eta": null, "expires": null, "#
        + #""group": "g1", "group_index": 3, "retries": 2, "timelimit": [30, 20], "root_id": "r0", "#
        + #""parent_id": "p0", "argsrepr": "(2, 3)", "kwargsrepr": "{}", "origin": "gen1@host", "#
        + #""ignore_result": false, "replaced_task_nesting": 1, "stamped_headers": ["s"], "stamps": {"s": ["v"]}, "#
        + #""x-custom": {"body": [1, {"headers": null}]}, "x-delivery-count": 7}"#

    @Test func theTypedFieldsAndTheHeadersAreWhatTheTextSays() throws {
        let envelope = try RedisEnvelope.decode(Self.envelope(headers: Self.celeryHeaders))
        #expect(!envelope.headerObject.isDecoded)
        let task = try TaskMessage.decode(envelope)
        #expect(task.id == "a1")
        #expect(task.name == "tasks.add")
        #expect(task.group == "g1")
        #expect(task.groupIndex == 3)
        #expect(task.retries == 2)
        #expect(task.timeLimit == TaskMessage.TimeLimit(hard: 30, soft: 20))
        #expect(task.rootID == "r0")
        #expect(task.parentID == "p0")
        #expect(task.argsRepr == "(2, 3)")
        #expect(task.origin == "gen1@host")
        #expect(task.ignoreResult == false)
        #expect(task.deliveryCount == 7)
        #expect(task.replacedTaskNesting == 1)

        // The dictionary, when read, is the parse of the text: every header, in order, nested members included (a
        // nested "body" or "headers" is an ordinary member, not one the envelope's parse defers).
        let expected = try #require(try JSONValue(parsing: Self.celeryHeaders).objectValue)
        #expect(task.headers == expected)
        #expect(envelope.headers == expected)
        #expect(task.headers["x-custom"] == ["body": [1, ["headers": nil]]])
        #expect(Array(task.headers.keys).prefix(3) == ["lang", "task", "id"])
    }

    /// The headers' text is copied out of the envelope: a slice of it would keep the whole envelope (base64 body
    /// included) alive as long as the task is held.
    @Test func theKeptTextIsACopyOfTheHeadersNotASliceOfTheEnvelope() throws {
        let bytes = Self.envelope(headers: Self.celeryHeaders, extra: "")
        let envelope = try RedisEnvelope.decode(bytes)
        let kept = try #require(envelope.headerObject.keptText)
        #expect(kept.startIndex == 0)
        #expect(kept.count == Self.celeryHeaders.utf8.count)
        #expect(kept.elementsEqual(Self.celeryHeaders.utf8))
    }

    @Test func aHeaderGivenTwiceHasItsLastValueInTheFieldAndTheDictionary() throws {
        let headers = #"{"task": "tasks.add", "id": "first", "retries": 1, "id": "last", "x-delivery-count": 3}"#
        let task = try TaskMessage.decode(RedisEnvelope.decode(Self.envelope(headers: headers)))
        #expect(task.id == "last")
        #expect(task.headers["id"] == "last")
        #expect(Array(task.headers.keys) == ["task", "id", "retries", "x-delivery-count"])
        #expect(task.deliveryCount == 3)
    }

    /// JSON lets an object repeat a member; the last `headers` of the envelope is its headers, whole.
    @Test func theLastHeadersMemberOfTheEnvelopeCountsAndNothingOfAnEarlierOne() throws {
        let first = #"{"task": "tasks.first", "id": "1", "retries": 5, "x-delivery-count": 9}"#
        let last = #"{"task": "tasks.add", "id": "2"}"#
        let task = try TaskMessage.decode(
            RedisEnvelope.decode(Self.envelope(headers: first, extra: #", "headers": "# + last))
        )
        #expect(task.name == "tasks.add")
        #expect(task.id == "2")
        #expect(task.retries == 0)
        #expect(task.deliveryCount == nil)
        #expect(task.headers == ["task": "tasks.add", "id": "2"])
    }

    @Test func aHeaderNameWithEscapesIsRecognised() throws {
        let headers = #"{"t\u0061sk": "tasks.add", "\u0069d": "a1", "retri\u0065s": 4, "x-d\u0065livery-count": 2}"#
        let task = try TaskMessage.decode(RedisEnvelope.decode(Self.envelope(headers: headers)))
        #expect(task.name == "tasks.add")
        #expect(task.id == "a1")
        #expect(task.retries == 4)
        #expect(task.deliveryCount == 2)
        #expect(task.headers["retries"] == 4)
    }

    @Test func redeliveredIsReadFromTheHeadersText() throws {
        let headers = #"{"task": "tasks.add", "id": "a1", "redelivered": true}"#
        let envelope = try RedisEnvelope.decode(Self.envelope(headers: headers))
        #expect(envelope.redelivered)
        #expect(try TaskMessage.decode(envelope).redelivered)
    }

    /// Invalid JSON anywhere in the headers fails the envelope's decoding, as when they were decoded at once: the
    /// text kept is always valid. The offset is the envelope's.
    @Test func invalidHeadersFailTheEnvelopeAtTheirOffset() throws {
        for bad in [
            #"{"task": "tasks.add", "id": "a1", "lang": tru}"#,
            #"{"task": "tasks.add", "id": "a1", "x": [1, 2,]}"#,
            #"{"task": "tasks.add", "id": "a1", "x": 01}"#,
            #"{"task": "tasks.add", "id": "a1" "x": 1}"#,
            #"{"task": "tasks.add", "id": "a1", 5: 1}"#,
        ] {
            let bytes = Self.envelope(headers: bad)
            var caught: MessageDecodingError?
            do {
                _ = try RedisEnvelope.decode(bytes)
            } catch {
                caught = error
            }
            #expect(caught?.code == .notJSON, "\(bad)")
            var expected: JSONParseError?
            do {
                _ = try JSONValue(parsing: bytes)
            } catch {
                expected = error
            }
            #expect(caught?.message == "envelope is not JSON: \(try #require(expected))", "\(bad)")
        }
        // A headers member that is not an object: `null` is no headers, anything else is refused.
        let none = try RedisEnvelope.decode(Self.envelope(headers: "null"))
        #expect(none.headers.isEmpty)
        #expect(throws: MessageDecodingError.self) { try RedisEnvelope.decode(Self.envelope(headers: "[1]")) }
    }

    @Test func theHeadersOfAMessageChangeInPlaceAndCompareWithDecodedOnes() throws {
        let bytes = Self.envelope(headers: Self.celeryHeaders)
        var task = try TaskMessage.decode(RedisEnvelope.decode(bytes))
        let copy = task
        let decoded = try TaskMessage.decode(
            contentType: "application/json",
            contentEncoding: "utf-8",
            headers: try #require(try JSONValue(parsing: Self.celeryHeaders).objectValue),
            properties: try RedisEnvelope.decode(bytes).properties,
            body: Array(#"[[2, 3], {}, {"callbacks": null}]"#.utf8),
            redelivered: false
        )
        #expect(task == decoded)

        task.headers["x-delivery-count"] = 12
        #expect(task.headers["x-delivery-count"] == 12)
        #expect(task.deliveryCount == 12)
        #expect(task.headers["lang"] == "py")
        #expect(copy.deliveryCount == 7)
        #expect(copy.headers["x-delivery-count"] == 7)
        #expect(task != copy)
    }

    /// The parse hands over the members of the visited member only (not those of a nested object of that name, nor
    /// of a non-object), validates them in full, and returns its text.
    @Test func theVisitedMemberIsHandedOverMemberByMemberAndValidated() throws {
        func visit(_ text: String, maxDepth: Int = 512) throws(JSONParseError) -> (seen: [String], raw: String?) {
            var seen: [String] = []
            let parsed = try JSONValue.parsing(
                Array(text.utf8),
                deferring: ["h", "b"],
                visitingMembersOf: "h",
                maxDepth: maxDepth
            ) { key, value in
                seen.append(key.map { String(decoding: $0, as: UTF8.self) + "=" + value.jsonString } ?? "new")
            }
            #expect(parsed.value["h"] == nil || parsed.value["h"] == .null)
            return (seen, parsed.raw["h"].map { String(decoding: $0, as: UTF8.self) })
        }
        let text = #"{"x": {"h": {"no": 1}}, "h": {"a": 1, "b\n": [true], "a": {"h": null}}, "b": "t"}"#
        let result = try visit(text)
        #expect(result.seen == ["new", "a=1", "b\n=[true]", #"a={"h":null}"#])
        #expect(result.raw == #"{"a": 1, "b\n": [true], "a": {"h": null}}"#)
        #expect(try visit(#"{"h": null}"#).seen.isEmpty)
        #expect(try visit(#"{"h": {}}"#).seen == ["new"])

        let invalid = [#"{"h": {"a": 1,}}"#, #"{"h": {"a" 1}}"#, #"{"h": {"a": }}"#, #"{"h": {"a": tru}}"#]
        for bad in invalid + [#"{"h": {5: 1}}"#] {
            #expect(throws: JSONParseError.self, "\(bad)") { try visit(bad) }
        }
        // The visited object is a level of nesting, as when it is built.
        let deep = #"{"h": {"a": [[]]}}"#
        _ = try visit(deep, maxDepth: 4)
        #expect(throws: JSONParseError.self) { try visit(deep, maxDepth: 3) }
        #expect(throws: JSONParseError.self) { try JSONValue(parsing: deep, maxDepth: 3) }
    }
}
