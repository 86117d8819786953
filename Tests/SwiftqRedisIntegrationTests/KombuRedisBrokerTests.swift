import Foundation
import SwiftqCore
import SwiftqRedis
import Testing

@Suite("KombuRedisBroker against a private redis-server", .timeLimit(.minutes(1)))
struct KombuRedisBrokerTests {
    @Test func declareWritesBothBindingSets() throws {
        try withBroker { fixture in
            try fixture.broker.declare(queues: ["celery", "high"])
            let member = "celery\u{06}\u{16}\u{06}\u{16}celery"
            for key in ["_kombu.binding.celery", "_kombu.binding_permanent.celery"] {
                let members = try fixture.inspector.command("SMEMBERS", RedisArgument(key)).array?.compactMap(\.string)
                #expect(members == [member])
            }
            #expect(try fixture.inspector.command("SCARD", "_kombu.binding.high") == .integer(1))
        }
    }

    @Test func reserveRecordsExactlyWhatItPops() throws {
        try withBroker { fixture in
            let payload = envelope(tag: "tag-1", queue: "celery")
            try fixture.push(payload, to: "celery")
            let before = try fixture.serverNow()
            let messages = try fixture.broker.reserve(queues: ["celery"], max: 10, owner: "w1")
            #expect(
                messages == [
                    ReservedMessage(
                        queueKey: "celery",
                        queue: "celery",
                        payload: Array(payload.utf8),
                        deliveryTag: "tag-1"
                    )
                ]
            )
            #expect(try fixture.list("celery").isEmpty)
            // kombu's value: [envelope, exchange, routing_key], the envelope byte for byte as popped.
            #expect(try fixture.unacked("tag-1") == "[" + payload + #", "", "celery"]"#)
            let score = try #require(try fixture.indexScore("tag-1"))
            #expect(abs(score - before) < 5)
            #expect(try fixture.owned(by: "w1") == ["tag-1"])
            // Python reads the stored value back as the same envelope.
            let stored = try JSONValue(parsing: try #require(try fixture.unacked("tag-1")))
            #expect(stored[0] == (try JSONValue(parsing: payload)))
            #expect(stored[1] == "")
            #expect(stored[2] == "celery")
        }
    }

    @Test func reserveUsesTheEnvelopesExchangeAndRoutingKey() throws {
        try withBroker { fixture in
            let payload = envelope(tag: "t", queue: "q", exchange: "tasks", routingKey: "tasks.add")
            try fixture.push(payload, to: "q")
            _ = try fixture.broker.reserve(queues: ["q"], max: 1, owner: "w")
            #expect(try fixture.unacked("t") == "[" + payload + #", "tasks", "tasks.add"]"#)
        }
    }

    @Test func reserveRespectsMaxAndQueueOrder() throws {
        try withBroker { fixture in
            for index in 1...5 { try fixture.push(envelope(tag: "m\(index)", queue: "q"), to: "q") }
            let first = try fixture.broker.reserve(queues: ["q"], max: 3, owner: "w")
            #expect(first.map(\.deliveryTag) == ["m1", "m2", "m3"])
            #expect(try fixture.list("q").count == 2)
            #expect(try fixture.unackedCount() == 3)
            let rest = try fixture.broker.reserve(queues: ["q"], max: 3, owner: "w")
            #expect(rest.map(\.deliveryTag) == ["m4", "m5"])
            #expect(try fixture.broker.reserve(queues: ["q"], max: 3, owner: "w").isEmpty)
            #expect(try fixture.broker.reserve(queues: ["q"], max: 0, owner: "w").isEmpty)
            #expect(try fixture.owned(by: "w").count == 5)
        }
    }

    @Test func priorityZeroComesFirstAcrossQueues() throws {
        try withBroker { fixture in
            let layout = fixture.layout
            try fixture.broker.publish(
                envelope: Array(envelope(tag: "a9", queue: "a", priority: 9).utf8),
                queue: "a",
                priority: 9
            )
            try fixture.broker.publish(
                envelope: Array(envelope(tag: "a4", queue: "a", priority: 4).utf8),
                queue: "a",
                priority: 4
            )
            try fixture.broker.publish(
                envelope: Array(envelope(tag: "b0", queue: "b", priority: 0).utf8),
                queue: "b",
                priority: 0
            )
            try fixture.broker.publish(
                envelope: Array(envelope(tag: "b7", queue: "b", priority: 7).utf8),
                queue: "b",
                priority: 7
            )
            #expect(try fixture.list(layout.queueKey(queue: "a", priority: 9)).count == 1)
            let one = try fixture.broker.reserve(queues: ["a", "b"], max: 1, owner: "w")
            #expect(one.map(\.deliveryTag) == ["b0"])
            #expect(one.first?.queue == "b")
            let all = try fixture.broker.reserve(queues: ["a", "b"], max: 10, owner: "w")
            #expect(all.map(\.deliveryTag) == ["a4", "b7", "a9"])
            #expect(all.map(\.queue) == ["a", "b", "a"])
            #expect(all.map(\.queueKey) == ["a\u{06}\u{16}3", "b\u{06}\u{16}6", "a\u{06}\u{16}9"])
        }
    }

    @Test func malformedPayloadsComeBackMarkedAndAreNotRecorded() throws {
        try withBroker { fixture in
            let binary: [UInt8] = [0, 0xFF, 0x7B, 0]
            try fixture.inspector.command("LPUSH", "q", RedisArgument(binary))
            try fixture.push("not json at all", to: "q")
            try fixture.push(#"{"properties": {"delivery_info": {}}}"#, to: "q")
            try fixture.push(#"[1, 2, 3]"#, to: "q")
            try fixture.push(envelope(tag: "good", queue: "q"), to: "q")
            let messages = try fixture.broker.reserve(queues: ["q"], max: 10, owner: "w")
            #expect(messages.count == 5)
            #expect(messages.map(\.isMalformed) == [true, true, true, true, false])
            #expect(messages[0].payload == binary)
            #expect(text(messages[1].payload) == "not json at all")
            #expect(try fixture.unackedCount() == 1)
            #expect(try fixture.indexCount() == 1)
            #expect(try fixture.owned(by: "w") == ["good"])
            #expect(try fixture.list("q").isEmpty)
        }
    }

    /// The reserve script decodes only the envelope's last member when it is `properties` (as kombu writes it);
    /// any other layout, or a `properties` key nested elsewhere, still finds the envelope's own delivery tag.
    @Test func reserveFindsTheEnvelopesOwnTagWhateverTheLayout() throws {
        try withBroker { fixture in
            let body = #""body": "W10=", "content-type": "application/json""#
            func properties(note: String) -> String { #""properties": {"delivery_tag": "real", "note": "\#(note)"}"# }
            let payloads = [
                // properties last: decoded alone, whatever comes before.
                "{" + body + #", "x": {"properties":{"delivery_tag": "fake"}}, "# + properties(note: "{ }") + " }\n",
                // written compactly, as swiftq writes it.
                #"{"body":"W10=","properties":{"delivery_tag":"real"}}"#,
                // properties first, a nested "properties" last: the whole envelope is decoded.
                "{" + properties(note: "") + ", " + body + #", "headers": {"properties": {"delivery_tag": "fake"}}}"#,
                // a header named "properties" before the envelope's own, which is last: decoded alone.
                "{" + body + #", "headers": {"properties": {"delivery_tag": "fake"}}, "# + properties(note: "") + "}",
                // unbalanced braces inside a string of the last member: decoded whole.
                "{" + body + ", " + properties(note: "} {") + "}",
                // the last member's object does not close the envelope.
                "{" + body + ", " + properties(note: "") + #", "x": 1}"#,
                // the search starts in the envelope's last kilobyte: properties that begin before it are found too,
                (#"{"body": "\#(String(repeating: "A", count: 3000))", "#
                    + properties(note: String(repeating: "n", count: 2000)) + "}"),
                // and a "properties" key early on does not hide the envelope's own in the last kilobyte.
                (#"{"headers": {"properties": {"delivery_tag": "fake"}}, "body": ""#
                    + String(repeating: "A", count: 3000) + #"", "# + properties(note: "") + "}"),
                // a key that merely ends in `properties` is not one: the last member's object is not decoded alone.
                "{" + properties(note: "") + ", " + body + #", "notproperties": {"delivery_tag": "fake"}}"#,
                // nor is a quoted `properties":` inside a string value.
                "{" + body + ", " + #""x": "\"properties\": {\"delivery_tag\": \"fake\"}", "#
                    + properties(note: "") + "}",
                // nor is a key that ends in an escaped quote and `properties`, last and closing the envelope.
                "{" + properties(note: "") + ", " + body + #", "a\"properties": {"delivery_tag": "fake"}}"#,
                // two spaces before the object, or a space before the colon: decoded whole.
                "{" + body + #", "properties":  {"delivery_tag": "real"}}"#,
                "{" + body + #", "properties" : {"delivery_tag": "real"}}"#,
                // "properties" last but not an object: decoded whole, and the earlier member is the envelope's.
                "{" + properties(note: "") + ", " + body + #", "x": {"properties": null}}"#,
            ]
            for (index, payload) in payloads.enumerated() {
                try fixture.push(payload, to: "q")
                let messages = try fixture.broker.reserve(queues: ["q"], max: 10, owner: "w")
                #expect(messages.map(\.deliveryTag) == ["real"], "layout \(index)")
                #expect(try fixture.unacked("real") == "[" + payload + #", "", "q"]"#, "layout \(index)")
                #expect(try fixture.broker.ack(tags: ["real"], owner: "w") == 1)
            }
        }
    }

    /// The reserve script reads kombu's and swiftq's properties (delivery_info, then brace-free members, then the
    /// delivery tag closing the envelope) with one pattern instead of decoding them: what it records must be what
    /// decoding the envelope gives, for those layouts and for every look-alike the pattern must not be fooled by.
    @Test func reserveReadsTheTagAndRouteAsDecodingWould() throws {
        try withBroker { fixture in
            let body = #""body": "W10=", "content-type": "application/json""#
            let info = #""delivery_info": {"exchange": "ex", "routing_key": "rk"}"#
            // (payload, the tag, the exchange and routing key recorded beside it in unacked)
            let cases: [(String, String, String, String)] = [
                // kombu's layout, and swiftq's compact one.
                (
                    "{" + body + #", "properties": {"reply_to": "r", "# + info + #", "delivery_tag": "t1"}}"#,
                    "t1", "ex", "rk"
                ),
                (
                    #"{"body":"W10=","properties":{"delivery_info":{"exchange":"ex","routing_key":"rk"},"#
                        + #""priority":0,"delivery_tag":"t2"}}"#, "t2", "ex", "rk"
                ),
                // delivery_info first, nothing between it and the tag.
                ("{" + body + #", "properties": {"# + info + #", "delivery_tag": "t3"}}"#, "t3", "ex", "rk"),
                // the envelope's properties close before another member that holds a delivery_info and a tag.
                (
                    "{" + body + #", "properties": {"delivery_tag": "t4"}, "x": {"# + info
                        + #", "delivery_tag": "fake"}}"#, "t4", "", "q"
                ),
                // a second delivery_info after the first: decoding keeps the last (not an object: no route).
                (
                    "{" + body + #", "properties": {"# + info + #", "delivery_info": null, "delivery_tag": "t5"}}"#,
                    "t5", "", "q"
                ),
                // a key ending in an escaped quote and delivery_info is not delivery_info.
                (
                    "{" + body + #", "properties": {"a\"delivery_info": {"exchange": "ex", "routing_key": "rk"}, "#
                        + #""delivery_tag": "t6"}}"#, "t6", "", "q"
                ),
                // nor is one ending in an escaped quote and delivery_tag, even last.
                (
                    "{" + body + #", "properties": {"# + info + #", "delivery_tag": "t7", "a\"delivery_tag": "x"}}"#,
                    "t7", "ex", "rk"
                ),
                // a repeated delivery_tag: the last one, as decoding keeps.
                (
                    "{" + body + #", "properties": {"# + info + #", "delivery_tag": "x", "delivery_tag": "t8"}}"#,
                    "t8", "ex", "rk"
                ),
                // escapes in a routing key or the tag: decoded.
                (
                    "{" + body + #", "properties": {"delivery_info": {"exchange": "ex", "routing_key": "r\"k"}, "#
                        + #""delivery_tag": "t9"}}"#, "t9", "ex", #"r"k"#
                ),
                (
                    "{" + body + #", "properties": {"# + info + #", "delivery_tag": "t\u0031\u0030"}}"#,
                    "t10", "ex", "rk"
                ),
                // braces in a string between delivery_info and the tag: decoded.
                (
                    "{" + body + #", "properties": {"# + info + #", "note": "} {", "delivery_tag": "t11"}}"#,
                    "t11", "ex", "rk"
                ),
                // delivery_info with another member, or its members the other way round: decoded.
                (
                    "{" + body + #", "properties": {"delivery_info": {"routing_key": "rk", "exchange": "ex"}, "#
                        + #""delivery_tag": "t12"}}"#, "t12", "ex", "rk"
                ),
                (
                    "{" + body + #", "properties": {"delivery_info": {"exchange": "ex", "routing_key": "rk", "#
                        + #""redelivered": true}, "delivery_tag": "t13"}}"#, "t13", "ex", "rk"
                ),
            ]
            for (index, (payload, tag, exchange, routingKey)) in cases.enumerated() {
                try fixture.push(payload, to: "q")
                let messages = try fixture.broker.reserve(queues: ["q"], max: 10, owner: "w")
                #expect(messages.map(\.deliveryTag) == [tag], "case \(index)")
                func json(_ text: String) -> String {
                    String(decoding: JSONValue.string(text).serialized(), as: UTF8.self)
                }
                let expected = "[" + payload + ", " + json(exchange) + ", " + json(routingKey) + "]"
                let stored = try fixture.unacked(tag)
                #expect(stored == expected, "case \(index)")
                #expect(try fixture.broker.ack(tags: [tag], owner: "w") == 1, "case \(index)")
            }
            // Properties without a tag are malformed (returned as such, not recorded) however much they look like
            // the pattern: an empty tag; a tag in a member after the properties closed; a key that ends in an
            // escaped quote and delivery_tag.
            let untagged = [
                "{" + body + #", "properties": {"# + info + #", "delivery_tag": ""}}"#,
                "{" + body + #", "properties": {"# + info + #"}, "x": {"delivery_tag": "fake"}}"#,
                "{" + body + #", "properties": {"# + info + #", "a\"delivery_tag": "fake"}}"#,
            ]
            for (index, payload) in untagged.enumerated() {
                try fixture.push(payload, to: "q")
                let messages = try fixture.broker.reserve(queues: ["q"], max: 10, owner: "w")
                #expect(messages.map(\.isMalformed) == [true], "untagged \(index)")
                #expect(try fixture.unackedCount() == 0, "untagged \(index)")
            }
            // Not JSON, but ending the way the pattern reads: recorded under its tag, which the consumer rejects it
            // by (RedisTransportTests.aRecordedPayloadThatIsNotJSONIsUndecodableUnderItsTag).
            try fixture.push(#"{"body": W10=, "properties": {"# + info + #", "delivery_tag": "t"}}"#, to: "q")
            #expect(try fixture.broker.reserve(queues: ["q"], max: 10, owner: "w").map(\.deliveryTag) == ["t"])
            #expect(try fixture.broker.ack(tags: ["t"], owner: "w") == 1)
        }
    }

    /// The script records a batch with one HSET, ZADD and SADD per thousand messages: a batch larger than that is
    /// recorded whole, and a tag that repeats keeps the last payload, as one call per message did.
    @Test func reserveRecordsEveryMessageOfALargeBatch() throws {
        try withBroker { fixture in
            let count = 2_500
            for index in 0..<count { try fixture.push(envelope(tag: "m\(index)", queue: "q"), to: "q") }
            try fixture.push(envelope(tag: "dup", queue: "q", routingKey: "first"), to: "q")
            try fixture.push(envelope(tag: "dup", queue: "q", routingKey: "second"), to: "q")
            let messages = try fixture.broker.reserve(queues: ["q"], max: count + 2, owner: "w")
            #expect(messages.count == count + 2)
            #expect(messages.map(\.deliveryTag) == (0..<count).map { "m\($0)" } + ["dup", "dup"])
            #expect(try fixture.unackedCount() == Int64(count + 1))
            #expect(try fixture.indexCount() == Int64(count + 1))
            #expect(try fixture.owned(by: "w").count == count + 1)
            for index in [0, 999, 1000, 1001, 2499] {
                let payload = envelope(tag: "m\(index)", queue: "q")
                #expect(try fixture.unacked("m\(index)") == "[" + payload + #", "", "q"]"#)
                #expect(try fixture.indexScore("m\(index)") != nil)
            }
            let second = envelope(tag: "dup", queue: "q", routingKey: "second")
            #expect(try fixture.unacked("dup") == "[" + second + #", "", "second"]"#)
        }
    }

    /// A reserve sent ahead (the fetcher's pipeline) runs on the server before its reply is read: the messages are
    /// recorded while the caller does other work, and read later in order. A script the server lost meanwhile is
    /// loaded and run again when the reply is read.
    @Test func aReserveSentAheadRunsBeforeItsReplyIsRead() throws {
        try withBroker { fixture in
            for index in 0..<5 { try fixture.push(envelope(tag: "m\(index)", queue: "q"), to: "q") }
            let order = fixture.broker.reserveOrder(queues: ["q"], owner: "w")
            let sent = try fixture.broker.sendReserve(order, max: 2)
            // Not read yet, but sent: another connection sees the script's records.
            let deadline = ContinuousClock.now + .seconds(5)
            while try fixture.unackedCount() < 2, ContinuousClock.now < deadline { usleep(1_000) }
            #expect(try fixture.unackedCount() == 2)
            #expect(try fixture.owned(by: "w") == ["m0", "m1"])
            #expect(try fixture.broker.reserved(sent).map(\.deliveryTag) == ["m0", "m1"])
            // The connection is free again for other calls.
            #expect(try fixture.broker.ack(tags: ["m0"], owner: "w") == 1)

            try fixture.inspector.command("SCRIPT", "FLUSH")
            let afterFlush = try fixture.broker.sendReserve(order, max: 2)
            #expect(try fixture.broker.reserved(afterFlush).map(\.deliveryTag) == ["m2", "m3"])
            // Nothing to ask for: nothing is sent, and nothing is read.
            let none = try fixture.broker.sendReserve(order, max: 0)
            #expect(try fixture.broker.reserved(none).isEmpty)
            #expect(try fixture.broker.reserve(order, max: 5).map(\.deliveryTag) == ["m4"])
        }
    }

    @Test func ackRemovesFromAllThree() throws {
        try withBroker { fixture in
            for tag in ["a", "b", "c"] { try fixture.push(envelope(tag: tag, queue: "q"), to: "q") }
            _ = try fixture.broker.reserve(queues: ["q"], max: 3, owner: "w")
            #expect(try fixture.broker.ack(tags: ["a", "c"], owner: "w") == 2)
            #expect(try fixture.unacked("a") == nil)
            #expect(try fixture.indexScore("a") == nil)
            #expect(try fixture.owned(by: "w") == ["b"])
            #expect(try fixture.unackedCount() == 1)
            #expect(try fixture.broker.ack(tags: ["a"], owner: "w") == 0)
            #expect(try fixture.broker.ack(tags: [], owner: "w") == 0)
        }
    }

    @Test func rejectWithoutRequeueDrops() throws {
        try withBroker { fixture in
            try fixture.push(envelope(tag: "x", queue: "q"), to: "q")
            _ = try fixture.broker.reserve(queues: ["q"], max: 1, owner: "w")
            #expect(try fixture.broker.reject(tag: "x", owner: "w", requeue: false))
            #expect(try fixture.unackedCount() == 0)
            #expect(try fixture.indexCount() == 0)
            #expect(try fixture.list("q").isEmpty)
            #expect(try fixture.owned(by: "w").isEmpty)
        }
    }

    @Test func rejectWithRequeueGoesToTheTail() throws {
        try withBroker { fixture in
            let first = envelope(tag: "m1", queue: "q")
            let second = envelope(tag: "m2", queue: "q")
            try fixture.push(first, to: "q")
            try fixture.push(second, to: "q")
            _ = try fixture.broker.reserve(queues: ["q"], max: 1, owner: "w")
            #expect(try fixture.broker.reject(tag: "m1", owner: "w", requeue: true))
            // Tail (index 0) is where LPUSH adds; m2 is still next in line.
            #expect(try fixture.list("q") == [redelivered(first), second])
            #expect(try fixture.unackedCount() == 0)
            #expect(try fixture.indexCount() == 0)
            #expect(try fixture.owned(by: "w").isEmpty)
            #expect(try !fixture.broker.reject(tag: "m1", owner: "w", requeue: true))
        }
    }

    @Test func restoreOwnedPutsOnlyTheOwnersMessagesBackAtTheHead() throws {
        try withBroker { fixture in
            for tag in ["a1", "a2", "b1", "waiting"] { try fixture.push(envelope(tag: tag, queue: "q"), to: "q") }
            _ = try fixture.broker.reserve(queues: ["q"], max: 1, owner: "A")
            _ = try fixture.broker.reserve(queues: ["q"], max: 1, owner: "A")
            _ = try fixture.broker.reserve(queues: ["q"], max: 1, owner: "B")
            try fixture.broker.ack(tags: [], owner: "A")
            #expect(try fixture.list("q") == [envelope(tag: "waiting", queue: "q")])

            let result = try fixture.broker.restoreOwned(owner: "A")
            #expect(result == KombuRestoreResult(restored: 2, parked: 0))
            // Head is the end of the list: a1 (delivered first) is next, then a2, then the message that waited.
            #expect(
                try fixture.list("q") == [
                    envelope(tag: "waiting", queue: "q"), redelivered(envelope(tag: "a2", queue: "q")),
                    redelivered(envelope(tag: "a1", queue: "q")),
                ]
            )
            #expect(try fixture.unacked("a1") == nil)
            #expect(try fixture.indexScore("a2") == nil)
            #expect(try fixture.owned(by: "A").isEmpty)
            #expect(
                try fixture.inspector.command("EXISTS", RedisArgument(fixture.layout.reservedKey(owner: "A")))
                    == .integer(0)
            )
            // B's delivery is untouched.
            #expect(try fixture.unacked("b1") != nil)
            #expect(try fixture.owned(by: "B") == ["b1"])
            // Nothing left to give back.
            #expect(try fixture.broker.restoreOwned(owner: "A") == KombuRestoreResult())
        }
    }

    /// Giving back some deliveries (a window that shrank): those named, newest first, go to the head one after the
    /// other, so the earliest ends up next in line, with the redelivered marks, and leave every record; the rest stay
    /// reserved; a tag no longer in `unacked` is skipped. A give-back split over two calls (newer tags first) keeps
    /// the delivery order.
    @Test func restoreOfSomeTagsPutsThemAtTheHeadInDeliveryOrder() throws {
        try withBroker { fixture in
            for tag in ["a", "b", "c", "d", "waiting"] { try fixture.push(envelope(tag: tag, queue: "q"), to: "q") }
            _ = try fixture.broker.reserve(queues: ["q"], max: 4, owner: "w")
            #expect(try fixture.broker.restore(tags: ["c", "gone", "b"], owner: "w") == 2)
            #expect(
                try fixture.list("q") == [
                    envelope(tag: "waiting", queue: "q"), redelivered(envelope(tag: "c", queue: "q")),
                    redelivered(envelope(tag: "b", queue: "q")),
                ]
            )
            #expect(try fixture.unacked("b") == nil)
            #expect(try fixture.indexScore("c") == nil)
            #expect(try fixture.owned(by: "w") == ["a", "d"])
            #expect(try fixture.unackedCount() == 2)
            #expect(try fixture.broker.restore(tags: [], owner: "w") == 0)
            // Next in line: b, then c.
            #expect(try fixture.broker.reserve(queues: ["q"], max: 2, owner: "w").map(\.deliveryTag) == ["b", "c"])

            // All four back, in two calls as two writer batches would: newest first throughout.
            #expect(try fixture.broker.restore(tags: ["d", "c"], owner: "w") == 2)
            #expect(try fixture.broker.restore(tags: ["b", "a"], owner: "w") == 2)
            #expect(
                try fixture.broker.reserve(queues: ["q"], max: 5, owner: "w").map(\.deliveryTag)
                    == ["a", "b", "c", "d", "waiting"]
            )
        }
    }

    @Test func restoredMessagesAreReadAsRedeliveredByAJSONParser() throws {
        try withBroker { fixture in
            try fixture.push(envelope(tag: "t", queue: "q"), to: "q")
            _ = try fixture.broker.reserve(queues: ["q"], max: 1, owner: "w")
            try fixture.broker.restoreOwned(owner: "w")
            let again = try fixture.broker.reserve(queues: ["q"], max: 1, owner: "w")
            let value = try JSONValue(parsing: try #require(again.first).payload)
            #expect(value["headers"]?["redelivered"] == true)
            #expect(value["properties"]?["delivery_info"]?["redelivered"] == true)
            #expect(value["headers"]?["stamped_headers"] == [])
            #expect(value["headers"]?["x-big"] == .int(123_456_789_012_345_678))
            // A second restore does not add the marks twice.
            try fixture.broker.restoreOwned(owner: "w")
            #expect(try fixture.list("q") == [redelivered(envelope(tag: "t", queue: "q"))])
        }
    }

    @Test func restoreFallsBackToReencodingWhenTheTextCannotBeEdited() throws {
        try withBroker { fixture in
            let odd =
                #"{"body": "e30=", "headers": {"redelivered": false, "task": "t"}, "properties": {"delivery_tag": "odd", "#
                + #""delivery_info": {"exchange": "", "routing_key": "q"}, "priority": 0}}"#
            try fixture.push(odd, to: "q")
            _ = try fixture.broker.reserve(queues: ["q"], max: 1, owner: "w")
            try fixture.broker.restoreOwned(owner: "w")
            let restored = try JSONValue(parsing: try #require(try fixture.list("q").first))
            #expect(restored["headers"]?["redelivered"] == true)
            #expect(restored["headers"]?["task"] == "t")
            #expect(restored["properties"]?["delivery_info"]?["redelivered"] == true)
        }
    }

    @Test func restoreRoutesByPriorityAndExchangeBindings() throws {
        try withBroker { fixture in
            let sep = KombuRedisLayout.separator
            // A named direct exchange bound to queue "work", and a topic exchange bound to "events".
            try fixture.inspector.command("SADD", "_kombu.binding.direct-ex", RedisArgument("jobs\(sep)\(sep)work"))
            try fixture.inspector.command(
                "SADD",
                "_kombu.binding.topic-ex",
                RedisArgument("tasks.#\(sep)^tasks\\..*?$\(sep)events")
            )
            let messages = [
                envelope(tag: "p5", queue: "q", priority: 5),
                envelope(tag: "direct", queue: "q", exchange: "direct-ex", routingKey: "jobs"),
                envelope(tag: "topic", queue: "q", exchange: "topic-ex", routingKey: "tasks.add.now"),
                envelope(tag: "nobinding", queue: "q", exchange: "unknown-ex", routingKey: "fallback"),
            ]
            for message in messages { try fixture.push(message, to: "q") }
            #expect(try fixture.broker.reserve(queues: ["q"], max: 10, owner: "w").count == 4)
            #expect(try fixture.broker.restoreOwned(owner: "w").restored == 4)
            #expect(try fixture.list("q\(sep)3") == [redelivered(messages[0])])
            #expect(try fixture.list("work") == [redelivered(messages[1])])
            #expect(try fixture.list("events") == [redelivered(messages[2])])
            #expect(try fixture.list("fallback") == [redelivered(messages[3])])
        }
    }

    @Test func unroutableEntriesAreParkedNotLost() throws {
        try withBroker { fixture in
            let stored = "[" + envelope(tag: "lost", queue: "q") + #", "", ""]"#
            try fixture.inspector.command("HSET", "unacked", "lost", RedisArgument(stored))
            try fixture.inspector.command("ZADD", "unacked_index", "1", "lost")
            try fixture.inspector.command("HSET", "unacked", "garbage", "{not json")
            try fixture.inspector.command("ZADD", "unacked_index", "2", "garbage")
            let result = try fixture.broker.restoreVisible(visibilityTimeout: .seconds(10))
            #expect(result == KombuRestoreResult(restored: 0, parked: 2))
            #expect(try fixture.unackedCount() == 0)
            #expect(try fixture.indexCount() == 0)
            #expect(try fixture.inspector.command("HGET", "swiftq.unrestorable", "lost").string == stored)
            #expect(try fixture.inspector.command("HGET", "swiftq.unrestorable", "garbage").string == "{not json")
        }
    }

    /// The index stays a skiplist (a listpack's inserts walk and parse every score): the reserve script adds the
    /// keeper at `+inf`, into a new index and into a small one that a Python worker made a listpack; acking every
    /// delivery leaves it, and no visibility sweep, however short its timeout, takes it for a delivery.
    @Test func theIndexStaysASkiplistWithItsKeeperOutOfEverySweep() throws {
        try withBroker { fixture in
            let keeper = KombuRedisLayout.indexEncodingMember
            #expect(keeper.utf8.count > 64)
            // A Python worker's delivery made the index a listpack (a ziplist before Redis 7).
            try fixture.inspector.command("ZADD", "unacked_index", "1", "python-tag")
            let small = try fixture.inspector.command("OBJECT", "ENCODING", "unacked_index").string
            #expect(small == "listpack" || small == "ziplist")
            for tag in ["a", "b"] { try fixture.push(envelope(tag: tag, queue: "q"), to: "q") }
            _ = try fixture.broker.reserve(queues: ["q"], max: 2, owner: "w")
            #expect(try fixture.inspector.command("OBJECT", "ENCODING", "unacked_index").string == "skiplist")
            #expect(try fixture.indexScore(keeper) == .infinity)
            #expect(try fixture.indexMembers() == ["python-tag", "a", "b", keeper])
            #expect(try fixture.broker.ack(tags: ["a", "b"], owner: "w") == 2)
            #expect(try fixture.indexMembers() == ["python-tag", keeper])
            // A sweep with no timeout at all takes the Python tag (forgotten: it is not in unacked) and passes the
            // keeper.
            _ = try fixture.broker.restoreVisible(visibilityTimeout: .zero)
            #expect(try fixture.indexMembers() == [keeper])

            // A new index (a FLUSHDB, or the first delivery ever) is made a skiplist by the same script.
            try fixture.inspector.command("DEL", "unacked_index")
            try fixture.push(envelope(tag: "c", queue: "q"), to: "q")
            _ = try fixture.broker.reserve(queues: ["q"], max: 1, owner: "w")
            #expect(try fixture.inspector.command("OBJECT", "ENCODING", "unacked_index").string == "skiplist")
            #expect(try fixture.indexMembers() == ["c", keeper])
        }
    }

    @Test func restoreVisibleRestoresOnlyOldEntries() throws {
        try withBroker { fixture in
            for tag in ["old1", "old2", "new"] { try fixture.push(envelope(tag: tag, queue: "q"), to: "q") }
            _ = try fixture.broker.reserve(queues: ["q"], max: 3, owner: "w")
            let now = try fixture.serverNow()
            try fixture.inspector.command("ZADD", "unacked_index", RedisArgument(now - 200), "old1")
            try fixture.inspector.command("ZADD", "unacked_index", RedisArgument(now - 150), "old2")
            let result = try fixture.broker.restoreVisible(visibilityTimeout: .seconds(100))
            #expect(result == KombuRestoreResult(restored: 2))
            // Oldest delivery next in line, like kombu (ZRANGE … REV, then RPUSH each).
            #expect(
                try fixture.list("q") == [
                    redelivered(envelope(tag: "old2", queue: "q")), redelivered(envelope(tag: "old1", queue: "q")),
                ]
            )
            #expect(try fixture.unacked("new") != nil)
            #expect(try fixture.unackedCount() == 1)
            #expect(try fixture.inspector.command("EXISTS", "unacked_mutex") == .integer(0))
        }
    }

    @Test func restoreVisibleRespectsTheMutexAndTheLimit() throws {
        try withBroker { fixture in
            for index in 0..<5 { try fixture.push(envelope(tag: "t\(index)", queue: "q"), to: "q") }
            _ = try fixture.broker.reserve(queues: ["q"], max: 5, owner: "w")
            let now = try fixture.serverNow()
            for index in 0..<5 {
                try fixture.inspector.command(
                    "ZADD",
                    "unacked_index",
                    RedisArgument(now - 1000 - Double(index)),
                    RedisArgument("t\(index)")
                )
            }
            // Another sweeper (a Python worker) holds the mutex: nothing happens, and its lock stays.
            try fixture.inspector.command("SET", "unacked_mutex", "python-token", "PX", "300000")
            let skipped = try fixture.broker.restoreVisible(visibilityTimeout: .seconds(1))
            #expect(skipped == KombuRestoreResult(skippedBecauseMutexHeld: true))
            #expect(try fixture.unackedCount() == 5)
            #expect(try fixture.inspector.command("GET", "unacked_mutex").string == "python-token")

            try fixture.inspector.command("DEL", "unacked_mutex")
            #expect(try fixture.broker.restoreVisible(visibilityTimeout: .seconds(1), limit: 2).restored == 2)
            #expect(try fixture.unackedCount() == 3)
            #expect(try fixture.broker.restoreVisible(visibilityTimeout: .seconds(1)).restored == 3)
            #expect(try fixture.list("q").count == 5)
        }
    }

    @Test func refreshMovesTheScoreToNow() throws {
        try withBroker { fixture in
            try fixture.push(envelope(tag: "long", queue: "q"), to: "q")
            _ = try fixture.broker.reserve(queues: ["q"], max: 1, owner: "w")
            try fixture.inspector.command("ZADD", "unacked_index", "1000", "long")
            #expect(try fixture.broker.refresh(tags: ["long", "gone"]) == 1)
            let score = try #require(try fixture.indexScore("long"))
            #expect(abs(score - (try fixture.serverNow())) < 5)
            #expect(try fixture.indexScore("gone") == nil)
            #expect(try fixture.broker.restoreVisible(visibilityTimeout: .seconds(100)).restored == 0)
        }
    }

    @Test func globalKeyPrefixIsUsedForEveryKey() throws {
        try withBroker(globalKeyPrefix: "pfx:") { fixture in
            try fixture.broker.declare(queues: ["celery"])
            try fixture.broker.publish(
                envelope: Array(envelope(tag: "t", queue: "celery", priority: 3).utf8),
                queue: "celery",
                priority: 3
            )
            #expect(try fixture.inspector.command("EXISTS", "pfx:_kombu.binding.celery") == .integer(1))
            #expect(try fixture.list("pfx:celery\u{06}\u{16}3").count == 1)
            let messages = try fixture.broker.reserve(queues: ["celery"], max: 5, owner: "w")
            #expect(messages.map(\.queueKey) == ["pfx:celery\u{06}\u{16}3"])
            #expect(messages.map(\.queue) == ["celery"])
            #expect(try fixture.inspector.command("HEXISTS", "pfx:unacked", "t") == .integer(1))
            #expect(try fixture.inspector.command("SISMEMBER", "pfx:swiftq.reserved.w", "t") == .integer(1))
            #expect(try fixture.broker.restoreOwned(owner: "w").restored == 1)
            #expect(try fixture.list("pfx:celery\u{06}\u{16}3").count == 1)
            #expect(try fixture.inspector.command("EXISTS", "unacked", "celery") == .integer(0))
        }
    }

    @Test func waitForMessagesWakesOnAPushAndLeavesTheListAlone() throws {
        try withBroker { fixture throws in
            let url = fixture.server.url
            Thread.detachNewThread {
                usleep(300_000)
                if let producer = try? RedisConnection(url: url) { _ = try? producer.command("LPUSH", "q", "hello") }
            }
            let started = ContinuousClock.now
            #expect(try fixture.broker.waitForMessages(queues: ["q", "other"], timeout: .seconds(5)))
            let waited = ContinuousClock.now - started
            #expect(waited >= .milliseconds(250) && waited < .seconds(3))
            #expect(try fixture.list("q") == ["hello"])
        }
    }

    @Test func aBlockedBRPOPConsumerStillGetsTheMessage() throws {
        try withBroker { fixture throws in
            // Our BLMOVE blocks first, then a Python-style BRPOP on the same list, then a producer pushes: Redis
            // serves our no-op move first and the BRPOP next, so the other consumer is not starved.
            let url = fixture.server.url
            let popped = LockedValue<RedisReply?>(nil)
            let done = DispatchSemaphore(value: 0)
            Thread.detachNewThread {
                usleep(150_000)
                let consumer = try? RedisConnection(url: url)
                popped.set(try? consumer?.command("BRPOP", "q", "5"))
                done.signal()
            }
            Thread.detachNewThread {
                usleep(400_000)
                if let producer = try? RedisConnection(url: url) { _ = try? producer.command("LPUSH", "q", "m") }
            }
            #expect(try fixture.broker.waitForMessages(queues: ["q"], timeout: .seconds(5)))
            #expect(done.wait(timeout: .now() + 5) == .success)
            #expect(popped.get() == .array([.bulk(Array("q".utf8)), .bulk(Array("m".utf8))]))
            #expect(try fixture.list("q").isEmpty)
        }
    }

    @Test func waitForMessagesTimesOutAndNeverReorders() throws {
        try withBroker { fixture in
            let started = ContinuousClock.now
            #expect(try !fixture.broker.waitForMessages(queues: ["q"], timeout: .milliseconds(300)))
            #expect(ContinuousClock.now - started >= .milliseconds(250))
            for item in ["a", "b", "c"] { try fixture.push(item, to: "q") }
            #expect(try fixture.broker.waitForMessages(queues: ["q"], timeout: .seconds(1)))
            #expect(try fixture.list("q") == ["c", "b", "a"])
            // The connection's usual timeout is back in force after a long wait.
            #expect(fixture.broker.connection.commandTimeout == .seconds(10))
        }
    }

    @Test func scriptsAreReloadedAfterScriptFlush() throws {
        try withBroker { fixture in
            try fixture.push(envelope(tag: "a", queue: "q"), to: "q")
            _ = try fixture.broker.reserve(queues: ["q"], max: 1, owner: "w")
            try fixture.inspector.command("SCRIPT", "FLUSH")
            try fixture.push(envelope(tag: "b", queue: "q"), to: "q")
            #expect(try fixture.broker.reserve(queues: ["q"], max: 1, owner: "w").map(\.deliveryTag) == ["b"])
        }
    }

    /// The connection remembers loaded scripts by name (hashing a source on every call was measurable); a script of
    /// the same name with another source must still run its own source, not the one loaded first.
    @Test func scriptsOfOneNameWithDifferentSourcesRunTheirOwnSource() throws {
        try withRedisServer { server in
            let connection = try server.connect()
            let one = RedisScript(name: "test.same", source: "return 'one'")
            let two = RedisScript(name: "test.same", source: "return 'two'")
            #expect(try connection.run(one).string == "one")
            #expect(try connection.run(two).string == "two")
            #expect(try connection.run(one).string == "one")
            #expect(try connection.runPipelined(two, calls: [.init(), .init()]).map(\.string) == ["two", "two"])
        }
    }

    @Test func scriptErrorsAreTyped() throws {
        try withRedisServer { server in
            let connection = try server.connect()
            let failing = RedisScript(name: "test.fail", source: "return redis.call('INCR', KEYS[1])")
            try connection.command("LPUSH", "list", "x")
            let error = #expect(throws: RedisError.self) { try connection.run(failing, keys: ["list"]) }
            #expect(error?.code == .script)
            #expect(error?.message == "script test.fail failed")
            #expect(error?.cause?.contains("WRONGTYPE") == true)
            let broken = RedisScript(name: "test.syntax", source: "this is not lua")
            let syntax = #expect(throws: RedisError.self) { try connection.run(broken) }
            #expect(syntax?.code == .script)
            #expect(syntax?.message == "loading script test.syntax failed")
            #expect(!connection.isBroken)
        }
    }
}

/// Celery's events riding in the round trip of the writer's acks (`ack(tags:owner:publishing:)`).
@Suite("kombu Redis: events published with the acks")
struct KombuRedisAckWithEventsTests {
    private func subscribe(_ fixture: BrokerFixture) throws -> RedisConnection {
        let subscriber = try fixture.server.connect()
        let confirmation = try subscriber.command("PSUBSCRIBE", "/0.celeryev/*")
        #expect(confirmation.array?.first?.string == "psubscribe")
        return subscriber
    }

    private func received(_ subscriber: RedisConnection) throws -> [String] {
        var channels: [String] = []
        while let message = try subscriber.receive(timeout: .milliseconds(300)) {
            guard let parts = message.array, parts.count == 4 else { continue }
            channels.append((parts[2].string ?? "") + " " + (parts[3].string ?? ""))
        }
        return channels
    }

    private let messages = [
        KombuRedisBroker.FanoutMessage(envelope: Array("one".utf8), exchange: "celeryev", routingKey: "task.started"),
        KombuRedisBroker.FanoutMessage(envelope: Array("two".utf8), exchange: "celeryev", routingKey: "task.succeeded"),
    ]

    @Test func acksAndPublishesInOrder() throws {
        try withBroker { fixture in
            for tag in ["a", "b"] { try fixture.push(envelope(tag: tag, queue: "q"), to: "q") }
            _ = try fixture.broker.reserve(queues: ["q"], max: 2, owner: "w")
            let subscriber = try subscribe(fixture)
            let done = try fixture.broker.ack(tags: ["a", "b"], owner: "w", publishing: messages)
            #expect(done.removed == 2)
            #expect(done.reached == [1, 1])
            #expect(try fixture.unackedCount() == 0)
            #expect(try fixture.owned(by: "w").isEmpty)
            #expect(try received(subscriber) == ["/0.celeryev/task.started one", "/0.celeryev/task.succeeded two"])
        }
    }

    /// A server that lost the ack script (restarted, `SCRIPT FLUSH`): the ack is run again, the events are not.
    @Test func aLostScriptIsRunAgainWithoutRepeatingTheEvents() throws {
        try withBroker { fixture in
            for tag in ["a", "b"] { try fixture.push(envelope(tag: tag, queue: "q"), to: "q") }
            _ = try fixture.broker.reserve(queues: ["q"], max: 2, owner: "w")
            #expect(try fixture.broker.ack(tags: ["a"], owner: "w") == 1)
            try fixture.inspector.command("SCRIPT", "FLUSH")
            let subscriber = try subscribe(fixture)
            let done = try fixture.broker.ack(tags: ["b"], owner: "w", publishing: messages)
            #expect(done.removed == 1)
            #expect(done.reached == [1, 1])
            #expect(try fixture.unackedCount() == 0)
            #expect(try received(subscriber) == ["/0.celeryev/task.started one", "/0.celeryev/task.succeeded two"])
        }
    }

    @Test func withoutAcksTheEventsStillGoOut() throws {
        try withBroker { fixture in
            let subscriber = try subscribe(fixture)
            let done = try fixture.broker.ack(tags: [], owner: "w", publishing: messages)
            #expect(done.removed == 0)
            #expect(done.reached == [1, 1])
            #expect(try received(subscriber).count == 2)
        }
    }
}
