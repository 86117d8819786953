import OrderedCollections
import SwiftqCore
import SwiftqTasks
import Testing

@testable import SwiftqConsumer
@testable import SwiftqPool

/// Celery's `self.retry(args=…, kwargs=…)`: the retry copy carries the arguments the task asked for.
struct RetryArgumentsTests {
    @Test func theRetryCopyCarriesTheNewArgumentsAndTheirReprs() throws {
        var registry = TaskRegistry.builtIn
        registry.register("t.retry_args") { invocation, _ in
            throw TaskRetry(countdown: 0, args: [2, 3], kwargs: ["label": "kept"])
        }
        registry.register("t.retry_kwargs_only") { _, _ in throw TaskRetry(countdown: 0, kwargs: ["foo": 2]) }
        let harness = CoreHarness(registry: registry)
        harness.deliver(TaskMessage(id: "a1", name: "t.retry_args", kwargs: ["foo": 1, "bar": 2]), tag: "1")
        harness.deliver(TaskMessage(id: "a2", name: "t.retry_kwargs_only", args: [1, 2]), tag: "2")
        harness.pool.runPending()
        let plans = harness.broker.plans
        let first = try #require(plans.first { $0.deliveryTag == "1" }?.publishes.first)
        let body = try JSONValue(parsing: first.body)
        #expect(body[0] == [2, 3])
        #expect(body[1] == ["label": "kept"])
        #expect(first.headers["argsrepr"] == "(2, 3)")
        #expect(first.headers["kwargsrepr"] == "{'label': 'kept'}")
        #expect(first.headers["retries"] == 1)
        let second = try #require(plans.first { $0.deliveryTag == "2" }?.publishes.first)
        let kept = try JSONValue(parsing: second.body)
        #expect(kept[0] == [1, 2], "arguments not given are kept")
        #expect(kept[1] == ["foo": 2])
    }

    @Test func anExecProgramMayGiveTheNextRunsArguments() {
        let asked = ExecTask.retryRequest(
            Array(#"{"countdown": 1, "args": [5], "kwargs": {"x": true}}"#.utf8),
            program: "p",
            traceback: nil
        )
        #expect(asked == .retry(TaskRetry(countdown: 1, args: [5], kwargs: ["x": true])))
        guard
            case .failure(let failure) = ExecTask.retryRequest(
                Array(#"{"args": 5}"#.utf8),
                program: "p",
                traceback: nil
            )
        else {
            Issue.record("args that are not an array are refused")
            return
        }
        #expect(failure.message.contains("args that are not an array"))
    }
}
