import OrderedCollections
import SwiftqCore
import SwiftqTasks
import Testing

@testable import swiftq_celery_suite_worker

/// The suite worker's tasks behave as `t/integration/tasks.py` does in Python where the suite's assertions look:
/// Python's `+` and `sum`, its call errors, the exceptions the client re-raises, and the task effects of the tasks
/// that act from inside their body.
@Suite struct SuiteTasksTests {
    static let registry: TaskRegistry = {
        var registry = TaskRegistry()
        SuiteTasks.register(into: &registry)
        return registry
    }()

    static func run(
        _ name: String,
        _ args: [JSONValue] = [],
        _ kwargs: [(String, JSONValue)] = []
    ) -> Result<JSONValue, TaskFailure> {
        var invocation = TaskInvocation(id: "id-1", name: name, args: args)
        for (key, value) in kwargs { invocation.kwargs[key] = value }
        return registry.run(invocation, environment: .standalone)
    }

    /// `time.sleep` raises `SoftTimeLimitExceeded` at the soft limit: `delayed_sum` fails with it,
    /// `delayed_sum_with_soft_guard` catches it and returns 0 (`test_chord_soft_timeout_recuperation`).
    @Test func sleepsEndAtTheSoftTimeLimitAsPythonsDo() {
        let environment = TaskEnvironment(
            sleep: { _ in false },
            softDeadline: ContinuousClock.now - .seconds(1)
        )
        func run(_ name: String) -> Result<JSONValue, TaskFailure> {
            let invocation = TaskInvocation(id: "id-1", name: name, args: [[100], 2])
            return Self.registry.run(invocation, environment: environment)
        }
        #expect(run("t.integration.tasks.delayed_sum_with_soft_guard") == .success(0))
        #expect(run("t.integration.tasks.delayed_sum") == .failure(TaskFailure.softTimeLimitExceeded))
        #expect(Self.run("t.integration.tasks.delayed_sum_with_soft_guard", [[100], 0]) == .success(100))
    }

    @Test func pingAndExactNames() {
        #expect(Self.run("celery.ping") == .success("pong"))
        #expect(Self.registry.contains("t.integration.tasks.add"))
        #expect(Self.registry.contains("auto_retry_class_task"))
    }

    @Test func addFollowsPython() {
        #expect(Self.run("t.integration.tasks.add", [1, 2]) == .success(3))
        #expect(Self.run("t.integration.tasks.add", [1, 2], [("z", 3)]) == .success(6))
        // z=0 is falsy in Python: not added.
        #expect(Self.run("t.integration.tasks.add", [1, 2, 0]) == .success(3))
        #expect(Self.run("t.integration.tasks.add", [[1], [2]]) == .success([1, 2]))
        #expect(Self.run("t.integration.tasks.add", ["a", "b"]) == .success("ab"))
        #expect(Self.run("t.integration.tasks.add", [1, 2.5]) == .success(3.5))
        #expect(
            Self.run("t.integration.tasks.add", [1, "x"])
                == .failure(.typeError("unsupported operand type(s) for +: 'int' and 'str'"))
        )
        #expect(
            Self.run("t.integration.tasks.add", [1])
                == .failure(.typeError("add() missing 1 required positional argument: 'y'"))
        )
        #expect(
            Self.run("t.integration.tasks.add", [1, 2, 3, 4])
                == .failure(.typeError("add() takes 3 positional arguments but 4 were given"))
        )
    }

    @Test func sums() {
        #expect(Self.run("t.integration.tasks.tsum", [[1, 2, 3]]) == .success(6))
        #expect(Self.run("t.integration.tasks.xsum", [[1, [2, 3], 4]]) == .success(10))
        #expect(Self.run("t.integration.tasks.delayed_sum", [[1, 2]], [("pause_time", 0)]) == .success(3))
    }

    @Test func failRaisesTheSuitesExpectedException() throws {
        guard case .failure(let failure) = Self.run("t.integration.tasks.fail", ["test"]) else {
            Issue.record("fail succeeded")
            return
        }
        #expect(failure.type == "ExpectedException")
        #expect(failure.module == "t.integration.tasks")
        #expect(failure.arguments == ["Task expected to fail", "test"])
        let raised = Self.run("t.integration.tasks.raise_error")
        #expect(raised == .failure(.valueError("deliberate error")))
    }

    /// The tasks that act from inside their body record task effects: `store_success_then_reject` stores SUCCESS for
    /// itself before its `Reject(requeue=True)`, then returns on the redelivery; `add_to_all_to_chord` adds one `add`
    /// per number to its chord (and fails as Celery does outside one); `build_chain_inside_task` sends its chain and
    /// returns its result tuple.
    @Test func effectTasksRecordWhatTheirPythonBodiesDo() throws {
        var invocation = TaskInvocation(id: "s-1", name: "t.integration.tasks.store_success_then_reject")
        invocation.request.deliveryInfo = ["redelivered": false]
        #expect(Self.registry.execute(invocation, environment: .standalone) == .reject(TaskReject(requeue: true)))
        #expect(
            invocation.effects.recorded == [
                .storeResult(taskID: "s-1", state: "SUCCESS", result: "first-pass", traceback: nil)
            ]
        )
        var again = TaskInvocation(id: "s-1", name: "t.integration.tasks.store_success_then_reject")
        again.request.deliveryInfo = ["redelivered": true]
        #expect(Self.registry.execute(again, environment: .standalone) == .success("dedup-pass"))
        #expect(again.effects.recorded.isEmpty)

        var member = TaskInvocation(id: "c-1", name: "t.integration.tasks.add_to_all_to_chord", args: [[1, 2, 3], 4])
        #expect(
            Self.registry.execute(member, environment: .standalone)
                == .failure(.valueError("Current task is not member of any chord"))
        )
        member.request.group = "g1"
        member.request.chord = ["task": "t.integration.tasks.identity"]
        #expect(Self.registry.execute(member, environment: .standalone) == .success(0))
        let added = member.effects.recorded.compactMap { effect -> JSONValue? in
            guard case .addToChord(let signature) = effect else { return nil }
            return signature["args"]
        }
        #expect(added == [[1, 4], [2, 4], [3, 4]])

        let builder = TaskInvocation(id: "b-1", name: "t.integration.tasks.build_chain_inside_task")
        guard case .success(let tuple) = Self.registry.execute(builder, environment: .standalone) else {
            Issue.record("build_chain_inside_task failed")
            return
        }
        // What `test_groupresult_serialization` checks: two items, the first holding the parent's tuple.
        #expect(tuple.arrayValue?.count == 2)
        #expect(tuple[0]?[1]?.arrayValue != nil)
        guard case .apply(let chain)? = builder.effects.recorded.first else {
            Issue.record("build_chain_inside_task sent nothing")
            return
        }
        #expect(chain["kwargs"]?["tasks"]?.arrayValue?.count == 3, "add, add, chord(group, add)")
    }

    /// The message priority and properties reach the task as Celery's `delivery_info['priority']` and
    /// `properties`.
    @Test func priorityAndPropertiesTasksReadTheRequest() {
        var invocation = TaskInvocation(id: "p-1", name: "t.integration.tasks.return_priority")
        invocation.request.deliveryInfo = ["exchange": "", "routing_key": "celery", "priority": 7]
        #expect(Self.registry.run(invocation, environment: .standalone) == .success("Priority: 7"))
        invocation.request.deliveryInfo["priority"] = nil
        #expect(Self.registry.run(invocation, environment: .standalone) == .success("Priority: None"))
        invocation = TaskInvocation(id: "p-2", name: "t.integration.tasks.return_properties")
        invocation.request.properties = ["app_id": "1234", "priority": 0]
        #expect(
            Self.registry.run(invocation, environment: .standalone) == .success(["app_id": "1234", "priority": 0])
        )
    }

    /// The replace tasks ask for the signatures their Python bodies build.
    @Test func replaceTasksThrowTaskReplaceWithPythonsSignatures() throws {
        func replacement(_ name: String, _ args: [JSONValue] = [], request: TaskRequest = TaskRequest()) -> JSONValue? {
            var invocation = TaskInvocation(id: "id-r", name: "t.integration.tasks.\(name)", args: args)
            invocation.request = request
            guard case .replace(let signature) = Self.registry.execute(invocation, environment: .standalone) else {
                return nil
            }
            return signature
        }
        let add = try #require(replacement("add_replaced", [1, 2]))
        #expect(add["task"] == "t.integration.tasks.add")
        #expect(add["args"] == [1, 2])
        #expect(add["subtask_type"] == .null)
        #expect(replacement("fail_replaced", ["a"])?["immutable"] == true)

        let chain = try #require(replacement("replace_with_chain", [42]))
        #expect(chain["subtask_type"] == "chain")
        #expect(chain["kwargs"]?["tasks"]?[0]?["args"] == [42])
        #expect(chain["options"]?["link"]?[0]?["task"] == "t.integration.tasks.redis_echo")
        let raising = try #require(replacement("replace_with_chain_which_raises", [1]))
        #expect(raising["options"]?["link_error"]?[0]?["task"] == "t.integration.tasks.redis_echo")
        #expect(replacement("replace_with_empty_chain")?["kwargs"]?["tasks"] == [])
        let group = try #require(replacement("add_to_all", [[1, 2], 3]))
        #expect(group["subtask_type"] == "group")
        #expect(group["kwargs"]?["tasks"]?.arrayValue?.map { $0["args"] } == [[1, 3], [2, 3]])

        var request = TaskRequest()
        request.replacedTaskNesting = 2
        request.replyTo = "oid"
        let next = try #require(replacement("record_replaced_task_nesting", [1, [0, 1]], request: request))
        #expect(next["args"] == [0, [0, 1, 2]])
        #expect(next["options"]?["reply_to"] == "oid")
        #expect(Self.run("t.integration.tasks.record_replaced_task_nesting", [0]) == .success([0]))

        let stamped = try #require(replacement("replace_with_stamped_task"))
        #expect(stamped["task"] == "t.integration.tasks.replaced_with_me")
        #expect(stamped["options"]?["stamped_headers"] == ["StampOnReplace"])
        #expect(stamped["options"]?["StampOnReplace"] == "This is the replaced task")
    }

    /// `retry(args=…)`/`retry(kwargs=…)` merge with the inherited arguments as Celery 5.7's `Task.retry` does.
    @Test func retryWithNewArgumentsMergesAsCeleryDoes() {
        func retry(_ name: String, args: [JSONValue] = [], kwargs: OrderedDictionary<String, JSONValue> = [:])
            -> TaskResult
        {
            let invocation = TaskInvocation(id: "id-q", name: "t.integration.tasks.\(name)", args: args, kwargs: kwargs)
            return Self.registry.execute(invocation, environment: .standalone)
        }
        #expect(
            retry("retry_with_args_after_kwargs", kwargs: ["foo": 1, "bar": 2, "label": "kept"])
                == .retry(TaskRetry(countdown: 0, args: [2, 3], kwargs: ["label": "kept"]))
        )
        #expect(
            retry("retry_with_kwargs_after_args", args: [1, 2])
                == .retry(TaskRetry(countdown: 0, args: [2, 2], kwargs: [:]))
        )
        var second = TaskInvocation(id: "id-q", name: "t.integration.tasks.retry_with_kwargs_after_args", args: [2, 2])
        second.retries = 1
        #expect(
            Self.registry.execute(second, environment: .standalone)
                == .success(["foo": 2, "bar": 2, "retries": 1, "is_eager": false])
        )
    }

    @Test func idsAndCollectIdsReturnTheRequestIds() {
        var invocation = TaskInvocation(id: "id-2", name: "t.integration.tasks.ids", args: [1])
        invocation.request.rootID = "root"
        #expect(Self.registry.run(invocation, environment: .standalone) == .success(["root", nil, 1]))
        invocation = TaskInvocation(id: "id-3", name: "t.integration.tasks.collect_ids", args: [["root", nil, 1], 2])
        invocation.request.rootID = "root"
        invocation.request.parentID = "id-2"
        #expect(
            Self.registry.run(invocation, environment: .standalone)
                == .success([["root", nil, 1], ["root", "id-2", 2]])
        )
    }

    /// The retry, reject and request-context tasks use the task API's TaskRetry, TaskReject and TaskRequest.
    @Test func retryTasksThrowTaskRetryUntilRetried() {
        var invocation = TaskInvocation(id: "r", name: "t.integration.tasks.retry_once", kwargs: ["countdown": 2])
        #expect(
            Self.registry.execute(invocation, environment: .standalone)
                == .retry(TaskRetry(countdown: 2, maxRetries: 1))
        )
        invocation.retries = 1
        #expect(Self.registry.execute(invocation, environment: .standalone) == .success(1))
        let retry = Self.registry.execute(
            TaskInvocation(id: "r", name: "t.integration.tasks.retry"),
            environment: .standalone
        )
        #expect(retry == .retry(TaskRetry(countdown: 5, cause: expectedException([]))))
        let unpickleable = Self.registry.execute(
            TaskInvocation(
                id: "u",
                name: "t.integration.tasks.retry_unpickleable",
                args: ["foo", "bar"],
                kwargs: ["retry_kwargs": ["countdown": 10, "max_retries": 1]]
            ),
            environment: .standalone
        )
        guard case .retry(let request) = unpickleable else {
            Issue.record("retry_unpickleable did not ask for a retry: \(unpickleable)")
            return
        }
        #expect(request.countdown == 10 && request.maxRetries == 1)
        #expect(request.cause?.type == "UnpickleableException" && request.cause?.arguments == ["foo"])
    }

    @Test func rejectTasksThrowTaskReject() {
        var invocation = TaskInvocation(id: "j", name: "t.integration.tasks.reject_then_succeed")
        #expect(
            Self.registry.execute(invocation, environment: .standalone) == .reject(TaskReject(requeue: true))
        )
        invocation.request.deliveryInfo["redelivered"] = true
        #expect(Self.registry.execute(invocation, environment: .standalone) == .success("second-pass"))
        #expect(
            Self.registry.execute(
                TaskInvocation(id: "k", name: "t.integration.tasks.reject_without_requeue"),
                environment: .standalone
            ) == .reject(TaskReject("rejected", requeue: false))
        )
    }

    @Test func requestContextTasksReturnTheRequestFields() {
        var invocation = TaskInvocation(id: "t", name: "t.integration.tasks.return_request_time_limits")
        #expect(
            Self.registry.run(invocation, environment: .standalone)
                == .success(["time_limit": nil, "soft_time_limit": nil])
        )
        invocation.request.timeLimit = 60
        invocation.request.softTimeLimit = 2.5
        #expect(
            Self.registry.run(invocation, environment: .standalone)
                == .success(["time_limit": 60, "soft_time_limit": 2.5])
        )
        invocation = TaskInvocation(id: "h", name: "t.integration.tasks.retry_once_headers", retries: 1)
        invocation.request.headers = ["x-test-header": "test-value"]
        #expect(Self.registry.run(invocation, environment: .standalone) == .success(["x-test-header": "test-value"]))
        invocation = TaskInvocation(id: "e", name: "t.integration.tasks.return_request_eta")
        invocation.request.eta = "2026-12-05T10:00:00+00:00"
        #expect(Self.registry.run(invocation, environment: .standalone) == .success("2026-12-05T10:00:00+00:00"))
    }

    /// Celery's built-in `celery.map` and `celery.starmap` call a registered task once per item.
    @Test func mapAndStarmapCallTheTaskPerItem() {
        let add: JSONValue = ["task": "t.integration.tasks.add", "args": [], "kwargs": [:], "options": [:]]
        #expect(Self.run("celery.starmap", [add, [[1, 2], [3, 4]]]) == .success([3, 7]))
        #expect(Self.run("celery.map", [["task": "t.integration.tasks.tsum"], [[1, 2], [3]]]) == .success([3, 3]))
        #expect(Self.run("celery.starmap", [add, []]) == .success([]))
        #expect(
            Self.run("celery.starmap", [add, [[1]]])
                == .failure(.typeError("add() missing 1 required positional argument: 'y'"))
        )
        #expect(Self.run("celery.map", [["task": "no.such"], [1]]) == .failure(.notRegistered("no.such")))
        #expect(Self.registry.contains("celery.starmap") && Self.registry.names.contains("celery.map"))
    }

    /// The suite sends `str(uuid4()).encode()`: Python bytes, which kombu's JSON carries as a typed object; redis-py
    /// writes their text.
    @Test func redisTextTakesPythonBytesAsKombuEncodesThem() throws {
        #expect(try Python.redisText(["__type__": "bytes", "__value__": "abc"]) == "abc")
        #expect(try Python.redisText("abc") == "abc")
        #expect(throws: TaskFailure.self) { try Python.redisText(["__type__": "other", "__value__": "abc"]) }
    }

    /// New-style errbacks are registered with the task API's registerErrback: without the failed task (a Python
    /// worker's old-style call) they fail as Python does, before touching Redis.
    @Test func newStyleErrbacksNeedTheFailedTask() {
        for name in ["errback_new_style", "errback_new_style_with_args"] {
            guard case .failure(let failure) = Self.run("t.integration.tasks.\(name)", ["some-id", "label"]) else {
                Issue.record("\(name) ran without the failed task")
                continue
            }
            #expect(failure.type == "TypeError")
        }
    }
}
