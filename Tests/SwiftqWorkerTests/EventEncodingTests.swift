import Foundation
import OrderedCollections
import SwiftqCore
import Testing

@testable import SwiftqConsumer

/// The direct byte encoders of the events path give exactly what the ``JSONValue`` trees they replaced gave: the
/// event body (``EventDispatcher/body(_:_:now:)`` against ``EventDispatcher/event(_:_:now:)``) and the kombu
/// envelope on Redis (``OutboundMessage/redisEnvelope(deliveryTag:)`` against the tree built below, the encoder
/// as it was).
@Suite struct EventEncodingTests {
    /// The kombu envelope as a ``JSONValue`` object, serialized: the reference.
    private static func referenceEnvelope(_ message: OutboundMessage, deliveryTag: String) -> [UInt8] {
        var properties: OrderedDictionary<String, JSONValue> = [:]
        if let correlationID = message.correlationID { properties["correlation_id"] = .string(correlationID) }
        properties["reply_to"] = message.replyTo.map(JSONValue.string) ?? .null
        properties["delivery_mode"] = .int(message.persistent ? 2 : 1)
        if let expiration = message.expiration { properties["expiration"] = .string(expiration) }
        properties["delivery_info"] = [
            "exchange": .string(message.exchange), "routing_key": .string(message.routingKey),
        ]
        properties["priority"] = .int(Int64(message.priority ?? 0))
        properties["body_encoding"] = "base64"
        properties["delivery_tag"] = .string(deliveryTag)
        let envelope: JSONValue = [
            "body": .string(Base64.encode(message.body)),
            "content-encoding": .string(message.contentEncoding),
            "content-type": .string(message.contentType),
            "headers": .object(message.headers),
            "properties": .object(properties),
        ]
        return envelope.serialized()
    }

    private static var messages: [OutboundMessage] {
        var plain = OutboundMessage(exchange: "celeryev", exchangeType: .fanout, routingKey: "task.received", body: [])
        plain.persistent = false
        plain.headers = ["hostname": "w1@host"]
        var full = OutboundMessage(
            exchange: "ex \"quoted\" é",
            routingKey: "rk\n\\tab\t",
            body: Array(#"[[1, "ü"], {}, {"chain": null}]"#.utf8)
        )
        full.correlationID = "id-1"
        full.replyTo = "reply.queue"
        full.priority = 7
        full.expiration = "1500"
        full.contentType = "application/x-python-serialize"
        full.contentEncoding = "binary"
        full.headers = [
            "lang": "py", "task": "tasks.add", "stamped_headers": [], "x-big": .int(123_456_789_012_345_678),
            "x-float": 0.1, "nested": ["a": [1, .null, true]], "control\u{01}": "\u{7F}\u{1F}",
        ]
        var messages = [plain, full]
        for length in 1...5 {
            var message = plain
            message.body = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 97 &+ 200) }
            messages.append(message)
        }
        return messages
    }

    @Test func theRedisEnvelopeIsTheOneTheJSONTreeGave() throws {
        var tags = EventDeliveryTags()
        for message in Self.messages {
            let tag = tags.next()
            let envelope = message.redisEnvelope(deliveryTag: tag)
            #expect(envelope == Self.referenceEnvelope(message, deliveryTag: tag))
            // And kombu's decoder of it gets the body back.
            #expect(try RedisEnvelope.decode(envelope).body == message.body)
        }
    }

    private static let fieldSets: [(String, OrderedDictionary<String, JSONValue>)] = [
        (
            "task-received",
            [
                "uuid": "3f1c", "name": "tasks.add", "args": "(2, 3)", "kwargs": "{}", "root_id": .null,
                "parent_id": "p", "retries": 0, "eta": .null, "expires": "2026-01-01T00:00:00+00:00",
            ]
        ),
        ("task-started", ["uuid": "3f1c"]),
        ("task-succeeded", ["uuid": "3f1c", "result": "'é \"x\"'", "runtime": 0.000123]),
        ("task-failed", ["uuid": "u", "exception": "ValueError('bad\\n')", "traceback": "Traceback\n  line\t1"]),
        ("worker-heartbeat", ["freq": 2.0, "active": 1, "processed": 99, "loadavg": [0.5, 1, 1.25]]),
        ("task-custom-type", [:]),
    ]

    @Test func theEventBodyIsTheSerializedEvent() throws {
        var direct = EventDispatcher(hostname: "w1@höst \"q\"", pid: 4242, exchangeType: .fanout)
        var reference = direct
        for now in [1_700_000_000.5, 1_700_000_000.25, 1_700_003_600.125, 0] {
            for (type, fields) in Self.fieldSets {
                let body = direct.body(type, fields, now: now)
                #expect(body == reference.event(type, fields, now: now).serialized())
            }
        }
        #expect(direct.clock == reference.clock)
        // The message carries the body, Celery's routing key and the hostname header.
        let message = direct.message("task-custom-type", [:], now: 5)
        #expect(message.routingKey == "task.custom.type")
        #expect(message.headers == ["hostname": "w1@höst \"q\""])
        #expect(message.body == reference.event("task-custom-type", [:], now: 5).serialized())
    }

    @Test func aNewHostnameOrPidIsInTheNextEvent() throws {
        var dispatcher = EventDispatcher(hostname: "a@h", pid: 1, exchangeType: .topic)
        _ = dispatcher.body("task-started", ["uuid": "x"], now: 1)
        dispatcher.hostname = "b@h"
        dispatcher.pid = 2
        let event = try JSONValue(parsing: dispatcher.message("task-started", ["uuid": "x"], now: 2).body)
        #expect(event["hostname"] == "b@h")
        #expect(event["pid"] == 2)
        #expect(event["clock"] == 2)
        #expect(dispatcher.message("task-started", [:], now: 2).headers == ["hostname": "b@h"])
    }

    /// A field named like one of Celery's own replaces it in place, as the tree did.
    @Test func aFieldNamedLikeCelerysOwnTakesItsPlace() throws {
        var direct = EventDispatcher(hostname: "w@h", pid: 1, exchangeType: .fanout)
        var reference = direct
        let fields: OrderedDictionary<String, JSONValue> = ["uuid": "u", "pid": 99, "type": "other"]
        #expect(
            direct.body("task-started", fields, now: 3) == reference.event("task-started", fields, now: 3).serialized()
        )
    }

    @Test func routingKeysAreTheTypeWithDots() {
        for type in [
            "task-received", "task-started", "task-succeeded", "task-failed", "task-retried", "task-revoked",
            "task-rejected", "worker-online", "worker-heartbeat", "worker-offline", "plain",
        ] {
            #expect(EventDispatcher.routingKey(type) == type.replacingOccurrences(of: "-", with: "."))
        }
    }

    @Test func deliveryTagsAreUniqueHex() {
        var tags = EventDeliveryTags()
        var seen = Set<String>()
        for _ in 0..<10_000 {
            let tag = tags.next()
            #expect(tag.utf8.count == 32)
            #expect(tag.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) })
            seen.insert(tag)
        }
        #expect(seen.count == 10_000)
        var first = EventDeliveryTags()
        var second = EventDeliveryTags()
        #expect(first.next() != second.next())
    }
}
