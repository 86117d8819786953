import OrderedCollections
import SwiftqCore
import SwiftqTasks
import Testing

@testable import SwiftqConsumer
@testable import SwiftqPool

/// `Task.replace` as Celery 5.7 prepares it (`celery/app/task.py`): the pure planner, then the delivery machine's
/// plan (publish the replacement, store nothing, ack).
struct CanvasReplaceTests {
    typealias C = CanvasTests
    static let now = CanvasTests.now

    static func replaced(
        callbacks: [JSONValue]? = nil,
        errbacks: [JSONValue]? = nil,
        chain: [JSONValue]? = nil,
        chord: JSONValue? = nil,
        group: String? = nil,
        groupIndex: Int? = nil,
        nesting: Int? = nil
    ) -> TaskMessage {
        var message = CanvasTests.finished(
            callbacks: callbacks,
            errbacks: errbacks,
            chain: chain,
            chord: chord,
            group: group,
            groupIndex: groupIndex
        )
        if let nesting { message.headers["replaced_task_nesting"] = .int(Int64(nesting)) }
        return message
    }

    static func plan(_ message: TaskMessage, _ signature: JSONValue) throws -> (
        signature: JSONValue, chain: [JSONValue]
    ) {
        try Canvas.replacement(of: message, with: signature).get()
    }

    static func publish(_ message: TaskMessage, _ signature: JSONValue) throws -> Canvas.Outcome {
        let ids = CanvasTests.IDs()
        return try Canvas.replace(message, with: signature, context: C.context, now: now, newID: ids.make).get()
    }

    @Test func aPlainReplacementIsFrozenWithTheTaskIDAndKeepsItsPlace() throws {
        let replacement = try Self.plan(
            Self.replaced(chord: C.signature("t.body"), group: "g1", groupIndex: 2, nesting: 1),
            C.signature("t.add", args: [1, 2])
        )
        let options = try #require(replacement.signature["options"]?.objectValue)
        #expect(options["task_id"] == "p1", "frozen with the replaced task's id")
        #expect(options["chord"] == C.signature("t.body"))
        #expect(options["group_id"] == "g1")
        #expect(options["group_index"] == 2)
        #expect(options["root_id"] == "r1")
        #expect(options["replaced_task_nesting"] == 2)
        #expect(replacement.chain.isEmpty)

        let outcome = try Self.publish(Self.replaced(nesting: 0), C.signature("t.add", args: [1, 2]))
        try #require(outcome.publishes.count == 1)
        let headers = outcome.publishes[0].headers
        #expect(headers["id"] == "p1")
        #expect(headers["task"] == "t.add")
        #expect(headers["parent_id"] == "p1", "sent by the replaced task, as Celery's sig.delay() in it")
        #expect(headers["root_id"] == "r1")
        #expect(headers["replaced_task_nesting"] == 1)
        #expect(try C.body(outcome.publishes[0])[0] == [1, 2], "nothing prepended: the replacement is not a callback")
    }

    @Test func theRestOfTheTasksChainFollowsTheReplacementWithItsNesting() throws {
        let step2 = C.signature("t.add", args: [16], options: ["task_id": "s2"])
        let step3 = C.signature("t.add", args: [32], options: ["task_id": "s3"])
        let message = Self.replaced(chain: [step3, step2])
        let replacement = try Self.plan(message, C.signature("t.add", args: [4, 8]))
        #expect(replacement.chain.map { $0["options"]?["task_id"] } == ["s3", "s2"], "wire order kept")
        #expect(replacement.chain.allSatisfy { $0["options"]?["replaced_task_nesting"] == 1 })

        let outcome = try Self.publish(message, C.signature("t.add", args: [4, 8]))
        try #require(outcome.publishes.count == 1)
        let embed = try C.body(outcome.publishes[0])[2]
        #expect(embed?["chain"]?.arrayValue?.map { $0["options"]?["task_id"] } == ["s3", "s2"])
    }

    @Test func callbacksAndErrbacksOfTheTaskAreLinkedToTheReplacement() throws {
        let callback = C.signature("t.echo", args: ["done"], immutable: true)
        let errback = C.signature("t.log_error")
        let message = Self.replaced(callbacks: [callback], errbacks: [errback])
        let plain = try Self.plan(message, C.signature("t.add", args: [1, 2]))
        #expect(plain.signature["options"]?["link"] == [callback])
        #expect(plain.signature["options"]?["link_error"] == [errback])

        // A chain: its own callback and the task's go to its last step, errbacks to every step.
        let ownCallback = C.signature("t.own")
        let chain = C.signature(
            "celery.chain",
            options: ["link": [ownCallback]],
            subtaskType: "chain",
            kwargs: ["tasks": [C.signature("t.identity", args: [1]), C.signature("t.identity")]]
        )
        let replacement = try Self.plan(message, chain)
        let steps = try #require(replacement.signature["kwargs"]?["tasks"]?.arrayValue)
        #expect(replacement.signature["options"]?["link"] == nil, "not left on the chain, so never linked twice")
        #expect(steps[0]["options"]?["link"] == nil)
        #expect(steps[1]["options"]?["link"] == [ownCallback, callback], "the task's appended to the chain's")
        #expect(steps.allSatisfy { $0["options"]?["link_error"] == [errback] })
        #expect(steps[1]["options"]?["task_id"] == "p1", "a chain is frozen by its last step")
        #expect(steps[0]["options"]?["task_id"] == nil)
        #expect(steps.allSatisfy { $0["options"]?["replaced_task_nesting"] == 1 })

        let outcome = try Self.publish(message, chain)
        try #require(outcome.publishes.count == 1)
        let first = outcome.publishes[0]
        #expect(first.headers["task"] == "t.identity")
        #expect(first.headers["id"] != "p1")
        #expect(first.headers["replaced_task_nesting"] == 1)
        let embed = try C.body(first)[2]
        #expect(embed?["errbacks"] == [errback])
        #expect(embed?["chain"]?[0]?["options"]?["task_id"] == "p1")
        #expect(embed?["chain"]?[0]?["options"]?["link"] == [ownCallback, callback])
    }

    @Test func aGroupBecomesAChordWithAccumulateAsBodyUnderTheTaskID() throws {
        let group = C.signature(
            "celery.group",
            subtaskType: "group",
            kwargs: ["tasks": [C.signature("t.add", args: [2, 1]), C.signature("t.add", args: [1, 1])]]
        )
        let callback = C.signature("t.echo")
        let message = Self.replaced(callbacks: [callback])
        let replacement = try Self.plan(message, group)
        #expect(replacement.signature["subtask_type"] == "chord")
        #expect(replacement.signature["kwargs"]?["header"] == group)
        let body = try #require(replacement.signature["kwargs"]?["body"])
        #expect(body["task"] == "celery.accumulate")
        #expect(body["kwargs"] == ["index": 0])
        #expect(body["options"]?["task_id"] == "p1")
        #expect(body["options"]?["link"] == [callback], "a chord's callbacks go to its body")

        let outcome = try Self.publish(message, group)
        #expect(outcome.chordSetups.map(\.size) == [2])
        #expect(outcome.publishes.count == 2)
        let chord = try C.body(outcome.publishes[0])[2]?["chord"]
        #expect(chord?["task"] == "celery.accumulate")
        #expect(chord?["options"]?["task_id"] == "p1")

        // A chain ending in a group: the group becomes the chord.
        let chain = C.signature(
            "celery.chain",
            subtaskType: "chain",
            kwargs: ["tasks": [C.signature("t.add", args: [1, 2]), group]]
        )
        let last = try Self.plan(message, chain).signature["kwargs"]?["tasks"]?[1]
        #expect(last?["subtask_type"] == "chord")
        #expect(last?["kwargs"]?["body"]?["options"]?["task_id"] == "p1")
    }

    @Test func anEmptyChainOrAChordMemberIsRefused() {
        let empty = C.signature("celery.chain", subtaskType: "chain", kwargs: ["tasks": []])
        #expect(
            throws: TaskFailure(
                type: "ImproperlyConfigured",
                message: "Cannot replace with an empty chain",
                module: "celery.exceptions"
            )
        ) { try Self.plan(Self.replaced(), empty) }
        #expect(
            throws: TaskFailure(
                type: "ImproperlyConfigured",
                message: "A signature replacing a task must not be part of a chord",
                module: "celery.exceptions"
            )
        ) { try Self.plan(Self.replaced(), C.signature("t.add", options: ["chord": nil])) }
        #expect(throws: TaskFailure.self) { try Self.plan(Self.replaced(), "t.add") }
    }

    @Test func accumulateReturnsTheIndexedArgumentOrAllOfThem() throws {
        let registry = TaskRegistry()
        func run(_ args: [JSONValue], _ kwargs: OrderedDictionary<String, JSONValue>) -> TaskResult {
            registry.execute(
                TaskInvocation(id: "a", name: "celery.accumulate", args: args, kwargs: kwargs),
                environment: TaskEnvironment(sleep: { _ in true })
            )
        }
        #expect(registry.contains("celery.accumulate"))
        #expect(run([[3, 2]], ["index": 0]) == .success([3, 2]))
        #expect(run([1, 2], [:]) == .success([1, 2]))
        #expect(run([1, 2], ["index": -1]) == .success(2))
        guard case .failure(let failure) = run([], ["index": 0]) else {
            Issue.record("an index out of range fails")
            return
        }
        #expect(failure.type == "IndexError")
    }

    @Test func theMachinePublishesTheReplacementThenAcksAndStoresNothing() throws {
        var registry = TaskRegistry.builtIn
        registry.register("t.replaced") { _, _ in
            throw TaskReplace(.chain([TaskSignature("swiftq.add", args: [1, 2]), TaskSignature("swiftq.echo")]))
        }
        registry.register("t.empty") { _, _ in throw TaskReplace(.chain([])) }
        let harness = CoreHarness(registry: registry)
        harness.deliver(TaskMessage(id: "j1", name: "t.replaced", replyTo: "oid"), tag: "1")
        harness.deliver(TaskMessage(id: "j2", name: "t.empty"), tag: "2")
        harness.pool.runPending()
        let plans = harness.broker.plans
        let replaced = try #require(plans.first { $0.deliveryTag == "1" })
        #expect(replaced.disposition == .ack)
        #expect(replaced.result == nil, "the replaced task stores nothing: its replacement stores under its id")
        try #require(replaced.publishes.count == 1)
        let first = replaced.publishes[0]
        #expect(first.headers["task"] == "swiftq.add")
        #expect(first.headers["parent_id"] == "j1")
        #expect(first.replyTo == "oid")
        #expect(try C.body(first)[2]?["chain"]?[0]?["options"]?["task_id"] == "j1")
        #expect(harness.core.machine.counters.canvas["replaced"] == 1)

        let refused = try #require(plans.first { $0.deliveryTag == "2" })
        #expect(refused.status == "FAILURE")
        #expect(refused.resultJSON?["result"]?["exc_type"] == "ImproperlyConfigured")
        #expect(refused.publishes.isEmpty)
    }
}
