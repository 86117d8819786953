import Foundation
import SwiftqCore
import Testing

/// Celery's `Task.replace` done by Swift tasks (`TaskReplace`) on swiftqd, driven by a stock Python Celery 5.7 client on
/// a real redis-server: the client waits on the task it sent and gets the replacement's result.
@Suite(.serialized) struct ReplaceTests {
    static func meta(_ redis: RedisServer, _ id: String) throws -> JSONValue? {
        let text = try redis.cli(["-n", "1", "GET", "celery-task-meta-\(id)"])
            .trimmingCharacters(in: .whitespacesAndNewlines)
        return text.isEmpty ? nil : try JSONValue(parsing: text)
    }

    @Test func aTaskReplacedByAChainGivesTheChainsResultThroughItsOwnAsyncResultAndItsCallbackRuns() throws {
        let redis = try RedisServer()
        let daemon = try RedisInteropTests.daemon(broker: redis, binary: Binaries.exampleWorker)
        let callbackID = "callback-of-the-replaced-task"
        let callback: JSONValue = [
            "task": "swiftq.echo", "args": [], "kwargs": [:], "options": ["task_id": .string(callbackID)],
            "subtask_type": nil, "immutable": false,
        ]
        let results: [JSONValue]
        do {
            results = try Python.celeryClient(
                RedisInteropTests.request(
                    redis,
                    calls: [["task": "example.scaled_area", "args": [6, 7], "options": ["link": [callback]]]],
                    timeout: 20
                )
            )
        } catch {
            Issue.record("\(error)\nlog:\n\(daemon.log.suffix(6000))")
            return
        }
        #expect(results.first?["state"] == "SUCCESS", "\(results)\n\(daemon.log.suffix(4000))")
        #expect(results.first?["result"] == 420, "(6 × 7) × 10 by the chain, under the replaced task's id")
        let id = try #require(results.first?["id"]?.stringValue)
        let meta = try #require(try Self.meta(redis, id))
        #expect(meta["status"] == "SUCCESS")
        // Stored by the chain's last step (example.multiply), whose parent is the chain's first step.
        let first = try #require(meta["parent_id"]?.stringValue)
        #expect(first != id)
        let firstMeta = try #require(try Self.meta(redis, first))
        #expect(firstMeta["result"] == 42)
        #expect(firstMeta["parent_id"]?.stringValue == id, "the replacement was sent by the replaced task")
        // The replaced task's callback was carried to the chain's last step and got its result.
        #expect(eventually(timeout: 10) { (try? Self.meta(redis, callbackID))??["result"] == 420 })
        #expect(try daemon.stats()["tasks"]?["by_name"]?["example.multiply"]?["succeeded"] == 2)
    }

    @Test func aTaskReplacedByAGroupGivesTheListOfItsResults() throws {
        let redis = try RedisServer()
        let daemon = try RedisInteropTests.daemon(broker: redis, binary: Binaries.exampleWorker)
        let results = try Python.celeryClient(
            RedisInteropTests.request(
                redis,
                calls: [["task": "example.squares", "args": [[1, 2, 3, 4]]]],
                timeout: 20
            )
        )
        #expect(results.first?["result"] == [1, 4, 9, 16], "\(results)\n\(daemon.log.suffix(4000))")
        #expect(try daemon.stats()["tasks"]?["by_name"]?["celery.accumulate"]?["succeeded"] == 1)
    }
}
