import Foundation
import OrderedCollections
import Testing

@testable import SwiftqCore

/// Members whose values differ between any two sends: compared by presence and position only.
private let volatileKeys: Set<String> = [
    "id", "root_id", "correlation_id", "reply_to", "delivery_tag", "origin", "body", "eta", "expires", "expiration",
]

private func roundTrip(_ message: TaskMessage, queue: String = "celery", priority: Int = 0) throws -> TaskMessage {
    let bytes = message.redisEnvelope(queue: queue, priority: priority, replyTo: message.replyTo, deliveryTag: "tag-1")
    return try TaskMessage.decode(try RedisEnvelope.decode(bytes))
}

@Suite struct TaskMessageEnvelopeTests {
    @Test func everyFieldSurvivesARoundTrip() throws {
        let message = TaskMessage(
            id: "0d6b9c1e-2f3a-4b5c-8d7e-9f0a1b2c3d4e",
            name: "tasks.echo",
            args: ["héllo ✓ 𝄞", 1, .bigInt("123456789012345678901234567890"), 2.5, nil, [true, ["a": []]]],
            kwargs: ["z": 1, "a": ["nested": "value"], "quote": "it's \"q\"\n"],
            embed: ["callbacks": [["task": "tasks.mul", "args": [10]]], "errbacks": nil, "chain": [], "chord": nil],
            shadow: "echo-shadow",
            rootID: "11111111-2222-4333-8444-555555555555",
            parentID: "66666666-7777-4888-9999-aaaaaaaaaaaa",
            group: "0b2f1c3e-4d5a-4b6c-8d7e-9f0a1b2c3d4e",
            groupIndex: 3,
            eta: CeleryTimestamp(secondsSince1970: 1_795_299_792.185780),
            expires: CeleryTimestamp(secondsSince1970: 1_893_553_445),
            retries: 2,
            timeLimit: TaskMessage.TimeLimit(hard: 30, soft: 12.5),
            origin: "gen42@host",
            ignoreResult: true,
            replyTo: "643f4a9c-455c-36c1-b925-bfb2e65dd65d",
            extraHeaders: [
                "x-custom": "hello", "stamps": ["on_signature": ["mark"]], "stamped_headers": ["on_signature"],
            ]
        )
        #expect(try roundTrip(message) == message)
        #expect(message.argsRepr == "('héllo ✓ 𝄞', 1, 123456789012345678901234567890, 2.5, None, [True, {'a': [...]}])")
        #expect(message.kwargsRepr == "{'z': 1, 'a': {'nested': 'value'}, 'quote': 'it\\'s \"q\"\n'}")
        #expect(message.correlationID == message.id)
    }

    @Test func defaultsSurviveARoundTrip() throws {
        let message = TaskMessage(id: "a", name: "tasks.add", args: [2, 3])
        #expect(message.rootID == "a")
        #expect(message.embed == TaskMessage.defaultEmbed)
        #expect(try roundTrip(message) == message)
    }

    @Test func aCurrentTimeSurvivesARoundTrip() throws {
        // Timestamps hold microseconds, as Python's datetime does, so any instant formats and parses back exactly.
        for offset in [0, 0.1, 1e-7, 59.9999996, 86_400.123_456_5] {
            let message = TaskMessage(id: "a", name: "tasks.add", eta: CeleryTimestamp.now.advanced(by: offset))
            #expect(try roundTrip(message) == message)
        }
    }

    /// Messages captured from Python decode, re-encode and decode to the same message (compression and the
    /// redelivered flag describe one delivery and are not carried over, so those two fixtures are left out).
    @Test(arguments: CeleryFixture.messageNames.filter { $0 != "compression-zlib" && $0 != "redelivered" })
    func pythonMessagesSurviveARoundTrip(_ name: String) throws {
        let (envelope, task) = try CeleryFixture.load(name).decoded()
        let again = try roundTrip(task, queue: envelope.routingKey, priority: envelope.priority)
        #expect(again == task)
    }

    @Test func deliveryHeadersAreNotCarriedOver() throws {
        for name in ["compression-zlib", "redelivered"] {
            let (_, task) = try CeleryFixture.load(name).decoded()
            let again = try roundTrip(task)
            #expect(again.headers["compression"] == nil)
            #expect(again.headers["redelivered"] == nil)
            #expect(again.redelivered == false)
            #expect(again.args == task.args)
        }
    }

    /// The envelope swiftq builds has Python's members in Python's order, with values of the same JSON types.
    @Test(arguments: ["add", "expires", "time-limits", "countdown", "eta-datetime", "group-parent", "shadow"])
    func envelopeHasPythonsStructure(_ name: String) throws {
        let fixture = try CeleryFixture.load(name)
        let (envelope, python) = try fixture.decoded()
        let message = TaskMessage(
            id: "0d6b9c1e-2f3a-4b5c-8d7e-9f0a1b2c3d4e",
            name: python.name,
            args: python.args,
            kwargs: python.kwargs,
            shadow: python.shadow,
            rootID: python.rootID,
            parentID: python.parentID,
            group: python.group,
            groupIndex: python.groupIndex,
            eta: python.eta,
            expires: python.expires,
            timeLimit: python.timeLimit,
            origin: "gen42@host"
        )
        let built = try JSONValue(
            parsing: message.redisEnvelope(
                queue: "celery",
                priority: envelope.priority,
                replyTo: "643f4a9c-455c-36c1-b925-bfb2e65dd65d",
                now: CeleryTimestamp(secondsSince1970: try fixture.sentAt)
            )
        )
        let expected = try fixture.envelopeJSON
        #expect(built.masking(volatileKeys).shape == expected.masking(volatileKeys).shape)
        #expect(
            Array(built.objectValue?.keys ?? []) == [
                "body", "content-encoding", "content-type", "headers", "properties",
            ]
        )
        // Beyond the types: the values that do not change between sends are Python's.
        #expect(built["headers"]?.masking(volatileKeys) == expected["headers"]?.masking(volatileKeys))
        #expect(built["properties"]?.masking(volatileKeys) == expected["properties"]?.masking(volatileKeys))
        // The body decodes to the same JSON as Python's (Python adds spaces; swiftq writes compact JSON).
        let builtEnvelope = try RedisEnvelope.decode(built.serialized())
        #expect(try JSONValue(parsing: builtEnvelope.body) == (try JSONValue(parsing: envelope.body)))
    }

    @Test func expirationIsMillisecondsUntilExpiresAndNeverNegative() throws {
        let now = CeleryTimestamp(secondsSince1970: 1_000)
        var message = TaskMessage(id: "a", name: "tasks.add", expires: CeleryTimestamp(secondsSince1970: 4_600.5))
        var envelope = try JSONValue(parsing: message.redisEnvelope(queue: "q", replyTo: nil, now: now))
        #expect(envelope["properties"]?["expiration"] == "3600500")
        #expect(envelope["properties"]?["reply_to"] == .null)
        message.expires = CeleryTimestamp(secondsSince1970: 10)
        envelope = try JSONValue(parsing: message.redisEnvelope(queue: "q", replyTo: nil, now: now))
        #expect(envelope["properties"]?["expiration"] == "0")
        message.expires = nil
        envelope = try JSONValue(parsing: message.redisEnvelope(queue: "q", replyTo: nil, now: now))
        #expect(envelope["properties"]?["expiration"] == nil)
    }

    @Test func priorityAndQueueGoIntoTheProperties() throws {
        let message = TaskMessage(id: "a", name: "tasks.add")
        let envelope = try RedisEnvelope.decode(message.redisEnvelope(queue: "q1", priority: 7, replyTo: "r"))
        #expect(envelope.priority == 7)
        #expect(envelope.routingKey == "q1")
        #expect(envelope.exchange == "")
        #expect(envelope.deliveryTag?.count == 36)
        #expect(envelope.deliveryTag == envelope.deliveryTag?.lowercased())
        #expect(envelope.properties["delivery_mode"] == 2)
        #expect(envelope.properties["body_encoding"] == "base64")
        #expect(RedisEnvelope.listKey(queue: "q1", priority: envelope.priority) == "q1\u{06}\u{16}6")
    }

    @Test func typedPropertiesWinOverStaleHeaders() throws {
        var message = TaskMessage(id: "a", name: "tasks.add", args: [1])
        message.retries = 3
        message.argsRepr = nil  // recomputed, as Python recomputes it for a retry
        message.args = [1, 2]
        let again = try roundTrip(message)
        #expect(again.retries == 3)
        #expect(again.headers["retries"] == 3)
        #expect(again.argsRepr == "(1, 2)")
    }

    @Test(arguments: [
        (0, "q"), (2, "q"), (3, "q\u{06}\u{16}3"), (5, "q\u{06}\u{16}3"), (6, "q\u{06}\u{16}6"),
        (8, "q\u{06}\u{16}6"), (9, "q\u{06}\u{16}9"), (255, "q\u{06}\u{16}9"), (-4, "q"),
    ])
    func priorityBuckets(priority: Int, key: String) {
        #expect(RedisEnvelope.listKey(queue: "q", priority: priority) == key)
    }

    @Test func brpopKeysAreBucketMajor() {
        let sep = RedisEnvelope.prioritySeparator
        #expect(
            RedisEnvelope.listKeys(consuming: ["q1", "q2"]) == [
                "q1", "q2", "q1\(sep)3", "q2\(sep)3", "q1\(sep)6", "q2\(sep)6", "q1\(sep)9", "q2\(sep)9",
            ]
        )
    }
}

/// A message keeps its fields in one box that copies share until one changes: every copy must still behave as a
/// value of its own.
@Suite struct TaskMessageValueTests {
    private func decoded() throws -> TaskMessage {
        let message = TaskMessage(
            id: "t1",
            name: "tasks.add",
            args: [2, 3],
            kwargs: ["x": 1],
            extraHeaders: ["k": "v"]
        )
        return try TaskMessage.decode(
            try RedisEnvelope.decode(message.redisEnvelope(queue: "q", priority: 0, replyTo: nil, deliveryTag: "d"))
        )
    }

    @Test func aChangedCopyLeavesTheOriginalAsItWas() throws {
        let original = try decoded()
        var copy = original
        copy.name = "tasks.mul"
        copy.headers["k"] = "changed"
        copy.retries = 4
        copy.received.exchange = "elsewhere"
        #expect(original.name == "tasks.add" && original.headers["k"] == "v" && original.retries == 0)
        #expect(original.received.exchange == "")
        #expect(copy.name == "tasks.mul" && copy.headers["k"] == "changed" && copy.retries == 4)
        #expect(copy != original)
        // Printed (logs, test failures) with its fields, not the box they are kept in.
        #expect(
            String(describing: original).contains("\"tasks.add\"") && String(describing: copy).contains("tasks.mul")
        )
        // And the other way round: changing the original leaves a copy taken before alone.
        var changed = original
        let before = changed
        changed.args.append(4)
        #expect(before.args == [2, 3] && changed.args == [2, 3, 4])
    }

    @Test func changingTheArgumentsEmptiesTheWireBodyOfThatCopyOnly() throws {
        let original = try decoded()
        #expect(!original.body.isEmpty)
        for change in [
            { (message: inout TaskMessage) in message.args[0] = 7 },
            { (message: inout TaskMessage) in message.kwargs["y"] = 2 },
            { (message: inout TaskMessage) in message.embed = nil },
        ] {
            var copy = original
            change(&copy)
            #expect(copy.body.isEmpty)
            #expect(!original.body.isEmpty)
        }
        var renamed = original
        renamed.name = "tasks.mul"
        #expect(renamed.body == original.body)
    }

    @Test func equalityComparesTheTaskNotItsDelivery() throws {
        let original = try decoded()
        var other = original
        other.body = Array("[[2, 3], {\"x\": 1}, null]".utf8)
        other.received = TaskMessage.Received(properties: ["priority": 5], exchange: "x", routingKey: "y")
        #expect(other == original)
        other.shadow = "s"
        #expect(other != original)
    }
}
