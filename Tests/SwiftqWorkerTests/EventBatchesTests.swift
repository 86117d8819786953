import DequeModule
import SwiftqCore
import Testing

@testable import SwiftqConsumer

/// Runs of task events leave as Celery's `task.multi` list messages; worker events stay single and in place.
struct EventBatchesTests {
    static func event(_ routingKey: String, _ n: Int, host: String = "w@h") -> OutboundMessage {
        var message = OutboundMessage(
            exchange: "celeryev",
            exchangeType: .topic,
            routingKey: routingKey,
            body: Array(#"{"type":"\#(routingKey.replacingOccurrences(of: ".", with: "-"))","n":\#(n)}"#.utf8)
        )
        message.headers = ["hostname": .string(host)]
        message.persistent = false
        return message
    }

    @Test func runsOfTaskEventsBecomeListsAndWorkerEventsKeepTheirPlace() throws {
        let events: Deque<OutboundMessage> = [
            Self.event("task.received", 1), Self.event("task.started", 2), Self.event("task.succeeded", 3),
            Self.event("worker.heartbeat", 4), Self.event("task.received", 5), Self.event("task.started", 6),
        ]
        let grouped = Array(EventBatches.grouping(events))
        try #require(grouped.count == 3)
        #expect(grouped.map(\.routingKey) == ["task.multi", "worker.heartbeat", "task.multi"])
        #expect(try JSONValue(parsing: grouped[0].body).arrayValue?.map { $0["n"] } == [1, 2, 3])
        #expect(try JSONValue(parsing: grouped[2].body).arrayValue?.map { $0["n"] } == [5, 6])
        #expect(grouped[1] == events[3])
        // The list message is otherwise the events' own: exchange, type, headers, not persistent.
        #expect(grouped[0].exchange == "celeryev" && grouped[0].exchangeType == .topic)
        #expect(grouped[0].headers == ["hostname": "w@h"])
        #expect(!grouped[0].persistent)
    }

    @Test func atMostCeleryBufferLimitPerListAndASingleEventStaysSingle() throws {
        let many = Deque((0..<30).map { Self.event("task.succeeded", $0) })
        let grouped = Array(EventBatches.grouping(many))
        #expect(grouped.count == 2)
        #expect(try JSONValue(parsing: grouped[0].body).arrayValue?.count == EventBatches.limit)
        #expect(
            try JSONValue(parsing: grouped[1].body).arrayValue?.map { $0["n"] } == (24..<30).map { .int(Int64($0)) }
        )
        let one: Deque = [Self.event("task.failed", 1)]
        #expect(EventBatches.grouping(one) == one)
        // Different headers (another node name) never share a list.
        let mixed: Deque = [Self.event("task.started", 1), Self.event("task.started", 2, host: "other@h")]
        #expect(EventBatches.grouping(mixed) == mixed)
    }
}
