import Foundation
import SwiftqCore
import Testing

/// Celery canvas sent by a stock Python client (chain, group, chord, link, link_error) and run by swiftqd on a real
/// redis-server, the Redis result backend counting chords in Celery 5.7's layout.
@Suite(.serialized) struct CanvasRedisTests {
    static func canvas(_ redis: RedisServer, _ scenario: String, _ extra: [String: JSONValue] = [:], timeout: Int = 30)
        throws -> JSONValue
    {
        var request: OrderedDictionaryLike = [
            "broker": .string(redis.url), "backend": .string(redis.url(db: 1)), "timeout": .int(Int64(timeout)),
            "scenario": .string(scenario),
        ]
        for (key, value) in extra { request[key] = value }
        let result = try runCommand(
            Python.interpreter,
            [Python.scripts + "/canvas_client.py"],
            input: Data(JSONValue.object(.init(uniqueKeysWithValues: request.sorted { $0.key < $1.key })).serialized()),
            timeout: Double(timeout) * 3
        )
        guard result.status == 0 else {
            throw TestSetupError("canvas_client.py failed (\(result.status)): \(result.stderr)\n\(result.stdout)")
        }
        return try JSONValue(parsing: result.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    typealias OrderedDictionaryLike = [String: JSONValue]

    static func succeeded(_ daemon: Daemon, _ name: String) throws -> Int64 {
        try daemon.stats()["tasks"]?["by_name"]?[name]?["succeeded"]?.intValue ?? 0
    }

    @Test func aChainRunsEveryStepOnSwiftqd() throws {
        let redis = try RedisServer()
        let daemon = try RedisInteropTests.daemon(broker: redis)
        let out = try Self.canvas(redis, "chain")
        #expect(out["value"] == 10, "\(out)")
        let ids = out["ids"]?.arrayValue?.compactMap(\.stringValue) ?? []
        #expect(ids.count == 3)
        let metas = out["metas"]?.arrayValue ?? []
        #expect(metas.map { $0["result"] } == [3, 6, 10])
        // Each step's parent is the step before it.
        #expect(metas.count == 3 && metas[1]["parent_id"]?.stringValue == ids[0])
        #expect(metas.count == 3 && metas[2]["parent_id"]?.stringValue == ids[1])
        // The first step's result lists the step it sent.
        #expect(metas.first?["children"] == [[[.string(ids.count > 1 ? ids[1] : ""), nil], nil]])
        #expect(try Self.succeeded(daemon, "swiftq.add") == 3)
    }

    @Test func aFailingChainStepRaisesRunsItsErrbackAndStops() throws {
        let redis = try RedisServer()
        let daemon = try RedisInteropTests.daemon(broker: redis)
        let out = try Self.canvas(redis, "chain_fail")
        #expect(out["exception"]?["type"] == "ValueError", "\(out)")
        #expect(out["exception"]?["message"] == "middle broke")
        #expect(out["last_state"] == "FAILURE")
        // link_error on the chain: the failed step's errback ran (old-style: it got the failed task's id).
        let errbacks = out["errback_results"]?.arrayValue ?? []
        #expect(errbacks.count == 1, "\(out)")
        #expect(errbacks.first?["result"] == out["middle_id"])
        // The last step never ran: one add, one fail, one errback (echo).
        #expect(try Self.succeeded(daemon, "swiftq.add") == 1)
        #expect(try daemon.stats()["tasks"]?["by_name"]?["swiftq.fail"]?["failed"]?.intValue == 1)
        #expect(try Self.succeeded(daemon, "swiftq.echo") == 1)
    }

    @Test func aGroupOfFiftyIsJoinedInOrder() throws {
        let redis = try RedisServer()
        let daemon = try RedisInteropTests.daemon(broker: redis, concurrency: 2)
        let out: JSONValue
        do { out = try Self.canvas(redis, "group", ["count": 50]) } catch {
            Issue.record("\(error)\ndaemon log:\n\(daemon.log.suffix(6000))")
            return
        }
        let expected = JSONValue.array((0..<50).map { .int(Int64(2 * $0)) })
        #expect(out["value"] == expected, "\(out)")
        #expect(out["joined"] == expected)
        #expect(out["group_ids"] == [out["group_id"] ?? nil])
    }

    @Test func aChordReturnsTheHeaderResultsInOrderAndRunsItsBodyOnce() throws {
        let redis = try RedisServer()
        let daemon = try RedisInteropTests.daemon(broker: redis, concurrency: 2)
        let out = try Self.canvas(redis, "chord", ["count": 20])
        #expect(out["value"] == .array((0..<20).map { .int(Int64(2 * $0)) }), "\(out)")
        #expect(try Self.succeeded(daemon, "swiftq.echo") == 1)
        // The chord's keys are cleaned up and `.c` says done, as Celery 5.7 leaves them.
        let keys = try redis.cli(["-n", "1", "KEYS", "celery-taskset-meta-*"])
        #expect(keys.contains(".c"))
        #expect(!keys.contains(".j") && !keys.contains(".s") && !keys.contains(".d"), "\(keys)")
    }

    @Test func aChordHeaderSplitBetweenAPythonWorkerAndSwiftqdCompletes() throws {
        let redis = try RedisServer()
        let python = try Python.sharedTasksWorker(
            broker: redis.url,
            backend: redis.url(db: 1),
            ledger: redis.url,
            queue: "py"
        )
        defer { python.stop() }
        let daemon = try RedisInteropTests.daemon(broker: redis)
        #expect(eventually(timeout: 30) { (try? redis.cli(["GET", "ready:python"]))?.contains("1") == true })
        let out = try Self.canvas(redis, "chord", ["count": 20, "python_queue": "py"], timeout: 60)
        #expect(out["value"] == .array((0..<20).map { .int(Int64(2 * $0)) }), "\(out)")
        let ranByPython = try redis.cli(["LLEN", "executed:python"]).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(ranByPython == "10")
        #expect(try Self.succeeded(daemon, "swiftq.add") == 10)
        #expect(try Self.succeeded(daemon, "swiftq.echo") == 1)
    }

    @Test func aFailingHeaderTaskFailsTheChordWithChordError() throws {
        let redis = try RedisServer()
        let daemon = try RedisInteropTests.daemon(broker: redis)
        let out = try Self.canvas(redis, "chord", ["count": 6, "fail_index": 2, "body_link_error": true])
        // Python's client re-raises the failed header task first (its parent), as with a Python worker; the body's
        // own result is the ChordError.
        #expect(out["exception"]?["type"] == "ValueError", "\(out)")
        #expect(out["body_state"] == "FAILURE")
        let stored = out["body_meta"]?["result"]
        #expect(stored?["exc_type"] == "ChordError", "\(out)")
        #expect(stored?["exc_module"] == "celery.exceptions")
        #expect(
            stored?["exc_message"]?[0]?.stringValue?.hasSuffix("raised ValueError('header broke')") == true,
            "\(out)"
        )
        // The body never ran; its link_error errback did, with the body's id (Celery's chord_error_from_stack).
        let errbacks = out["errback_results"]?.arrayValue ?? []
        #expect(errbacks.count == 1, "\(out)")
        #expect(errbacks.first?["result"] == out["body_id"])
        #expect(try Self.succeeded(daemon, "swiftq.echo") == 1)
    }

    @Test func callbackOptionsQueueAndCountdownAreHonoured() throws {
        let redis = try RedisServer()
        // result_backend.extended: the stored meta names the queue each task was delivered from.
        let daemon = try RedisInteropTests.daemon(broker: redis, queues: "celery,side", extraYAML: "  extended: true\n")
        let out = try Self.canvas(redis, "link_options", ["queue": "side", "countdown": 3])
        #expect(out["value"] == 42, "\(out)")
        #expect(out["callback_value"] == 42)
        #expect((out["callback_delay"]?.doubleValue ?? 0) >= 3)
        #expect(try daemon.stats()["tasks"]?["canvas"]?["published"]?.intValue == 1)
        // Routed to the queue named in its options.
        #expect(out["callback_meta"]?["queue"] == "side", "\(out)")
        #expect(out["callback_meta"]?["args"] == [42])
    }
}

extension CanvasRedisTests {
    /// `chain(add.s(1, 2), group(add.s(i) for i in range(4)), echo.s())`: the worker that runs the first step starts
    /// the chord (its size in the backend, then the header tasks), and the body gets the header's results.
    @Test func aGroupInTheMiddleOfAChainBecomesAChordStartedBySwiftqd() throws {
        let redis = try RedisServer()
        let daemon = try RedisInteropTests.daemon(broker: redis)
        let out = try Self.canvas(redis, "chain_group_body")
        #expect(out["value"] == [3, 4, 5, 6], "\(out)\n\(daemon.log.suffix(3000))")
        #expect(try daemon.stats()["tasks"]?["canvas"]?["chords_started"]?.intValue == 1)
        #expect(try Self.succeeded(daemon, "swiftq.echo") == 1)
    }

    /// A stamped chain (`Signature.stamp`): the step swiftqd sends carries the stamps unchanged, so its stored meta
    /// (result_extended) lists them as a Python worker's would.
    @Test func stampsAreCarriedToTheNextStep() throws {
        let redis = try RedisServer()
        let daemon = try RedisInteropTests.daemon(broker: redis, extraYAML: "  extended: true\n")
        let out = try Self.canvas(redis, "chain_stamped")
        #expect(out["value"] == 6, "\(out)\n\(daemon.log.suffix(2000))")
        #expect(out["last_meta"]?["stamped_headers"] == ["mystamp"], "\(out)")
        #expect(out["last_meta"]?["mystamp"] == "v1")
    }

    /// The consumer is killed (SIGKILL) after a chain's first task succeeded and before its next step is published
    /// (the writer pauses there: `SWIFTQ_TEST_PAUSE_BEFORE_PUBLISH`). The task's message was never acked, so the
    /// restarted consumer takes it back, runs it again and publishes the next step: the chain completes.
    @Test func aConsumerKilledBeforeTheNextStepIsPublishedDoesNotLoseTheChain() throws {
        let redis = try RedisServer()
        let daemon = try Daemon(
            concurrency: 1,
            extraYAML: """
                broker:
                  url: \(redis.url)
                result_backend:
                  url: \(redis.url(db: 1))

                """,
            workerYAML: "  queues: celery\n",
            environment: ["SWIFTQ_TEST_PAUSE_BEFORE_PUBLISH": "3"]
        )
        let firstConsumer = try #require(try daemon.consumerPID())
        let sent = try Self.canvas(redis, "send_chain", ["sleep": 0.2])
        let firstID = try #require(sent["first_id"]?.stringValue)
        let lastID = try #require(sent["last_id"]?.stringValue)
        #expect(eventually(timeout: 20) { daemon.log.contains("pausing before publishing") }, "\(daemon.log)")
        // The first task has succeeded; nothing of it is settled yet.
        #expect(try redis.cli(["-n", "1", "EXISTS", "celery-task-meta-\(firstID)"]).contains("0"))
        kill(firstConsumer, SIGKILL)
        #expect(
            eventually(timeout: 30) { (try? daemon.consumerPID()).flatMap { $0 }.map { $0 != firstConsumer } ?? false }
        )
        let waited = try Self.canvas(redis, "wait", ["id": .string(lastID)], timeout: 40)
        // swiftq.sleep returns null, which the chain passes on to swiftq.echo.
        #expect(waited["value"] == .null, "\(waited)\n\(daemon.log.suffix(4000))")
        #expect(daemon.log.contains("canvas: sending swiftq.echo"))
        // The first task ran twice (once per consumer); its next step exists once it has settled.
        #expect(try redis.cli(["-n", "1", "GET", "celery-task-meta-\(firstID)"]).contains("SUCCESS"))
    }
}
