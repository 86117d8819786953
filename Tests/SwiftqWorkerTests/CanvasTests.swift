import OrderedCollections
import SwiftqCore
import Testing

@testable import SwiftqConsumer

/// The pure canvas builder: what swiftq publishes and stores after a task, compared with the messages a Python 5.7
/// client and worker produce (captured live; celery-wire-protocol.md §1.3, §3.7, §9.5).
struct CanvasTests {
    static let now = CeleryTimestamp(secondsSince1970: 1_800_000_000)
    static let context = Canvas.Context(parentID: "p1", rootID: "r1", replyTo: "oid", origin: "swiftq@host")

    /// Deterministic ids: id-1, id-2, …
    final class IDs {
        var next = 0
        func make() -> String {
            next += 1
            return "id-\(next)"
        }
    }

    static func signature(
        _ task: String,
        args: [JSONValue] = [],
        options: OrderedDictionary<String, JSONValue> = [:],
        immutable: Bool = false,
        subtaskType: String? = nil,
        kwargs: OrderedDictionary<String, JSONValue> = [:]
    ) -> JSONValue {
        [
            "task": .string(task), "args": .array(args), "kwargs": .object(kwargs), "options": .object(options),
            "subtask_type": subtaskType.map(JSONValue.string) ?? .null, "immutable": .bool(immutable),
        ]
    }

    static func body(_ message: OutboundMessage) throws -> JSONValue { try JSONValue(parsing: message.body) }

    static func finished(
        callbacks: [JSONValue]? = nil,
        errbacks: [JSONValue]? = nil,
        chain: [JSONValue]? = nil,
        chord: JSONValue? = nil,
        group: String? = nil,
        groupIndex: Int? = nil
    ) -> TaskMessage {
        TaskMessage(
            id: "p1",
            name: "swiftq.add",
            args: [1, 2],
            embed: [
                "callbacks": callbacks.map(JSONValue.array) ?? .null,
                "errbacks": errbacks.map(JSONValue.array) ?? .null,
                "chain": chain.map(JSONValue.array) ?? .null, "chord": chord ?? .null,
            ],
            rootID: "r1",
            group: group,
            groupIndex: groupIndex,
            replyTo: "oid"
        )
    }

    @Test func theNextChainStepGetsTheResultAndTheRestOfTheChain() throws {
        // chain(add.s(1, 2), add.s(3), add.s(4)) as the Python client sends it: the rest in reverse order.
        let step2 = Self.signature("swiftq.add", args: [3], options: ["task_id": "t2", "reply_to": "oid"])
        let step3 = Self.signature("swiftq.add", args: [4], options: ["task_id": "t3", "reply_to": "oid"])
        let ids = IDs()
        let outcome = Canvas.afterSuccess(
            Self.finished(chain: [step3, step2]),
            value: 3,
            context: Self.context,
            now: Self.now,
            newID: ids.make
        )
        #expect(outcome.publishes.count == 1)
        let next = try #require(outcome.publishes.first)
        #expect(next.headers["task"] == "swiftq.add")
        #expect(next.headers["id"] == "t2")
        #expect(next.headers["root_id"] == "r1")
        #expect(next.headers["parent_id"] == "p1")
        #expect(next.headers["group"] == .null)
        #expect(next.correlationID == "t2" && next.replyTo == "oid")
        #expect(next.exchange == "" && next.routingKey == "celery")
        let body = try Self.body(next)
        #expect(body[0] == [3, 3])
        #expect(body[2]?["chain"] == [step3])
        #expect(outcome.children == [[["t2", nil], nil]])
        #expect(ids.next == 0, "a frozen id is used, none is made")
    }

    @Test func oneCallbackIsAppliedAloneSeveralAsOneGroupImmutableOnesWithoutTheResult() throws {
        let ids = IDs()
        let plain = Self.signature("a", args: [1], options: ["task_id": "a1"])
        let frozen = Self.signature("b", args: [9], immutable: true)
        let single = Canvas.afterSuccess(
            Self.finished(callbacks: [plain]),
            value: "r",
            context: Self.context,
            now: Self.now,
            newID: ids.make
        )
        #expect(single.publishes.count == 1)
        #expect(try Self.body(single.publishes[0])[0] == ["r", 1])
        #expect(single.publishes[0].headers["group"] == .null)

        let several = Canvas.afterSuccess(
            Self.finished(callbacks: [plain, frozen]),
            value: "r",
            context: Self.context,
            now: Self.now,
            newID: ids.make
        )
        #expect(several.publishes.count == 2)
        #expect(several.publishes.map { $0.headers["group"] } == ["id-1", "id-1"])
        #expect(several.publishes.map { $0.headers["group_index"] } == [0, 1])
        #expect(try Self.body(several.publishes[1])[0] == [9], "immutable: no result prepended")
        #expect(several.publishes[1].headers["id"] == "id-2")
        #expect(several.children == [[["id-1", nil], [[["a1", nil], nil], [["id-2", nil], nil]]]])
    }

    @Test func optionsAreHonouredAndUnknownOnesReported() throws {
        let callback = Self.signature(
            "x",
            options: [
                "queue": "q2", "priority": 5, "countdown": 3, "expires": 60, "time_limit": 30, "soft_time_limit": 20,
                "shadow": "shown", "headers": ["x-custom": "v"], "stamped_headers": ["mystamp"], "mystamp": "s1",
                "link": Self.signature("after"), "frobnicate": true, "retry": true, "replace": true,
            ]
        )
        let outcome = Canvas.afterSuccess(
            Self.finished(callbacks: [callback]),
            value: 1,
            context: Self.context,
            now: Self.now,
            newID: IDs().make
        )
        let message = try #require(outcome.publishes.first)
        #expect(message.routingKey == "q2" && message.exchange == "")
        #expect(message.priority == 5)
        #expect(message.headers["eta"] == .string(Self.now.advanced(by: 3).iso8601))
        #expect(message.headers["expires"] == .string(Self.now.advanced(by: 60).iso8601))
        #expect(message.expiration == "60000")
        #expect(message.headers["timelimit"] == [30, 20])
        #expect(message.headers["shadow"] == "shown")
        #expect(message.headers["x-custom"] == "v")
        #expect(message.headers["stamped_headers"] == ["mystamp"])
        #expect(message.headers["stamps"] == ["mystamp": "s1"])
        #expect(message.headers["origin"] == "swiftq@host")
        #expect(try Self.body(message)[2]?["callbacks"] == [Self.signature("after")])
        #expect(outcome.ignoredOptions.sorted() == ["frobnicate", "replace"])
    }

    @Test func anUnreadableETAOrExpiryIsReportedNotDropped() {
        let callback = Self.signature("x", options: ["eta": "next tuesday", "expires": "soon"])
        let outcome = Canvas.afterSuccess(
            Self.finished(callbacks: [callback]),
            value: 1,
            context: Self.context,
            now: Self.now,
            newID: IDs().make
        )
        #expect(outcome.ignoredOptions.sorted() == ["eta", "expires"])
        let iso = Self.signature("x", options: ["eta": .string(Self.now.advanced(by: 5).iso8601)])
        let read = Canvas.afterSuccess(
            Self.finished(callbacks: [iso]),
            value: 1,
            context: Self.context,
            now: Self.now,
            newID: IDs().make
        )
        #expect(read.ignoredOptions.isEmpty)
        #expect(read.publishes.first?.headers["eta"] == .string(Self.now.advanced(by: 5).iso8601))
    }

    @Test func anExplicitExchangeAndRoutingKeyAreUsed() {
        let callback = Self.signature("x", options: ["exchange": "ex", "routing_key": "rk"])
        let outcome = Canvas.afterSuccess(
            Self.finished(callbacks: [callback]),
            value: 1,
            context: Self.context,
            now: Self.now,
            newID: IDs().make
        )
        #expect(outcome.publishes.first?.exchange == "ex")
        #expect(outcome.publishes.first?.routingKey == "rk")
    }

    @Test func aGroupStepFansOutWithItsOwnIdAsGroup() throws {
        let members: [JSONValue] = [
            Self.signature("m", args: [0], options: ["task_id": "m0", "group_index": 0]),
            Self.signature("m", args: [1], options: ["task_id": "m1", "group_index": 1]),
        ]
        let group = Self.signature(
            "celery.group",
            options: ["task_id": "g1"],
            subtaskType: "group",
            kwargs: ["tasks": .array(members)]
        )
        let outcome = Canvas.afterSuccess(
            Self.finished(chain: [group]),
            value: 5,
            context: Self.context,
            now: Self.now,
            newID: IDs().make
        )
        #expect(outcome.publishes.map { $0.headers["id"] } == ["m0", "m1"])
        #expect(outcome.publishes.map { $0.headers["group"] } == ["g1", "g1"])
        #expect(outcome.publishes.map { $0.headers["group_index"] } == [0, 1])
        #expect(try Self.body(outcome.publishes[1])[0] == [5, 1])
    }

    @Test func aChordStepStartsTheChordAsCeleryDoes() throws {
        // chain(add.s(1, 2), group(add.s(0), add.s(1)), echo.s(), last.s()) as the Python client sends it: the group
        // and the task after it became a chord; `last` is what follows it.
        let members: [JSONValue] = [
            Self.signature("swiftq.add", args: [0], options: ["task_id": "m0", "group_index": 0]),
            Self.signature("swiftq.add", args: [1], options: ["task_id": "m1", "group_index": 1]),
        ]
        let body = Self.signature("swiftq.echo", options: ["task_id": "body1", "reply_to": "oid"])
        let chord = Self.signature(
            "celery.chord",
            options: ["task_id": "g1"],
            subtaskType: "chord",
            kwargs: [
                "kwargs": [:],
                "header": Self.signature(
                    "celery.group",
                    options: ["task_id": "g1"],
                    subtaskType: "group",
                    kwargs: ["tasks": .array(members)]
                ),
                "body": body,
            ]
        )
        let last = Self.signature("last", options: ["task_id": "l1"])
        let outcome = Canvas.afterSuccess(
            Self.finished(chain: [last, chord]),
            value: 3,
            context: Self.context,
            now: Self.now,
            newID: IDs().make
        )
        #expect(outcome.unsupported.isEmpty)
        #expect(outcome.chordSetups == [Canvas.ChordSetup(groupID: "g1", size: 2)])
        #expect(outcome.publishes.map { $0.headers["id"] } == ["m0", "m1"])
        #expect(outcome.publishes.map { $0.headers["group"] } == ["g1", "g1"])
        #expect(outcome.publishes.map { $0.headers["group_index"] } == [0, 1])
        let header = try Self.body(outcome.publishes[1])
        #expect(header[0] == [3, 1])
        let embeddedBody = try #require(header[2]?["chord"])
        #expect(embeddedBody["options"]?["task_id"] == "body1")
        #expect(embeddedBody["options"]?["group_id"] == "g1")
        #expect(embeddedBody["options"]?["chain"] == [last], "the rest of the chain follows the body")
    }

    @Test func anUnknownCanvasTypeIsUnsupportedAndItsResultFailedLoudly() {
        let odd = Self.signature("celery.odd", options: ["task_id": "o1"], subtaskType: "odd")
        let outcome = Canvas.afterSuccess(
            Self.finished(chain: [odd]),
            value: 5,
            context: Self.context,
            now: Self.now,
            newID: IDs().make
        )
        #expect(outcome.publishes.isEmpty)
        #expect(outcome.unsupported.count == 1)
        #expect(outcome.results.map(\.taskID) == ["o1"])
    }

    @Test func aFailureFailsTheRestOfTheChainAndSendsOldStyleErrbacks() throws {
        let step3 = Self.signature("swiftq.add", args: [4], options: ["task_id": "t3", "reply_to": "oid"])
        let errback = Self.signature("on_error", args: ["extra"])
        let exception = ResultMeta.exception(type: "ValueError", message: ["boom"], module: "builtins")
        let outcome = Canvas.afterFailure(
            Self.finished(errbacks: [errback], chain: [step3]),
            exception: exception,
            traceback: "tb",
            storesResults: true,
            context: Self.context,
            now: Self.now,
            newID: IDs().make
        )
        #expect(outcome.results.map(\.taskID) == ["t3"])
        let stored = try JSONValue(parsing: outcome.results[0].meta)
        #expect(stored["status"] == "FAILURE")
        #expect(stored["result"] == exception)
        #expect(stored["traceback"] == "tb")
        #expect(outcome.results[0].replyTo == "oid")
        let sent = try #require(outcome.publishes.first)
        #expect(outcome.publishes.count == 1)
        #expect(try Self.body(sent)[0] == ["p1", "extra"], "old-style: the failed task's id first")
        #expect(sent.headers["parent_id"] == "p1")
        #expect(sent.headers["root_id"] == "r1")
        #expect(sent.headers["group"] == "id-1", "Celery sends errbacks as a group")
    }

    @Test func aChordHeaderReportsItsPart() throws {
        let body = Self.signature("echo", options: ["task_id": "b1", "group_id": "g1"])
        let part = try #require(
            Canvas.chordPart(
                Self.finished(chord: body, group: "g1", groupIndex: 3),
                state: "SUCCESS",
                result: 6,
                context: Self.context
            )
        )
        #expect(part.groupID == "g1")
        #expect(part.member == "p1:3")
        #expect(String(decoding: part.entry, as: UTF8.self) == #"[1, "p1", "SUCCESS", 6]"#)
        #expect(Canvas.chordPart(Self.finished(group: "g1"), state: "SUCCESS", result: 1, context: Self.context) == nil)
    }

    @Test func aCompletedChordAppliesItsBodyToTheResultsInOrder() throws {
        let body = Self.signature("echo", options: ["task_id": "b1", "group_id": "g1", "reply_to": "oid"])
        let part = Canvas.ChordPart(
            groupID: "g1",
            taskID: "p1",
            groupIndex: 1,
            state: "SUCCESS",
            result: 2,
            body: body,
            context: Self.context
        )
        let entries: [JSONValue] = [[1, "t0", "SUCCESS", 0], [1, "p1", "SUCCESS", 2]]
        let outcome = Canvas.chordCompleted(part, entries: entries, now: Self.now, newID: IDs().make)
        let sent = try #require(outcome.publishes.first)
        #expect(sent.headers["id"] == "b1")
        #expect(sent.headers["group"] == "g1", "Celery sends the body with the chord's group id")
        #expect(sent.headers["parent_id"] == "p1" && sent.headers["root_id"] == "r1")
        #expect(try Self.body(sent)[0] == [[0, 2]])
        #expect(outcome.results.isEmpty)
    }

    @Test func aChordWithAFailedHeaderStoresChordErrorForItsBody() throws {
        let errback = Self.signature("on_error")
        let body = Self.signature("echo", options: ["task_id": "b1", "link_error": [errback]])
        let part = Canvas.ChordPart(
            groupID: "g1",
            taskID: "p1",
            groupIndex: 1,
            state: "SUCCESS",
            result: 2,
            body: body,
            context: Self.context
        )
        let failed = ResultMeta.exception(type: "ValueError", message: ["header broke"], module: "builtins")
        let entries: [JSONValue] = [[1, "t0", "FAILURE", failed], [1, "p1", "SUCCESS", 2]]
        let outcome = Canvas.chordCompleted(part, entries: entries, now: Self.now, newID: IDs().make)
        #expect(outcome.results.map(\.taskID) == ["b1"])
        let stored = try JSONValue(parsing: outcome.results[0].meta)
        #expect(stored["result"]?["exc_type"] == "ChordError")
        #expect(stored["result"]?["exc_module"] == "celery.exceptions")
        #expect(stored["result"]?["exc_message"] == ["Dependency t0 raised ValueError('header broke')"])
        #expect(outcome.publishes.count == 1)
        #expect(try Self.body(outcome.publishes[0])[0] == ["b1"], "the body's errback gets the body's id")
    }
}

extension CanvasTests {
    @Test func aSignatureWithoutAQueueGoesToTheConfiguredDefaultQueue() throws {
        var context = Self.context
        context.defaultQueue = "tasks"
        let outcome = Canvas.afterSuccess(
            Self.finished(callbacks: [Self.signature("x")]),
            value: 1,
            context: context,
            now: Self.now,
            newID: IDs().make
        )
        #expect(outcome.publishes.first?.routingKey == "tasks")
        let configuration = try Configuration.parse(
            "worker:\n  default_queue: tasks\n",
            file: "config.yaml"
        )
        #expect(configuration.worker.defaultQueue == "tasks")
        #expect(DeliveryMachine.Settings(configuration: configuration, nodeName: "n").defaultQueue == "tasks")
        #expect(throws: ConfigurationError.self) {
            try Configuration.parse("worker:\n  default_queue: ''\n", file: "config.yaml")
        }
    }
}
