import OrderedCollections
import SwiftqCore
import Testing

@testable import SwiftqConsumer

/// Chords joined from stored results (a header with groups in it, `celery.chord_unlock`), chain steps that count
/// for a chord when the chain fails early, and the root of a failed chord's errbacks, against what Celery 5.7 does.
struct CanvasJoinTests {
    typealias IDs = CanvasTests.IDs
    static let now = CanvasTests.now
    static let context = CanvasTests.context

    static func success(_ value: JSONValue) -> JSONValue { ["status": "SUCCESS", "result": value] }
    static func failed(_ message: String) -> JSONValue {
        [
            "status": "FAILURE",
            "result": ResultMeta.exception(type: "ValueError", message: [.string(message)], module: "builtins"),
        ]
    }

    /// The tuple Celery's client saves for `chord([chain(a, group(b, c)), d])`: the chain's result is the group's,
    /// whose parent is `a`.
    static let nestedHeader: JSONValue = [
        ["g1", nil],
        [
            [["inner", [["a", nil], nil]], [[["b", nil], nil], [["c", nil], nil]]],
            [["d", nil], nil],
        ],
    ]

    @Test func aNestedHeaderIsJoinedInItsShape() {
        #expect(Canvas.leafIDs(Self.nestedHeader) == ["b", "c", "d"])
        let metas: [String: JSONValue] = ["b": Self.success(3), "c": Self.success(4), "d": Self.success(6)]
        #expect(Canvas.join(Self.nestedHeader, metas: metas) == .values([[3, 4], 6]))
        // `[id, children]` (no parent pair) is read too.
        #expect(Canvas.join([["g", nil], [["x", nil]]], metas: ["x": Self.success(1)]) == .values([1]))
    }

    @Test func aJoinIsPendingUntilEveryResultIsReady() {
        let started: JSONValue = ["status": "STARTED", "result": nil]
        #expect(Canvas.join(Self.nestedHeader, metas: ["b": Self.success(3), "d": Self.success(6)]) == .pending)
        let metas: [String: JSONValue] = ["b": Self.success(3), "c": started, "d": Self.success(6)]
        #expect(Canvas.join(Self.nestedHeader, metas: metas) == .pending)
    }

    @Test func aFailedResultNamesTheCulpritAsCeleryDoes() {
        let metas: [String: JSONValue] = ["b": Self.success(3), "c": Self.failed("broke"), "d": Self.success(6)]
        #expect(Canvas.join(Self.nestedHeader, metas: metas) == .failed("Dependency c raised ValueError('broke')"))
        // Only revoked: `_failed_join_report` names failures only, so the reason is the repr alone.
        let revoked: JSONValue = [
            "status": "REVOKED",
            "result": ResultMeta.exception(type: "TaskRevokedError", message: ["revoked"], module: "celery.exceptions"),
        ]
        let onlyRevoked: [String: JSONValue] = ["b": revoked, "c": Self.success(4), "d": Self.success(6)]
        #expect(Canvas.join(Self.nestedHeader, metas: onlyRevoked) == .failed("TaskRevokedError('revoked')"))
    }

    /// A chain in a chord header: Celery freezes its last step with the chord and the group; the first step's
    /// failure counts for it.
    @Test func theChainStepsOfAChordHeaderCountWhenTheChainFails() {
        let body = CanvasTests.signature("echo", options: ["task_id": "body1"])
        let last = CanvasTests.signature(
            "add",
            options: ["task_id": "t3", "group_id": "g1", "group_index": 0, "chord": body]
        )
        let middle = CanvasTests.signature("add", options: ["task_id": "t2"])
        let exception = ResultMeta.exception(type: "ValueError", message: ["early"], module: "builtins")
        let parts = Canvas.chainChordParts([last, middle], state: "FAILURE", result: exception, context: Self.context)
        #expect(parts.count == 1)
        #expect(parts.first?.groupID == "g1")
        #expect(parts.first?.taskID == "t3")
        #expect(parts.first?.member == "t3:0")
        #expect(parts.first?.body == body)
        #expect(parts.first?.state == "FAILURE")
    }

    @Test func aFailedTaskReportsTheChordPartsOfItsChain() {
        let body = CanvasTests.signature("echo", options: ["task_id": "body1"])
        let last = CanvasTests.signature(
            "swiftq.add",
            options: ["task_id": "t3", "group_id": "g1", "group_index": 1, "chord": body]
        )
        let harness = CoreHarness()
        var message = TaskMessage(
            id: "t1",
            name: "swiftq.fail",
            args: ["early"],
            embed: ["callbacks": nil, "errbacks": nil, "chain": [last], "chord": nil]
        )
        message.rootID = "r1"
        harness.deliver(message, tag: "1")
        #expect(harness.pool.runPending() == 1)
        let plans = harness.broker.plans
        #expect(plans.count == 1)
        #expect(plans.first?.chordParts.map(\.member) == ["t3:1"])
        #expect(plans.first?.followingResults.map(\.taskID) == ["t3"], "the chain's last step stores the failure")
    }

    @Test func aFailedChordsErrbacksHaveTheBodyAsParentAndRoot() throws {
        let errback = CanvasTests.signature("on_error")
        let body = CanvasTests.signature("echo", options: ["task_id": "b1", "link_error": [errback]])
        let part = Canvas.ChordPart(
            groupID: "g1",
            taskID: "p1",
            groupIndex: 1,
            state: "SUCCESS",
            result: 2,
            body: body,
            context: Self.context
        )
        let entries: [JSONValue] = [[1, "t0", "FAILURE", Self.failed("x")["result"] ?? nil], [1, "p1", "SUCCESS", 2]]
        let outcome = Canvas.chordCompleted(part, entries: entries, now: Self.now, newID: IDs().make)
        let sent = try #require(outcome.publishes.first)
        #expect(sent.headers["parent_id"] == "b1")
        #expect(sent.headers["root_id"] == "b1", "Celery's fake request for the errbacks has no root: the body's id")
    }

    /// A member frozen with a group id keeps it when its group is applied (Celery's immutable `group_id` option): a
    /// group at the end of a chain in a chord header counts for the chord.
    @Test func aGroupMemberKeepsTheGroupIdItWasFrozenWith() {
        let body = CanvasTests.signature("echo", options: ["task_id": "body1"])
        let members: [JSONValue] = [
            CanvasTests.signature("add", args: [1], options: ["task_id": "m0", "group_id": "chord1", "chord": body]),
            CanvasTests.signature("add", args: [2], options: ["task_id": "m1", "group_index": 1]),
        ]
        let group = CanvasTests.signature(
            "celery.group",
            options: ["task_id": "inner"],
            subtaskType: "group",
            kwargs: ["tasks": .array(members)]
        )
        let outcome = Canvas.afterSuccess(
            CanvasTests.finished(chain: [group]),
            value: 2,
            context: Self.context,
            now: Self.now,
            newID: IDs().make
        )
        #expect(outcome.publishes.map { $0.headers["group"] } == ["chord1", "inner"])
        #expect(outcome.publishes.map { $0.headers["group_index"] } == [0, 1])
    }

    static func unlockMessage(retries: Int = 0, maxRetries: JSONValue = nil) -> TaskMessage {
        var message = TaskMessage(
            id: "u1",
            name: "celery.chord_unlock",
            args: ["g1", CanvasTests.signature("echo", options: ["task_id": "b1", "group_id": "g1"])],
            kwargs: [
                "interval": 0.5, "max_retries": maxRetries,
                "result": [[["a", nil], nil], [["b", nil], nil]],
            ],
            retries: retries
        )
        message.rootID = "root1"
        return message
    }

    @Test func chordUnlockIsSettledByTheConsumerWithARetryCopyNotRunInThePool() throws {
        let harness = CoreHarness()
        harness.deliver(Self.unlockMessage(), tag: "1")
        #expect(harness.pool.runPending() == 0, "chord_unlock takes no pool slot")
        let plan = try #require(harness.broker.plans.first)
        #expect(plan.disposition == .ack)
        #expect(plan.result == nil, "chord_unlock stores no result")
        let unlock = try #require(plan.chordUnlock)
        #expect(unlock.groupID == "g1")
        #expect(Canvas.leafIDs(unlock.header) == ["a", "b"])
        let retry = try #require(unlock.retry)
        #expect(retry.headers["id"] == "u1")
        #expect(retry.headers["retries"] == 1)
        #expect(retry.routingKey == "celery")
        let eta = try #require(retry.headers["eta"]?.stringValue.flatMap(CeleryTimestamp.init(iso8601:)))
        #expect(abs(eta.secondsSince1970 - harness.clock.now.secondsSince1970 - 0.5) < 0.01)
    }

    @Test func chordUnlockPollsAgainAppliesTheBodyOrFailsTheChord() throws {
        let harness = CoreHarness()
        harness.deliver(Self.unlockMessage(), tag: "1")
        let unlock = try #require(harness.broker.plans.first?.chordUnlock)
        // Not ready: the retry copy, nothing else.
        let waiting = Canvas.unlocked(unlock, metas: ["a": Self.success(1)], now: Self.now, newID: IDs().make)
        #expect(waiting.publishes == [unlock.retry].compactMap { $0 })
        #expect(waiting.results.isEmpty)
        // Ready: the body with the results in order, the unlock task as parent, its root as root.
        let metas = ["a": Self.success(1), "b": Self.success(2)]
        let done = Canvas.unlocked(unlock, metas: metas, now: Self.now, newID: IDs().make)
        let body = try #require(done.publishes.first)
        #expect(done.publishes.count == 1)
        #expect(body.headers["id"] == "b1")
        #expect(body.headers["group"] == "g1")
        #expect(body.headers["parent_id"] == "u1" && body.headers["root_id"] == "root1")
        #expect(try CanvasTests.body(body)[0] == [[1, 2]])
        // A failure: ChordError for the body.
        let failed = Canvas.unlocked(
            unlock,
            metas: ["a": Self.success(1), "b": Self.failed("no")],
            now: Self.now,
            newID: IDs().make
        )
        #expect(failed.publishes.isEmpty)
        let stored = try JSONValue(parsing: try #require(failed.results.first).meta)
        #expect(stored["result"]?["exc_message"] == ["Dependency b raised ValueError('no')"])
    }

    @Test func chordUnlockWithNoRetriesLeftFailsTheChord() throws {
        let harness = CoreHarness()
        harness.deliver(Self.unlockMessage(retries: 2, maxRetries: 2), tag: "1")
        let unlock = try #require(harness.broker.plans.first?.chordUnlock)
        #expect(unlock.retry == nil)
        let outcome = Canvas.unlocked(unlock, metas: [:], now: Self.now, newID: IDs().make)
        let stored = try JSONValue(parsing: try #require(outcome.results.first).meta)
        let text = stored["result"]?["exc_message"]?[0]?.stringValue ?? ""
        #expect(text.hasPrefix("chord_unlock could not be retried: MaxRetriesExceededError("), "\(text)")
    }

    @Test func aMalformedChordUnlockIsRejectedWithAClearError() throws {
        let harness = CoreHarness()
        harness.deliver(TaskMessage(id: "u2", name: "celery.chord_unlock", args: ["g1"]), tag: "1")
        let plan = try #require(harness.broker.plans.first)
        #expect(plan.disposition == .reject)
        #expect(plan.chordUnlock == nil)
        #expect(plan.resultJSON?["result"]?["exc_type"] == "ValueError")
    }
}
