import Foundation
import OrderedCollections
import SwiftqCore
import Testing

/// An envelope in kombu's layout with the given parts; `body` is the task body's text, base64-encoded unless
/// `bodyEncoding` says otherwise.
private func envelope(
    headers: JSONValue = ["task": "tasks.add", "id": "6c1f0000-0000-4000-8000-000000000001"],
    body: String = "[[2, 3], {}, null]",
    contentType: JSONValue = "application/json",
    bodyEncoding: JSONValue = "base64",
    encodedBody: JSONValue? = nil
) -> [UInt8] {
    let value: JSONValue = [
        "body": encodedBody ?? .string(bodyEncoding == "base64" ? Data(body.utf8).base64EncodedString() : body),
        "content-encoding": "utf-8",
        "content-type": contentType,
        "headers": headers,
        "properties": [
            "correlation_id": "6c1f0000-0000-4000-8000-000000000001",
            "delivery_info": ["exchange": "", "routing_key": "celery"],
            "priority": 0,
            "body_encoding": bodyEncoding,
            "delivery_tag": "426a4a73-c114-438c-a00f-573fe2781806",
        ],
    ]
    return value.serialized()
}

/// The error of decoding `bytes` down to a task, or `nil` if it decoded.
private func decodingError(_ bytes: [UInt8]) -> MessageDecodingError? {
    do {
        _ = try TaskMessage.decode(try RedisEnvelope.decode(bytes))
        return nil
    } catch {
        return error
    }
}

private let taskID = "6c1f0000-0000-4000-8000-000000000001"

@Suite struct TaskMessageMalformedTests {
    @Test func theHelperBuildsAValidMessage() throws {
        let task = try TaskMessage.decode(try RedisEnvelope.decode(envelope()))
        #expect(task.args == [2, 3])
        #expect(task.embed == .null)
        // The minimum a Python worker accepts: no root_id, retries or timelimit.
        #expect(task.rootID == nil)
        #expect(task.retries == 0)
        #expect(task.timeLimit == TaskMessage.TimeLimit())
    }

    @Test(arguments: ["not json", "", "{\"body\": ", "\u{FF}"])
    func envelopeThatIsNotJSON(_ text: String) {
        let error = decodingError(Array(text.utf8))
        #expect(error?.code == .notJSON)
        #expect(error?.taskID == nil)
    }

    @Test(arguments: ["[1, 2]", "42", "\"body\"", "null"])
    func envelopeThatIsNotAnObject(_ text: String) {
        #expect(decodingError(Array(text.utf8))?.code == .badEnvelope)
    }

    @Test func envelopeMembersOfTheWrongType() {
        #expect(decodingError(envelope(encodedBody: 42))?.code == .badEnvelope)
        #expect(decodingError(envelope(headers: [1, 2]))?.code == .badEnvelope)
        #expect(decodingError(envelope(contentType: 7))?.code == .badEnvelope)
        let noBody: JSONValue = ["content-type": "application/json", "headers": [:], "properties": [:]]
        #expect(decodingError(noBody.serialized())?.code == .badEnvelope)
    }

    @Test(arguments: [
        "@@@@", "W1s%yLCAzXSwge30sIG51bGxd", "W1syLCAzXSwge30sIG51bGxd=", "W1syLCAz=XSwge30sIG51bGxd", "W",
    ])
    func invalidBase64(_ body: String) {
        let error = decodingError(envelope(encodedBody: .string(body)))
        #expect(error?.code == .badBodyEncoding)
        #expect(error?.taskID == taskID)  // read from the headers before the body failed
        #expect(error?.taskName == "tasks.add")
    }

    @Test func base64WithoutPaddingOrWithLineBreaksIsAccepted() throws {
        let padded = Data("[[2, 30], {}, null]".utf8).base64EncodedString()
        #expect(padded.hasSuffix("="))
        let unpadded = String(padded.filter { $0 != "=" })
        let wrapped = String(padded.prefix(12)) + "\r\n" + String(padded.dropFirst(12)) + "\n"
        for body in [unpadded, wrapped] {
            let task = try TaskMessage.decode(try RedisEnvelope.decode(envelope(encodedBody: .string(body))))
            #expect(task.args == [2, 30])
        }
    }

    /// Bodies are decoded from the envelope's own bytes when their JSON string has no escapes; one that has them
    /// (a utf-8 body with quotes, a base64 body with `\/` as some JSON encoders write `/`) decodes as its
    /// unescaped text would.
    @Test func escapedBodiesDecodeAsTheirUnescapedText() throws {
        let text = #"[["say \"hi\"", "\u00e9\n"], {}, null]"#
        let utf8 = try TaskMessage.decode(try RedisEnvelope.decode(envelope(body: text, bodyEncoding: "utf-8")))
        #expect(utf8.args == ["say \"hi\"", "é\n"])

        let base64Text = Data(#"[["???"], {}, null]"#.utf8).base64EncodedString()
        #expect(base64Text.contains("/"))
        let plain = String(decoding: envelope(body: #"[["???"], {}, null]"#), as: UTF8.self)
        let escaped = Array(plain.replacingOccurrences(of: "/", with: #"\/"#).utf8)
        let task = try TaskMessage.decode(try RedisEnvelope.decode(escaped))
        #expect(task.args == ["???"])
        #expect(try RedisEnvelope.decode(escaped).body == Array(#"[["???"], {}, null]"#.utf8))
    }

    @Test func unknownBodyEncoding() {
        #expect(decodingError(envelope(bodyEncoding: "rot13"))?.code == .badBodyEncoding)
    }

    @Test func bodyWithoutBodyEncodingIsTheStringItself() throws {
        for encoding: JSONValue in [.null, "utf-8"] {
            let task = try TaskMessage.decode(try RedisEnvelope.decode(envelope(bodyEncoding: encoding)))
            #expect(task.args == [2, 3])
        }
    }

    @Test(arguments: [
        "[[2, 3], {}]", "[[2, 3], {}, null, 4]", "{\"args\": [2, 3]}", "[]", "\"args\"", "[{}, {}, null]",
        "[[2, 3], [], null]", "[[2, 3], {}, \"embed\"]", "[[2, 3], {}, []]",
    ])
    func bodyThatIsNotArgsKwargsEmbed(_ body: String) {
        let error = decodingError(envelope(body: body))
        #expect(error?.code == .badBody)
        #expect(error?.taskID == taskID)
    }

    @Test func bodyThatIsNotJSON() {
        let error = decodingError(envelope(body: "[[2, 3], {}, nul"))
        #expect(error?.code == .notJSON)
        #expect(error?.taskID == taskID)
    }

    @Test func missingTaskHeaderIsNotATask() {
        #expect(decodingError(envelope(headers: ["id": .string(taskID)]))?.code == .notATask)
        #expect(decodingError(envelope(headers: [:], body: "{\"hello\": 1}"))?.code == .notATask)
    }

    @Test func missingOrNonStringRequiredHeaders() {
        let noID = decodingError(envelope(headers: ["task": "tasks.add"]))
        #expect(noID?.code == .missingHeader)
        #expect(noID?.taskName == "tasks.add")
        #expect(noID?.message.contains("\"id\"") == true)
        #expect(decodingError(envelope(headers: ["task": "tasks.add", "id": 7]))?.code == .missingHeader)
        let nullTask = decodingError(envelope(headers: ["task": nil, "id": .string(taskID)]))
        #expect(nullTask?.code == .missingHeader)
        #expect(nullTask?.taskID == taskID)
    }

    @Test(arguments: ["application/x-python-serialize", "application/x-yaml", "application/x-msgpack", "text/plain"])
    func contentTypesOtherThanJSONAreDisallowed(_ contentType: String) {
        let error = decodingError(envelope(contentType: .string(contentType)))
        #expect(error?.code == .contentDisallowed)
        #expect(error?.message.contains(contentType) == true)
        #expect(error?.taskID == taskID)
        #expect(error?.taskName == "tasks.add")
    }

    @Test func missingContentTypeIsDisallowed() {
        #expect(decodingError(envelope(contentType: nil))?.code == .contentDisallowed)
    }

    @Test(arguments: ["application/x-bz2", "application/x-lzma", "application/x-brotli", "application/zstd"])
    func compressionsOtherThanZlibAreUnsupported(_ compression: String) {
        let headers: JSONValue = ["task": "tasks.add", "id": .string(taskID), "compression": .string(compression)]
        let error = decodingError(envelope(headers: headers))
        #expect(error?.code == .unsupportedCompression)
        #expect(error?.message.contains(compression) == true)
        #expect(error?.taskID == taskID)
    }

    @Test func zlibHeaderOnABodyThatIsNotZlib() {
        let headers: JSONValue = ["task": "tasks.add", "id": .string(taskID), "compression": "application/x-gzip"]
        #expect(decodingError(envelope(headers: headers))?.code == .badBodyEncoding)
    }

    static let wrongHeaders: [(String, JSONValue)] = [
        ("eta", "soon"), ("expires", 3600), ("eta", "2026-02-30T00:00:00+00:00"), ("retries", "1"),
        ("timelimit", [30]), ("timelimit", ["30", nil]), ("timelimit", 30), ("group_index", 1.5), ("shadow", 3),
        ("ignore_result", "yes"), ("root_id", [:]), ("compression", 1), ("parent_id", 7), ("group", false),
        ("argsrepr", [1]), ("kwargsrepr", 2.5), ("origin", ["host"]),
    ]

    @Test(arguments: wrongHeaders)
    func optionalHeadersOfTheWrongType(name: String, value: JSONValue) {
        let headers: JSONValue = ["task": "tasks.add", "id": .string(taskID), name: value]
        let error = decodingError(envelope(headers: headers))
        #expect(error?.code == .badHeader)
        #expect(error?.message.contains("\"\(name)\"") == true)
        #expect(error?.taskID == taskID)
    }

    @Test func errorDescriptionNamesTheTask() {
        let error = MessageDecodingError(
            .badBody,
            "task body must be [args, kwargs, embed]",
            taskID: "abc",
            taskName: "t"
        )
        #expect(error.description == "bad_body: task body must be [args, kwargs, embed] (task t[abc])")
        #expect(MessageDecodingError(.notJSON, "envelope is not JSON").description == "not_json: envelope is not JSON")
    }
}
