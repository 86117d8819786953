import Foundation
import SwiftqCore
import Testing

/// Task effects (`TaskInvocation.addToChord`, `apply`) done by Swift tasks of the example worker on real pool
/// children, driven by a stock Python Celery 5.7 client on a real redis-server: the chord waits for the members a
/// header task adds, a canvas a task sends runs under the ids the task returned, and a result a task stores under
/// another id reaches the client waiting on it.
@Suite(.serialized) struct TaskEffectsSystemTests {
    @Test func aHeaderTaskAddsMembersToItsChordAndTheBodyGetsTheirResults() throws {
        let redis = try RedisServer()
        let daemon = try RedisInteropTests.daemon(broker: redis, binary: Binaries.exampleWorker)
        let out = try CanvasRedisTests.canvas(redis, "add_to_chord", ["count": 3], timeout: 20)
        let values = out["value"]?.arrayValue?.compactMap(\.intValue).sorted()
        #expect(values == [0, 1, 4, 9], "the task's 0 and the squares it added: \(out)\n\(daemon.log.suffix(4000))")
        #expect(try CanvasRedisTests.succeeded(daemon, "example.multiply") == 3)
        #expect(try CanvasRedisTests.succeeded(daemon, "swiftq.echo") == 1, "the body ran once")
    }

    @Test func aCanvasSentFromATaskRunsUnderTheIDsTheTaskReturned() throws {
        let redis = try RedisServer()
        let daemon = try RedisInteropTests.daemon(broker: redis, binary: Binaries.exampleWorker)
        let out = try CanvasRedisTests.canvas(redis, "canvas_from_task", timeout: 20)
        #expect(out["value"] == [84, 126], "\(out)\n\(daemon.log.suffix(4000))")
        // The chain's result (the chord body), its header group, then its first step, as the task returned them.
        let ids = out["ids"]?.arrayValue?.compactMap(\.stringValue) ?? []
        try #require(ids.count == 3, "\(out)")
        let metas = out["metas"]?.arrayValue ?? []
        let taskID = try #require(out["task_id"]?.stringValue)
        #expect(metas[2]["result"] == 42)
        #expect(metas[2]["parent_id"]?.stringValue == taskID, "sent by the task")
        #expect(metas[0]["result"] == [84, 126])
        #expect(try CanvasRedisTests.succeeded(daemon, "example.multiply") == 3)
    }

    @Test func aResultStoredByATaskUnderAnotherIDReachesAClientWaitingOnThatID() throws {
        let redis = try RedisServer()
        let daemon = try RedisInteropTests.daemon(broker: redis, binary: Binaries.exampleWorker)
        let results = try Python.celeryClient(
            RedisInteropTests.request(
                redis,
                calls: [["task": "example.publish_result", "args": ["precomputed-1", ["rows": [1, 2]]]]],
                timeout: 20
            )
        )
        #expect(results.first?["result"] == "precomputed-1", "\(results)\n\(daemon.log.suffix(4000))")
        let out = try CanvasRedisTests.canvas(redis, "wait", ["id": "precomputed-1"], timeout: 10)
        #expect(out["value"] == ["rows": [1, 2]])
        #expect(
            eventually(timeout: 5) { (try? daemon.stats())?["tasks"]?["results_stored"] == 2 },
            "its own result and the one it stored"
        )
    }
}
