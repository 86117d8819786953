import OrderedCollections
import SwiftqCore
import SwiftqTasks
import Testing

@testable import SwiftqConsumer
@testable import SwiftqPool

/// Task effects (``TaskEffect``): what a task records (``TaskInvocation/apply(_:)``, `addToChord`, `storeResult`),
/// the freeze that chooses the ids in the task, the pool channel's codec, and the delivery machine's plan (the effects
/// first: chord counters, publishes, results, then the task's own outcome), without I/O.
struct TaskEffectsTests {
    typealias C = CanvasTests

    static func ids() -> () -> String {
        let ids = CanvasTests.IDs()
        return { ids.make() }
    }

    // MARK: Freeze

    @Test func freezingAChainChoosesEveryIDAndUpgradesAGroupFollowedByAStepToAChord() throws {
        var chain = TaskSignature.chain([
            TaskSignature("t.add", args: [1, 1]), TaskSignature("t.add", args: [2]),
            .group([TaskSignature("t.add", args: [3]), TaskSignature("t.add", args: [4])]),
            TaskSignature("t.add", args: [5]),
        ])
        let result = chain.freeze(newID: Self.ids())
        let steps = try #require(chain.kwargs["tasks"]?.arrayValue)
        try #require(steps.count == 3, "group | add(5) became one chord step")
        #expect(steps[0]["options"]?["task_id"] == "id-1")
        #expect(steps[1]["options"]?["task_id"] == "id-2")
        #expect(steps[2]["subtask_type"] == "chord")
        let header = try #require(steps[2]["kwargs"]?["header"])
        #expect(header["options"]?["task_id"] == "id-3", "the header group's id is the chord's group id")
        #expect(header["kwargs"]?["tasks"]?[0]?["options"]?["task_id"] == "id-4")
        #expect(header["kwargs"]?["tasks"]?[1]?["options"]?["task_id"] == "id-5")
        #expect(steps[2]["kwargs"]?["body"]?["options"]?["task_id"] == "id-6")
        // Celery's as_tuple(): the body's result, whose parent is the header's GroupResult, whose parent is the
        // previous step, and so on.
        #expect(result.id == "id-6")
        #expect(
            result.tuple
                == [
                    [
                        "id-6",
                        [
                            ["id-3", [["id-2", [["id-1", nil], nil]], nil]],
                            [[["id-4", nil], nil], [["id-5", nil], nil]],
                        ],
                    ],
                    nil,
                ]
        )
        // Freezing again keeps the ids.
        var again = chain
        #expect(again.freeze(newID: Self.ids()) == result)
        #expect(again == chain)
    }

    @Test func freezingKeepsAnIDAlreadySetAndAGroupIsAGroupResult() {
        var task = TaskSignature("t.add", options: ["task_id": "mine"])
        #expect(task.freeze(newID: Self.ids()).tuple == [["mine", nil], nil])
        var group = TaskSignature.group([TaskSignature("t.a"), TaskSignature("t.b")])
        let result = group.freeze(newID: Self.ids())
        #expect(result.results?.map(\.id) == ["id-2", "id-3"])
        #expect(result.tuple == [["id-1", nil], [[["id-2", nil], nil], [["id-3", nil], nil]]])
    }

    // MARK: Recording

    @Test func aTaskRecordsItsEffectsInOrderAndAddingToAChordNeedsOne() throws {
        var registry = TaskRegistry()
        registry.register("t.effects") { invocation, _ in
            invocation.storeResult(id: "other", state: "SUCCESS", result: "stored")
            let sent = invocation.apply(TaskSignature("t.add", args: [1]))
            _ = try invocation.addToChord(TaskSignature("t.add", args: [2]))
            return sent.tuple
        }
        let outside = TaskInvocation(id: "a", name: "t.effects")
        guard case .failure(let failure) = registry.execute(outside, environment: .standalone) else {
            Issue.record("add_to_chord outside a chord fails")
            return
        }
        #expect(failure == .valueError("Current task is not member of any chord"))

        var inside = TaskInvocation(id: "b", name: "t.effects")
        inside.request.group = "g1"
        inside.request.chord = C.signature("t.body")
        guard case .success(let value) = registry.execute(inside, environment: .standalone) else {
            Issue.record("the task succeeds")
            return
        }
        let effects = inside.effects.recorded
        try #require(effects.count == 3)
        #expect(effects[0] == .storeResult(taskID: "other", state: "SUCCESS", result: "stored", traceback: nil))
        guard case .apply(let applied) = effects[1], case .addToChord(let added) = effects[2] else {
            Issue.record("apply, then add_to_chord: \(effects)")
            return
        }
        #expect(value == [[applied["options"]?["task_id"] ?? nil, nil], nil], "the task got the frozen id back")
        #expect(added["options"]?["task_id"]?.stringValue != nil)
    }

    // MARK: Channel

    @Test func effectsTravelWithTheResultOverThePoolChannel() throws {
        let effects: [TaskEffect] = [
            .apply(C.signature("t.add", args: [1], options: ["task_id": "x1"])),
            .addToChord(C.signature("t.add", args: [2], options: ["task_id": "x2"])),
            .storeResult(taskID: "x3", state: "SUCCESS", result: ["ü": 1], traceback: nil),
            .storeResult(taskID: "x4", state: "FAILURE", result: ["exc_type": "ValueError"], traceback: "tb"),
        ]
        let replies: [PoolReply] = [
            .result(id: "a", outcome: .success([1, 2]), runtime: 0.5, effects: effects),
            .result(id: "b", outcome: .reject(TaskReject("again", requeue: true)), runtime: 0, effects: [effects[2]]),
            .result(id: "c", outcome: .replace(C.signature("t.x")), runtime: 0, effects: [effects[0]]),
        ]
        for reply in replies {
            #expect(try PoolReply(decoding: PoolMessagesTests.roundTrip(reply.json)) == reply)
            #expect(try PoolReply(decoding: JSONValue(parsing: reply.serialized)) == reply)
        }
        // A result without effects keeps its compact form: no `effects` field.
        let plain = PoolReply.result(id: "d", outcome: .success(1), runtime: 0)
        #expect(try JSONValue(parsing: plain.serialized)["effects"] == nil)
    }

    @Test func malformedEffectsAreTypedErrors() {
        func failure(_ effects: JSONValue) -> ChannelDecodeError? {
            do {
                _ = try PoolReply(
                    decoding: ["type": "result", "id": "a", "state": "SUCCESS", "result": 1, "effects": effects]
                )
                return nil
            } catch {
                return error
            }
        }
        #expect(failure("nope") == .init(type: "result", problem: .wrongType(field: "effects", expected: "an array")))
        #expect(failure([["type": "teleport"]]) == .init(type: "teleport", problem: .unknownType))
        #expect(
            failure([["type": "apply", "signature": ["args": []]]])
                == .init(type: "apply", problem: .wrongType(field: "signature", expected: "a signature object"))
        )
        #expect(
            failure([["type": "store_result", "task_id": "x", "result": 1]])
                == .init(type: "store_result", problem: .missingField("state"))
        )
    }

    // MARK: The delivery machine's plan

    static func chordMember(_ id: String, name: String, args: [JSONValue] = []) -> TaskMessage {
        TaskMessage(
            id: id,
            name: name,
            args: args,
            embed: ["callbacks": nil, "errbacks": nil, "chain": nil, "chord": C.signature("t.body")],
            rootID: "r1",
            group: "g1",
            groupIndex: 0,
            replyTo: "oid"
        )
    }

    @Test func addingToTheChordCountsThenPublishesTheMembersBeforeTheTasksOwnResultAndPart() throws {
        var registry = TaskRegistry.builtIn
        registry.register("t.adder") { invocation, _ in
            for value in invocation.args { try invocation.addToChord(TaskSignature("swiftq.add", args: [value, 1])) }
            return 0
        }
        let harness = CoreHarness(registry: registry)
        harness.deliver(Self.chordMember("m1", name: "t.adder", args: [5, 6]), tag: "1")
        harness.pool.runPending()
        let plan = try #require(harness.broker.plans.first { $0.deliveryTag == "1" })
        #expect(
            plan.chordSetups == [
                Canvas.ChordSetup(groupID: "g1", size: 1, extends: true),
                Canvas.ChordSetup(groupID: "g1", size: 1, extends: true),
            ]
        )
        try #require(plan.publishes.count == 2)
        for (publish, value) in zip(plan.publishes, [5, 6] as [JSONValue]) {
            #expect(publish.headers["task"] == "swiftq.add")
            #expect(publish.headers["group"] == "g1", "counts for the task's chord")
            #expect(publish.headers["group_index"] == 0)
            #expect(publish.headers["parent_id"] == "m1")
            #expect(publish.headers["root_id"] == "r1")
            let body = try C.body(publish)
            #expect(body[0] == [value, 1])
            #expect(body[2]?["chord"] == C.signature("t.body"))
        }
        #expect(plan.status == "SUCCESS")
        #expect(plan.chordParts.map(\.taskID) == ["m1"], "the task's own part after the counter grew")
        #expect(plan.disposition == .ack)
        #expect(harness.core.machine.counters.canvas["effects"] == 2)
        #expect(harness.core.machine.counters.canvas["chord_members_added"] == 2)
        #expect(harness.core.machine.counters.canvas["chords_started"] == nil)
    }

    @Test func aChordAddedToAChordCountsByItsBodyWhichKeepsTheOuterChord() throws {
        var registry = TaskRegistry.builtIn
        registry.register("t.adder") { invocation, _ in
            try invocation.addToChord(
                .chord(
                    [TaskSignature("swiftq.add", args: [1, 2]), TaskSignature("swiftq.add", args: [3, 4])],
                    body: TaskSignature("t.sum")
                )
            )
            return 0
        }
        let harness = CoreHarness(registry: registry)
        harness.deliver(Self.chordMember("m1", name: "t.adder"), tag: "1")
        harness.pool.runPending()
        let plan = try #require(harness.broker.plans.first { $0.deliveryTag == "1" })
        try #require(plan.chordSetups.count == 2)
        #expect(plan.chordSetups[0] == Canvas.ChordSetup(groupID: "g1", size: 1, extends: true))
        let inner = plan.chordSetups[1]
        #expect(!inner.extends && inner.size == 2 && inner.groupID != "g1", "the added chord starts with its own size")
        try #require(plan.publishes.count == 2)
        for publish in plan.publishes {
            #expect(publish.headers["group"] == .string(inner.groupID))
            let body = try #require(try C.body(publish)[2]?["chord"])
            #expect(body["task"] == "t.sum")
            #expect(body["options"]?["group_id"] == "g1", "the inner body counts for the outer chord")
            #expect(body["options"]?["chord"] == C.signature("t.body"))
        }
    }

    @Test func aCanvasSentByATaskUsesTheIDsTheTaskChoseBeforeItsResult() throws {
        var registry = TaskRegistry.builtIn
        registry.register("t.builder") { invocation, _ in
            invocation.apply(
                .chain([
                    TaskSignature("swiftq.add", args: [1, 1]),
                    .group([TaskSignature("swiftq.add", args: [3]), TaskSignature("swiftq.add", args: [4])]),
                    TaskSignature("swiftq.add", args: [5]),
                ])
            ).tuple
        }
        let harness = CoreHarness(registry: registry)
        harness.deliver(TaskMessage(id: "b1", name: "t.builder", replyTo: "oid"), tag: "1")
        harness.pool.runPending()
        let plan = try #require(harness.broker.plans.first { $0.deliveryTag == "1" })
        let tuple = try #require(plan.resultJSON?["result"])
        let bodyID = try #require(tuple[0]?[0]?.stringValue)
        let groupID = try #require(tuple[0]?[1]?[0]?[0]?.stringValue)
        let firstID = try #require(tuple[0]?[1]?[0]?[1]?[0]?[0]?.stringValue)
        try #require(plan.publishes.count == 1)
        let first = plan.publishes[0]
        #expect(first.headers["id"] == .string(firstID))
        #expect(first.headers["parent_id"] == "b1")
        #expect(first.headers["root_id"] == "b1")
        let next = try #require(try C.body(first)[2]?["chain"]?[0])
        #expect(next["kwargs"]?["header"]?["options"]?["task_id"] == .string(groupID))
        #expect(next["kwargs"]?["body"]?["options"]?["task_id"] == .string(bodyID))
        #expect(plan.disposition == .ack)
        // Celery's `children` of the task: what it sent, as the tuple it got back.
        #expect(plan.resultJSON?["children"] == [tuple])
    }

    @Test func anEffectRecordedUnfrozenIsFrozenOnceSoItsChildrenNameWhatWasSent() throws {
        var registry = TaskRegistry.builtIn
        registry.register("t.raw") { invocation, _ in
            invocation.effects.record(
                .apply(
                    TaskSignature.chain([TaskSignature("swiftq.add", args: [1, 1]), TaskSignature("swiftq.echo")]).json
                )
            )
            return 0
        }
        let harness = CoreHarness(registry: registry)
        harness.deliver(TaskMessage(id: "r1", name: "t.raw"), tag: "1")
        harness.pool.runPending()
        let plan = try #require(harness.broker.plans.first { $0.deliveryTag == "1" })
        try #require(plan.publishes.count == 1)
        let first = try #require(plan.publishes[0].headers["id"])
        let last = try #require(try C.body(plan.publishes[0])[2]?["chain"]?[0]?["options"]?["task_id"])
        #expect(plan.resultJSON?["children"] == [[[last, [[first, nil], nil]], nil]])
    }

    @Test func aStoredResultGoesBeforeARequeueAndBeforeTheTasksOwnResult() throws {
        var registry = TaskRegistry.builtIn
        registry.register("t.reject") { invocation, _ in
            invocation.storeResult(id: invocation.id, state: "SUCCESS", result: "first-pass")
            throw TaskReject(requeue: true)
        }
        registry.register("t.store") { invocation, _ in
            invocation.storeResult(id: "elsewhere", state: "SUCCESS", result: 7)
            return "own"
        }
        var settings = DeliveryMachine.Settings()
        settings.acksLate = true
        let harness = CoreHarness(settings: settings, registry: registry)
        harness.deliver(TaskMessage(id: "s1", name: "t.reject"), tag: "1")
        harness.deliver(TaskMessage(id: "s2", name: "t.store"), tag: "2")
        harness.pool.runPending()
        let rejected = try #require(harness.broker.plans.first { $0.deliveryTag == "1" })
        #expect(rejected.disposition == .requeue)
        #expect(rejected.result?.taskID == "s1")
        #expect(rejected.resultJSON?["status"] == "SUCCESS")
        #expect(rejected.resultJSON?["result"] == "first-pass")

        let stored = try #require(harness.broker.plans.first { $0.deliveryTag == "2" })
        #expect(stored.allResults.map(\.taskID) == ["elsewhere", "s2"])
        #expect(stored.resultJSON?["result"] == 7)
    }

    @Test func anIgnoredTaskAckedEarlyStillSendsWhatItRecorded() throws {
        var registry = TaskRegistry.builtIn
        registry.register("t.ignore") { invocation, _ in
            invocation.apply(TaskSignature("swiftq.add", args: [1, 2]))
            throw TaskIgnore()
        }
        var settings = DeliveryMachine.Settings()
        settings.acksLate = false
        let harness = CoreHarness(settings: settings, registry: registry)
        harness.deliver(TaskMessage(id: "i1", name: "t.ignore"), tag: "1")
        harness.pool.runPending()
        let plan = try #require(harness.broker.plans.first { !$0.publishes.isEmpty })
        #expect(plan.deliveryTag == nil && plan.disposition == .none)
        #expect(plan.publishes.first?.headers["parent_id"] == "i1")
    }

    @Test func aChordEffectOfATaskOutsideAChordFailsTheTaskAndSendsNothing() throws {
        var registry = TaskRegistry.builtIn
        // Recorded directly, past the check `addToChord` makes in the task.
        registry.register("t.stray") { invocation, _ in
            invocation.apply(TaskSignature("swiftq.add", args: [1, 2]))
            invocation.effects.record(.addToChord(TaskSignature("swiftq.add").json))
            return 0
        }
        let harness = CoreHarness(registry: registry)
        harness.deliver(TaskMessage(id: "x1", name: "t.stray"), tag: "1")
        harness.pool.runPending()
        let plan = try #require(harness.broker.plans.first { $0.deliveryTag == "1" })
        #expect(plan.status == "FAILURE")
        #expect(plan.resultJSON?["result"]?["exc_type"] == "ValueError")
        #expect(plan.publishes.isEmpty && plan.chordSetups.isEmpty)
    }
}
