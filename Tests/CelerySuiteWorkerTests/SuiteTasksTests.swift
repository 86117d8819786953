import SwiftqCore
import SwiftqTasks
import Testing

@testable import swiftq_celery_suite_worker

/// The suite worker's tasks behave as `t/integration/tasks.py` does in Python where the suite's assertions look:
/// Python's `+` and `sum`, its call errors, the exceptions the client re-raises, and a clear failure for what
/// the task API cannot do yet.
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

    @Test func missingTaskAPIFailsClearly() {
        guard case .failure(let failure) = Self.run("t.integration.tasks.return_priority") else {
            Issue.record("return_priority succeeded without the message priority")
            return
        }
        #expect(failure.type == "NotImplementedError")
        #expect(failure.message.contains("delivery_info['priority']"))
        #expect(failure.message.contains("which swiftq's task API does not offer yet"))
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
}
