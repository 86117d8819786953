import OrderedCollections
import SwiftqCore
import SwiftqTasks
import Testing

@testable import SwiftqConsumer

/// New-style errbacks (Celery's `def on_error(request, exc, traceback)`): every errback swiftq publishes carries the
/// failed task in the `swiftq_failed_task` header, and `TaskRegistry.registerErrback` hands it to the errback.
struct CanvasErrbackTests {
    typealias IDs = CanvasTests.IDs

    static func failedHeader(_ message: OutboundMessage) throws -> FailedTask {
        let header = try #require(message.headers[FailedTask.headerName])
        return try #require(FailedTask(json: header))
    }

    @Test func aFailedTasksErrbacksCarryItsRequestExceptionAndTraceback() throws {
        let errback = CanvasTests.signature("on_error", args: ["label"])
        var message = CanvasTests.finished(errbacks: [errback])
        message.args = [1, 2]
        message.kwargs = ["z": 3]
        message.group = "g1"
        let exception = ResultMeta.exception(type: "ExpectedException", message: ["boom"], module: "t.tasks")
        let outcome = Canvas.afterFailure(
            message,
            exception: exception,
            traceback: "Traceback …",
            storesResults: true,
            context: CanvasTests.context,
            now: CanvasTests.now,
            newID: IDs().make
        )
        let sent = try #require(outcome.publishes.first)
        #expect(try CanvasTests.body(sent)[0] == [.string(message.id), "label"], "still the old-style args")
        let failed = try Self.failedHeader(sent)
        #expect(failed.id == message.id)
        #expect(failed.name == message.name)
        #expect(failed.args == [1, 2])
        #expect(failed.kwargs == ["z": 3])
        #expect(failed.group == "g1")
        #expect(failed.exception.type == "ExpectedException")
        #expect(failed.exception.module == "t.tasks")
        #expect(failed.exception.arguments == ["boom"])
        #expect(failed.traceback == "Traceback …")
    }

    /// Celery's `chord_error_from_stack` calls the body's errbacks with a request made from the body: its id, name and
    /// arguments, the `ChordError`, no traceback.
    @Test func aFailedChordsErrbacksGetTheBodyAndTheChordError() throws {
        let errback = CanvasTests.signature("on_error")
        let body = CanvasTests.signature(
            "identity",
            args: [7],
            options: ["task_id": "b1", "link_error": [errback]]
        )
        let part = Canvas.ChordPart(
            groupID: "g1",
            taskID: "p1",
            groupIndex: 0,
            state: "FAILURE",
            result: 2,
            body: body,
            context: CanvasTests.context
        )
        let failure = ResultMeta.exception(type: "ValueError", message: ["x"], module: "builtins")
        let outcome = Canvas.chordCompleted(
            part,
            entries: [[1, "t0", "FAILURE", failure]],
            now: CanvasTests.now,
            newID: IDs().make
        )
        let sent = try #require(outcome.publishes.first)
        let failed = try Self.failedHeader(sent)
        #expect(failed.id == "b1")
        #expect(failed.name == "identity")
        #expect(failed.args == [7])
        #expect(failed.rootID == nil)
        #expect(failed.exception.type == "ChordError")
        #expect(failed.exception.module == "celery.exceptions")
        #expect(failed.exception.arguments == ["Dependency t0 raised ValueError('x')"])
        #expect(failed.traceback == nil)
    }

    @Test func aCanvasErrbackIsSentAsItIs() throws {
        let member = CanvasTests.signature("on_error")
        let group = CanvasTests.signature("celery.group", subtaskType: "group", kwargs: ["tasks": [member]])
        let carried = Canvas.carryingFailedTask([group, member], failed: ["id": "f1", "exc": [:]])
        #expect(carried[0] == group)
        #expect(carried[1]["options"]?["headers"]?[FailedTask.headerName]?["id"] == "f1")
    }

    @Test func aRegisteredErrbackGetsTheFailedTaskAndItsOwnArguments() throws {
        var registry = TaskRegistry()
        registry.registerErrback("on_error") { failed, invocation, _ in
            [.string(failed.id), .string(failed.exception.type), .array(invocation.args)]
        }
        var failure = TaskFailure(type: "ValueError", message: "x")
        failure.arguments = ["x"]
        var invocation = TaskInvocation(id: "e1", name: "on_error", args: ["f1", "label"])
        invocation.request.headers = [
            FailedTask.headerName: FailedTask(id: "f1", name: "t", exception: failure).json
        ]
        let environment = TaskEnvironment(sleep: { _ in true })
        #expect(registry.execute(invocation, environment: environment) == .success(["f1", "ValueError", ["label"]]))

        // Sent by a Python worker, which only passes the failed task's id: Python's TypeError.
        invocation.request.headers = nil
        guard case .failure(let missing) = registry.execute(invocation, environment: environment) else {
            Issue.record("an errback without the failed task fails")
            return
        }
        #expect(missing.type == "TypeError")
    }

    @Test func theFailedTaskRoundTrips() {
        var failure = TaskFailure(type: "ExpectedException", message: "a, 1", module: "t.tasks")
        failure.arguments = ["a", 1]
        var failed = FailedTask(id: "f1", name: "t.fail", args: [1], kwargs: ["k": 2], exception: failure)
        failed.rootID = "r1"
        failed.parentID = "p1"
        failed.group = "g1"
        failed.traceback = "tb"
        #expect(FailedTask(json: failed.json) == failed)
        #expect(FailedTask(json: ["id": "x"]) == nil, "no exception: not a failed task")
    }

    /// `chord.link_error(eb)` with a chain body adds `eb` to the chain's options; Celery's `chain.run` puts it on every
    /// step, so the step that fails calls it (with its own id), and the chain's `link` goes to its last step.
    @Test func aChainsOwnErrbacksGoToEveryStepAndItsCallbacksToTheLast() throws {
        let errback = CanvasTests.signature("on_error")
        let callback = CanvasTests.signature("on_done")
        let steps: [JSONValue] = [
            CanvasTests.signature("identity", args: [42], options: ["task_id": "s1"], immutable: true),
            CanvasTests.signature("fail", options: ["task_id": "s2"]),
        ]
        let chain = CanvasTests.signature(
            "celery.chain",
            options: ["link_error": [errback], "link": [callback]],
            subtaskType: "chain",
            kwargs: ["tasks": .array(steps)]
        )
        let outcome = Canvas.apply(
            chain,
            prepending: [],
            context: CanvasTests.context,
            now: CanvasTests.now,
            newID: IDs().make
        )
        let sent = try #require(outcome.publishes.first)
        let embed = try #require(try CanvasTests.body(sent)[2])
        #expect(embed["errbacks"] == [errback], "the first step has the chain's errback")
        #expect(embed["callbacks"] == .null)
        let rest = try #require(embed["chain"]?.arrayValue?.first)
        #expect(rest["options"]?["link_error"] == [errback])
        #expect(rest["options"]?["link"] == [callback])
    }

    /// Celery's `_result_errbacks`: a chord's result is its body's, with both their errbacks; a group collects its
    /// members' errbacks after its own.
    @Test func theErrbacksOfAResultFollowChordBodiesAndGroupMembers() {
        let a = CanvasTests.signature("a")
        let b = CanvasTests.signature("b")
        let c = CanvasTests.signature("c")
        let body = CanvasTests.signature("tsum", options: ["task_id": "body", "link_error": [b]])
        let chord = CanvasTests.signature(
            "celery.chord",
            options: ["link_error": [a]],
            subtaskType: "chord",
            kwargs: ["header": CanvasTests.signature("celery.group", subtaskType: "group"), "body": body]
        )
        let (id, errbacks) = Canvas.resultErrbacks(chord)
        #expect(id == "body")
        #expect(errbacks == [a, b])
        let member = CanvasTests.signature("m", options: ["task_id": "m1", "link_error": [c]])
        let group = CanvasTests.signature(
            "celery.group",
            options: ["task_id": "g", "link_error": [a]],
            subtaskType: "group",
            kwargs: ["tasks": [member]]
        )
        #expect(Canvas.resultErrbacks(group).errbacks == [a, c])
    }

    /// A failed header with a group body: every task of the body gets the header's exception as its result and calls
    /// its own errbacks and the group's once each, with itself as the failed task; the group's id fails too.
    @Test func aGroupBodyOfAFailedChordFailsEachTaskAndCallsItsErrbacks() throws {
        let own = CanvasTests.signature("echo", args: ["own"], immutable: true)
        let chordErrback = CanvasTests.signature("echo", args: ["chord"], immutable: true)
        let members: [JSONValue] = [
            CanvasTests.signature("tsum", options: ["task_id": "m1", "link_error": [own, chordErrback]]),
            CanvasTests.signature("tsum", options: ["task_id": "m2", "link_error": [chordErrback]]),
        ]
        let body = CanvasTests.signature(
            "celery.group",
            options: ["task_id": "g2", "link_error": [chordErrback]],
            subtaskType: "group",
            kwargs: ["tasks": .array(members)]
        )
        let part = Canvas.ChordPart(
            groupID: "g1",
            taskID: "p1",
            groupIndex: 1,
            state: "FAILURE",
            result: 2,
            body: body,
            context: CanvasTests.context
        )
        let cause = ResultMeta.exception(type: "ExpectedException", message: ["boom"], module: "t.tasks")
        let outcome = Canvas.chordCompleted(
            part,
            entries: [[1, "t0", "SUCCESS", 2], [1, "p1", "FAILURE", cause]],
            now: CanvasTests.now,
            newID: IDs().make
        )
        #expect(outcome.results.map(\.taskID) == ["m1", "m2", "g2"])
        for result in outcome.results {
            #expect(try JSONValue(parsing: result.meta)["result"] == cause, "the header's exception, as Celery's cause")
        }
        let echoed = try outcome.publishes.map { try CanvasTests.body($0)[0] }
        #expect(echoed == [["own"], ["chord"], ["chord"]], "each errback once per task")
        #expect(try outcome.publishes.map { try Self.failedHeader($0).id } == ["m1", "m1", "m2"])
        #expect(outcome.publishes.map { $0.headers["parent_id"] } == ["m1", "m1", "m2"])
    }

    /// Celery's `_add_body_callbacks`: a chord the worker starts (the end of a chain) passes its own `link` to its body.
    @Test func aChordStartedByTheWorkerLinksItsCallbacksToItsBody() throws {
        let callback = CanvasTests.signature("echo")
        let chord = CanvasTests.signature(
            "celery.chord",
            options: ["link": [callback]],
            subtaskType: "chord",
            kwargs: [
                "header": CanvasTests.signature(
                    "celery.group",
                    subtaskType: "group",
                    kwargs: ["tasks": [CanvasTests.signature("add", args: [10])]]
                ),
                "body": CanvasTests.signature("tsum", options: ["task_id": "b1"]),
            ]
        )
        let outcome = Canvas.apply(
            chord,
            prepending: [2],
            context: CanvasTests.context,
            now: CanvasTests.now,
            newID: IDs().make
        )
        let header = try #require(outcome.publishes.first)
        let body = try #require(try CanvasTests.body(header)[2]?["chord"])
        #expect(body["options"]?["link"] == [callback])
    }

    /// `group(...).set(link_error=eb)`: when the worker applies the group, `eb` replaces its tasks' own errbacks (Celery's
    /// group passes its options to each task's `apply_async`); a chord member gets it on its body's tasks.
    @Test func aGroupsOwnErrbacksReplaceThoseOfItsTasks() throws {
        let own = CanvasTests.signature("own")
        let groupErrback = CanvasTests.signature("group_eb")
        let innerBody = CanvasTests.signature(
            "celery.group",
            subtaskType: "group",
            kwargs: ["tasks": [CanvasTests.signature("fail"), CanvasTests.signature("tsum")]]
        )
        let chordMember = CanvasTests.signature(
            "celery.chord",
            subtaskType: "chord",
            kwargs: ["header": CanvasTests.signature("celery.group", subtaskType: "group"), "body": innerBody]
        )
        let group = try #require(
            Canvas.Signature(
                CanvasTests.signature(
                    "celery.group",
                    options: ["link_error": [groupErrback]],
                    subtaskType: "group",
                    kwargs: ["tasks": [CanvasTests.signature("fail", options: ["link_error": [own]]), chordMember]]
                )
            )
        )
        let members = Canvas.membersWithGroupErrbacks(group)
        #expect(members[0]["options"]?["link_error"] == [groupErrback])
        let bodyTasks = try #require(members[1]["kwargs"]?["body"]?["kwargs"]?["tasks"]?.arrayValue)
        #expect(bodyTasks.map { $0["options"]?["link_error"] } == [[groupErrback], [groupErrback]])
    }

    /// Celery's `test_chord_on_error` reads the errbacks through the failed body's result: `res.children[0]` is their
    /// group (Celery stores the body's failure after sending them, from the task that sent them).
    @Test func aFailedChordBodysResultListsItsErrbacksGroup() throws {
        let errback = CanvasTests.signature("on_error")
        let body = CanvasTests.signature("echo", options: ["task_id": "b1", "link_error": [errback]])
        let part = Canvas.ChordPart(
            groupID: "g1",
            taskID: "p1",
            groupIndex: 0,
            state: "FAILURE",
            result: 2,
            body: body,
            context: CanvasTests.context
        )
        let failure = ResultMeta.exception(type: "ValueError", message: ["x"], module: "builtins")
        let ids = IDs()
        let outcome = Canvas.chordCompleted(
            part,
            entries: [[1, "t0", "FAILURE", failure]],
            now: CanvasTests.now,
            newID: ids.make
        )
        let stored = try JSONValue(parsing: try #require(outcome.results.first { $0.taskID == "b1" }).meta)
        let sent = try #require(outcome.publishes.first)
        let errbackID = try #require(sent.headers["id"])
        let groupID = try #require(sent.headers["group"])
        #expect(stored["children"] == [[[groupID, nil], [[[errbackID, nil], nil]]]])
        #expect(outcome.children.isEmpty)
    }

    /// Celery's `prepare_steps` upgrades `group | sig` to `chord(group, sig)` when a chain runs; a chain the worker
    /// applies (here a chord body) gets the same, from the end: `t | g1 | g2 | s` is `t | chord(g1, chord(g2, s))`.
    @Test func aChainTheWorkerAppliesHasItsGroupsUpgradedToChords() throws {
        let t = CanvasTests.signature("tsum")
        let s = CanvasTests.signature("add", args: [32])
        let g1 = CanvasTests.signature("celery.group", subtaskType: "group", kwargs: ["tasks": [t, t]])
        let g2 = CanvasTests.signature("celery.group", subtaskType: "group", kwargs: ["tasks": [s]])
        let steps = Canvas.upgradingGroupsToChords([t, g1, g2, s])
        #expect(steps.count == 2)
        #expect(steps[0] == t)
        #expect(steps[1]["subtask_type"] == "chord")
        #expect(steps[1]["kwargs"]?["header"] == g1)
        let inner = try #require(steps[1]["kwargs"]?["body"])
        #expect(inner["subtask_type"] == "chord")
        #expect(inner["kwargs"]?["header"] == g2)
        #expect(inner["kwargs"]?["body"] == s)
        #expect(Canvas.upgradingGroupsToChords([t, g1]) == [t, g1], "a group at the end stays a group")
    }
}
