import Foundation
import SwiftqCore
import Testing

/// Celery canvas on RabbitMQ: follow-ups are published with confirms before the ack; chords are counted in the
/// Redis result backend (the ResultWriter does the chord step), chains also work over `rpc://`.
@Suite(.serialized) struct CanvasRabbitMQTests {
    static func canvas(
        broker: String,
        backend: String,
        queue: String,
        _ scenario: String,
        _ extra: [String: JSONValue] = [:]
    ) throws -> JSONValue {
        var request: [String: JSONValue] = [
            "broker": .string(broker), "backend": .string(backend), "timeout": 30, "scenario": .string(scenario),
            "queue": .string(queue),
        ]
        for (key, value) in extra { request[key] = value }
        let result = try runCommand(
            Python.interpreter,
            [Python.scripts + "/canvas_client.py"],
            input: Data(JSONValue.object(.init(uniqueKeysWithValues: request.sorted { $0.key < $1.key })).serialized()),
            timeout: 90
        )
        guard result.status == 0 else {
            throw TestSetupError("canvas_client.py failed (\(result.status)): \(result.stderr)\n\(result.stdout)")
        }
        return try JSONValue(parsing: result.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    @Test func chainsAndChordsRunOnRabbitMQWithTheRedisBackend() throws {
        let node = try RabbitMQNode.shared()
        let redis = try RedisServer()
        let queue = uniqueQueueName()
        let daemon = try RabbitMQInteropTests.daemon(broker: node.url, backend: redis.url(db: 1), queue: queue)
        let chain = try Self.canvas(broker: node.url, backend: redis.url(db: 1), queue: queue, "chain")
        #expect(chain["value"] == 10, "\(chain)\n\(daemon.log.suffix(3000))")
        let chord = try Self.canvas(broker: node.url, backend: redis.url(db: 1), queue: queue, "chord", ["count": 20])
        #expect(chord["value"] == .array((0..<20).map { .int(Int64(2 * $0)) }), "\(chord)\n\(daemon.log.suffix(3000))")
        let started = try Self.canvas(broker: node.url, backend: redis.url(db: 1), queue: queue, "chain_group_body")
        #expect(started["value"] == [3, 4, 5, 6], "\(started)\n\(daemon.log.suffix(3000))")
        let failed = try Self.canvas(
            broker: node.url,
            backend: redis.url(db: 1),
            queue: queue,
            "chord",
            ["count": 4, "fail_index": 1]
        )
        #expect(failed["body_meta"]?["result"]?["exc_type"] == "ChordError", "\(failed)")
        let stats = try daemon.stats()
        #expect(stats["tasks"]?["by_name"]?["swiftq.echo"]?["succeeded"]?.intValue == 2)
        // The chord's keys are cleaned up once the body is confirmed.
        #expect(
            eventually {
                let keys = (try? redis.cli(["-n", "1", "KEYS", "celery-taskset-meta-*.j"])) ?? "?"
                return keys.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "\n").count <= 1
            }
        )
        #expect(eventually { node.isEmpty(queue) })
    }

    /// On RabbitMQ the ResultWriter does the chord work: a chain in a chord header whose early step fails, a header
    /// with a group in it, and `celery.chord_unlock` (a client whose backend has no native chords), as on Redis.
    @Test func chordUnlockNestedHeadersAndFailingChainsInHeadersOnRabbitMQ() throws {
        let node = try RabbitMQNode.shared()
        let redis = try RedisServer()
        let queue = uniqueQueueName()
        let daemon = try RabbitMQInteropTests.daemon(broker: node.url, backend: redis.url(db: 1), queue: queue)
        let backend = redis.url(db: 1)
        let failing = try Self.canvas(
            broker: node.url,
            backend: backend,
            queue: queue,
            "chord_chain_header",
            ["shape": "chain_fail"]
        )
        CanvasRedisTests.expectChordError(failing, raised: "ValueError('early')")
        let nested = try Self.canvas(
            broker: node.url,
            backend: backend,
            queue: queue,
            "chord_chain_header",
            ["shape": "nested"]
        )
        #expect(nested["value"] == [[3, 4], 6], "\(nested)\n\(daemon.log.suffix(3000))")
        let unlocked = try Self.canvas(
            broker: node.url,
            backend: backend,
            queue: queue,
            "chord_unlock",
            ["count": 3, "slow": 1, "interval": 0.3]
        )
        #expect(unlocked["value"] == [0, 2, 4, nil], "\(unlocked)\n\(daemon.log.suffix(3000))")
        let unlockedNested = try Self.canvas(
            broker: node.url,
            backend: backend,
            queue: queue,
            "chord_unlock",
            ["shape": "nested", "interval": 0.3]
        )
        #expect(unlockedNested["value"] == [[3, 4], 6], "\(unlockedNested)\n\(daemon.log.suffix(3000))")
        let stats = try daemon.stats()
        #expect(stats["tasks"]?["by_name"]?["swiftq.echo"]?["succeeded"]?.intValue == 3)
        #expect((stats["tasks"]?["canvas"]?["chord_unlock_polls"]?.intValue ?? 0) >= 3)
        #expect(eventually { node.isEmpty(queue) })
    }

    @Test func aChainAndItsErrbackRunOverRPC() throws {
        let node = try RabbitMQNode.shared()
        let queue = uniqueQueueName()
        let daemon = try RabbitMQInteropTests.daemon(broker: node.url, backend: "rpc://", queue: queue)
        let chain = try Self.canvas(broker: node.url, backend: "rpc://", queue: queue, "chain_rpc")
        #expect(chain["value"] == 10, "\(chain)\n\(daemon.log.suffix(3000))")
        let failed = try Self.canvas(broker: node.url, backend: "rpc://", queue: queue, "chain_fail_rpc")
        #expect(failed["exception"]?["type"] == "ValueError", "\(failed)")
        #expect(eventually { (try? daemon.stats()["tasks"]?["by_name"]?["swiftq.echo"]?["succeeded"]?.intValue) == 1 })
    }

    /// As on Redis: the consumer is killed (SIGKILL) after a chain's first task succeeded and before its next step is
    /// published; the broker redelivers the unacked message to the restarted consumer, which runs the task again and
    /// publishes the step.
    @Test func aConsumerKilledBeforeTheNextStepIsPublishedDoesNotLoseTheChain() throws {
        let node = try RabbitMQNode.shared()
        let redis = try RedisServer()
        let queue = uniqueQueueName()
        let daemon = try Daemon(
            concurrency: 1,
            extraYAML: """
                broker:
                  url: \(node.url)
                result_backend:
                  url: \(redis.url(db: 1))

                """,
            workerYAML: "  queues: [\(queue)]\n",
            environment: ["SWIFTQ_TEST_PAUSE_BEFORE_PUBLISH": "3"]
        )
        let firstConsumer = try #require(try daemon.consumerPID())
        let sent = try Self.canvas(broker: node.url, backend: redis.url(db: 1), queue: queue, "send_chain")
        let firstID = try #require(sent["first_id"]?.stringValue)
        let lastID = try #require(sent["last_id"]?.stringValue)
        #expect(eventually(timeout: 20) { daemon.log.contains("pausing before publishing") }, "\(daemon.log)")
        #expect(try redis.cli(["-n", "1", "EXISTS", "celery-task-meta-\(firstID)"]).contains("0"))
        kill(firstConsumer, SIGKILL)
        #expect(
            eventually(timeout: 30) {
                (try? daemon.consumerPID()).flatMap { $0 }.map { $0 != firstConsumer } ?? false
            }
        )
        let waited = try Self.canvas(
            broker: node.url,
            backend: redis.url(db: 1),
            queue: queue,
            "wait",
            ["id": .string(lastID)]
        )
        #expect(waited["value"] == .null, "\(waited)\n\(daemon.log.suffix(4000))")
        #expect(daemon.log.contains("canvas: sending swiftq.echo"))
        #expect(eventually { node.isEmpty(queue) })
    }
}
