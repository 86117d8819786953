import Foundation
import SwiftqCore
import Testing

/// Retries, time limits, rate limits, acknowledgement and child limits, against a real redis-server, real pool
/// children and a stock Python Celery client.
@Suite(.serialized) struct TaskSemanticsTests {
    static var execScript: String { Python.scripts + "/exec_task.py" }

    /// Lines of a file (the runs an exec task recorded).
    static func lines(_ path: String) -> [String] {
        ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    /// A client request that also records the states the backend shows while the client waits.
    static func tracking(_ request: JSONValue) -> JSONValue {
        var fields = request.objectValue ?? [:]
        fields["track_states"] = true
        return .object(fields)
    }

    // MARK: Retries

    @Test func anExecTaskThatExits75TwiceSucceedsOnItsThirdRunAndTheBackendShowedRetry() throws {
        let redis = try RedisServer()
        let runs = try TemporaryDirectory()
        let daemon = try RedisInteropTests.daemon(
            broker: redis,
            extraYAML: """
                tasks:
                  exec.flaky:
                    exec: [\(Python.interpreter), \(Self.execScript), flaky, \(runs.path), "2"]

                """
        )
        let results = try Python.celeryClient(
            Self.tracking(RedisInteropTests.request(redis, calls: [["task": "exec.flaky", "args": []]], timeout: 30))
        )
        #expect(results.first?["state"] == "SUCCESS")
        #expect(results.first?["result"] == ["runs": 3])
        #expect(results.first?["states"]?.arrayValue?.contains("RETRY") == true, "\(results)")
        let id = try #require(results.first?["id"]?.stringValue)
        #expect(Self.lines(runs.path + "/" + id).count == 3)
        let stats = try daemon.stats()
        #expect(stats["tasks"]?["retried"] == 2)
        #expect(stats["tasks"]?["succeeded"] == 1)
        #expect(try redis.cli(["HLEN", "unacked"]).trimmingCharacters(in: .whitespacesAndNewlines) == "0")
    }

    @Test func maxRetriesOneEndsInFailureWithTheCauseAfterTwoRuns() throws {
        let redis = try RedisServer()
        let runs = try TemporaryDirectory()
        let daemon = try RedisInteropTests.daemon(
            broker: redis,
            extraYAML: """
                tasks:
                  exec.down:
                    exec: [\(Python.interpreter), \(Self.execScript), flaky, \(runs.path), "100"]
                    max_retries: 1

                """
        )
        let results = try Python.celeryClient(
            RedisInteropTests.request(redis, calls: [["task": "exec.down", "args": []]], timeout: 30)
        )
        #expect(results.first?["state"] == "FAILURE")
        #expect(results.first?["exception"]?["type"] == "ExecTaskFailed")
        #expect(results.first?["exception"]?["message"] == "not yet (run 2)")
        let id = try #require(results.first?["id"]?.stringValue)
        // Nothing runs a third time, even later.
        Thread.sleep(forTimeInterval: 1.5)
        #expect(Self.lines(runs.path + "/" + id).count == 2)
        #expect(try daemon.stats()["tasks"]?["retried"] == 1)
    }

    @Test func aSwiftTaskRetriesWithItsCountdown() throws {
        let redis = try RedisServer()
        let daemon = try RedisInteropTests.daemon(broker: redis, binary: Binaries.exampleWorker)
        let started = Date()
        let results: [JSONValue]
        do {
            results = try Python.celeryClient(
                Self.tracking(
                    RedisInteropTests.request(redis, calls: [["task": "example.flaky", "args": []]], timeout: 20)
                )
            )
        } catch {
            Issue.record("\(error)\nlog:\n\(daemon.log)")
            return
        }
        let elapsed = Date().timeIntervalSince(started)
        #expect(results.first?["state"] == "SUCCESS")
        #expect(results.first?["result"] == "succeeded after 2 retries")
        #expect(results.first?["states"]?.arrayValue?.contains("RETRY") == true, "\(results)")
        #expect(elapsed >= 2, "two retries with countdown=1 took \(elapsed)s")
        // The stored result names the task as its own parent, as Celery's retries do.
        let id = try #require(results.first?["id"]?.stringValue)
        let meta = try JSONValue(
            parsing: try redis.cli(["-n", "1", "GET", "celery-task-meta-\(id)"]).trimmingCharacters(
                in: .whitespacesAndNewlines
            )
        )
        #expect(meta["parent_id"]?.stringValue == id)
    }
}
