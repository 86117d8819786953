import Foundation
import OrderedCollections
import SwiftqCore
import Testing

/// Decodes the messages real Python Celery 5.7 pushed to Redis (`Fixtures/celery-v2`, written by
/// `dev/capture-celery-fixtures.py`) and checks every field against what the sending call asked for.
@Suite struct TaskMessageFixtureTests {
    @Test(arguments: CeleryFixture.messageNames)
    func everyFixtureDecodes(_ name: String) throws {
        let fixture = try CeleryFixture.load(name)
        let (envelope, task) = try fixture.decoded()
        let headers = try #require(try fixture.envelopeJSON["headers"]?.objectValue)

        #expect(envelope.raw == (try fixture.envelopeBytes))
        #expect(envelope.contentType == "application/json")
        #expect(envelope.contentEncoding == "utf-8")
        #expect(envelope.exchange == "")
        #expect(envelope.routingKey == "celery")
        #expect(envelope.deliveryTag?.count == 36)
        #expect(envelope.headers == headers)
        #expect(
            RedisEnvelope.listKey(queue: envelope.routingKey, priority: envelope.priority) == (try fixture.queueKey)
        )

        #expect(task.id == headers["id"]?.stringValue)
        #expect(task.name == headers["task"]?.stringValue)
        #expect(task.headers == headers)
        #expect(task.correlationID == task.id)
        #expect(task.replyTo?.count == 36)
        #expect(task.origin?.hasPrefix("gen") == true)
        // Python's argsrepr/kwargsrepr are reproduced exactly; send_task(args=[...]) sends a list, the rest a tuple.
        let argsRepr = name == "unicode-nested" ? PythonRepr.repr(.array(task.args)) : PythonRepr.argsRepr(task.args)
        #expect(task.argsRepr == argsRepr)
        #expect(task.kwargsRepr == PythonRepr.repr(.object(task.kwargs)))
    }

    @Test func plainAdd() throws {
        let (envelope, task) = try CeleryFixture.load("add").decoded()
        #expect(task.name == "tasks.add")
        #expect(task.args == [.int(2), .int(3)])
        #expect(task.kwargs == [:])
        #expect(task.embed == ["callbacks": nil, "errbacks": nil, "chain": nil, "chord": nil])
        #expect(task.embed == TaskMessage.defaultEmbed)
        #expect(task.callbacks.isEmpty && task.errbacks.isEmpty && task.chain.isEmpty && task.chord == nil)
        #expect(task.rootID == task.id)
        #expect(task.parentID == nil)
        #expect(task.group == nil && task.groupIndex == nil)
        #expect(task.shadow == nil)
        #expect(task.displayName == "tasks.add")
        #expect(task.eta == nil && task.expires == nil)
        #expect(task.retries == 0)
        #expect(task.timeLimit == TaskMessage.TimeLimit(hard: nil, soft: nil))
        #expect(task.argsRepr == "(2, 3)")
        #expect(task.kwargsRepr == "{}")
        #expect(task.ignoreResult == nil)  // send_task of a name the client does not know sends null
        #expect(task.redelivered == false)
        #expect(envelope.priority == 0)
        #expect(envelope.redelivered == false)
        #expect(String(decoding: envelope.body, as: UTF8.self).hasPrefix("[[2, 3], {}, {"))
    }

    @Test func keywordArguments() throws {
        let (_, task) = try CeleryFixture.load("kwargs").decoded()
        #expect(task.args == [])
        #expect(task.kwargs == ["x": 2, "y": 3])
        #expect(Array(task.kwargs.keys) == ["x", "y"])
        #expect(task.argsRepr == "()")
        #expect(task.kwargsRepr == "{'x': 2, 'y': 3}")
    }

    @Test func unicodeAndNestedValuesKeepTheirTypes() throws {
        let (_, task) = try CeleryFixture.load("unicode-nested").decoded()
        #expect(task.name == "tasks.echo")
        #expect(task.args.count == 4)
        #expect(task.args[0] == "héllo ✓ 𝄞")  // sent as JSON \u escapes, a surrogate pair included
        #expect(task.args[1] == [1, [2, ["a": nil]]])
        #expect(task.args[2] == ["k": [true, false, .double(1.5)]])
        #expect(task.args[3] == .bigInt("12345678901234567890123"))
        #expect(Array(task.kwargs.keys) == ["naïve", "nested", "quote"])
        #expect(task.kwargs["naïve"] == "ü")
        #expect(task.kwargs["nested"] == ["deep": [1, 2, ["x": "y"]]])
        #expect(task.kwargs["quote"] == "it's \"q\"\n")
        // saferepr: three levels deep at most, only ' escaped, the newline left as is.
        #expect(task.argsRepr == "['héllo ✓ 𝄞', [1, [2, {...}]], {'k': [True, False, 1.5]}, 12345678901234567890123]")
        #expect(task.kwargsRepr == "{'naïve': 'ü', 'nested': {'deep': [1, 2, {...}]}, 'quote': 'it\\'s \"q\"\n'}")
    }

    @Test(arguments: [("priority-5", 5, "celery\u{06}\u{16}3"), ("priority-9", 9, "celery\u{06}\u{16}9")])
    func priorityComesFromPropertiesAndPicksTheBucketList(name: String, priority: Int, key: String) throws {
        let fixture = try CeleryFixture.load(name)
        let (envelope, _) = try fixture.decoded()
        #expect(envelope.priority == priority)
        #expect(try fixture.queueKey == key)
        #expect(RedisEnvelope.listKey(queue: "celery", priority: priority) == key)
    }

    @Test func countdownBecomesAnEtaSixtySecondsAfterSending() throws {
        let fixture = try CeleryFixture.load("countdown")
        let (_, task) = try fixture.decoded()
        let eta = try #require(task.eta)
        let delay = eta.secondsSince1970 - (try fixture.sentAt)
        #expect(delay > 59.5 && delay < 61)
        #expect(eta.iso8601 == task.headers["eta"]?.stringValue)  // formatting gives back Python's text
        #expect(task.expires == nil)
    }

    @Test func expiresIsAnInstantAnHourAfterSending() throws {
        let fixture = try CeleryFixture.load("expires")
        let (envelope, task) = try fixture.decoded()
        let expires = try #require(task.expires)
        let lifetime = expires.secondsSince1970 - (try fixture.sentAt)
        #expect(lifetime > 3599.5 && lifetime < 3601)
        #expect(expires.iso8601 == task.headers["expires"]?.stringValue)
        #expect(envelope.properties["expiration"] == "3600000")
        #expect(task.eta == nil)
    }

    @Test func explicitDatetimesParseToTheExactInstant() throws {
        let (_, task) = try CeleryFixture.load("eta-datetime").decoded()
        // Python's isoformat leaves the fraction out when the microsecond is 0.
        #expect(task.headers["eta"] == "2030-01-02T03:04:05+00:00")
        #expect(task.headers["expires"] == "2030-01-02T04:04:05.123456+00:00")
        #expect(task.eta == CeleryTimestamp(secondsSince1970: 1_893_553_445))
        #expect(task.expires == CeleryTimestamp(secondsSince1970: 1_893_557_045.123456))
        #expect(task.eta?.iso8601 == "2030-01-02T03:04:05+00:00")
        #expect(task.expires?.iso8601 == "2030-01-02T04:04:05.123456+00:00")
    }

    @Test func timeLimitIsHardFirst() throws {
        let (_, task) = try CeleryFixture.load("time-limits").decoded()
        #expect(task.headers["timelimit"] == [30, 20])
        #expect(task.timeLimit.hard == 30)
        #expect(task.timeLimit.soft == 20)
    }

    @Test func customHeadersAreKeptInOrder() throws {
        let (_, task) = try CeleryFixture.load("custom-headers").decoded()
        #expect(task.headers["x-custom"] == "hello")
        #expect(task.headers["x-number"] == 7)
        #expect(Array(task.headers.keys.suffix(3)) == ["stamps", "x-custom", "x-number"])
    }

    @Test func linkAndLinkErrorAreEmbedded() throws {
        let (_, task) = try CeleryFixture.load("link").decoded()
        #expect(task.callbacks.count == 1)
        #expect(task.callbacks.first?["task"] == "tasks.mul")
        #expect(task.callbacks.first?["args"] == [10])
        #expect(task.callbacks.first?["immutable"] == false)
        #expect(task.errbacks.count == 1)
        #expect(task.errbacks.first?["task"] == "tasks.log_error")
        #expect(task.errbacks.first?["immutable"] == true)
        #expect(task.chain.isEmpty)
    }

    @Test func chainHoldsTheRestInReverseOrder() throws {
        let (_, task) = try CeleryFixture.load("chain").decoded()
        // add(2, 3) | mul(10) | add(1): this message is add(2, 3); the next step is the *last* element.
        #expect(task.args == [2, 3])
        #expect(task.chain.count == 2)
        #expect(task.chain.last?["task"] == "tasks.mul")
        #expect(task.chain.last?["args"] == [10])
        #expect(task.chain.first?["task"] == "tasks.add")
        #expect(task.chain.first?["args"] == [1])
        #expect(task.chain.last?["options"]?["task_id"]?.stringValue?.count == 36)
    }

    @Test func groupAndWorkflowIDs() throws {
        let (_, task) = try CeleryFixture.load("group-parent").decoded()
        #expect(task.group == "0b2f1c3e-4d5a-4b6c-8d7e-9f0a1b2c3d4e")
        #expect(task.groupIndex == 1)
        #expect(task.rootID == "11111111-2222-4333-8444-555555555555")
        #expect(task.parentID == "66666666-7777-4888-9999-aaaaaaaaaaaa")
    }

    @Test func ignoreResultIsTrueFalseOrNull() throws {
        #expect(try CeleryFixture.load("ignore-result").decoded().task.ignoreResult == true)
        #expect(try CeleryFixture.load("registered-apply-async").decoded().task.ignoreResult == false)
        #expect(try CeleryFixture.load("add").decoded().task.ignoreResult == nil)
    }

    @Test func shadowNameIsTheDisplayName() throws {
        let (_, task) = try CeleryFixture.load("shadow").decoded()
        #expect(task.name == "tasks.add")
        #expect(task.shadow == "tasks.add.shadowed")
        #expect(task.displayName == "tasks.add.shadowed")
    }

    @Test func zlibCompressedBodyIsInflated() throws {
        let (envelope, task) = try CeleryFixture.load("compression-zlib").decoded()
        #expect(task.headers["compression"] == "application/x-gzip")
        #expect(envelope.body.prefix(2) == [0x78, 0x9C])  // a zlib stream, not gzip, despite the name
        #expect(task.args == [2, 3])
        #expect(task.embed == TaskMessage.defaultEmbed)
    }

    @Test func restoredMessageIsRedelivered() throws {
        let (envelope, task) = try CeleryFixture.load("redelivered").decoded()
        #expect(envelope.redelivered)
        #expect(task.redelivered)
        #expect(envelope.headers["redelivered"] == true)
        #expect(envelope.properties["delivery_info"]?["redelivered"] == true)
    }

    @Test func protocolOneIsRefusedNamingTheTask() throws {
        let fixture = try CeleryFixture.load("protocol1-add")
        let envelope = try RedisEnvelope.decode(try fixture.envelopeBytes)
        #expect(envelope.headers.isEmpty)
        let id = try #require(envelope.properties["correlation_id"]?.stringValue)
        let error = try #require(throws: MessageDecodingError.self) { try TaskMessage.decode(envelope) }
        #expect(error.code == .protocolV1)
        #expect(error.taskID == id)
        #expect(error.taskName == "tasks.add")
        #expect(error.message.contains("protocol 1"))
        #expect(error.message.contains(id))
        #expect(error.message.contains("tasks.add"))
        #expect(error.description.hasPrefix("protocol_v1: "))
    }
}
