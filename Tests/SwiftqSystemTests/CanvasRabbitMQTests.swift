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
        let failed = try Self.canvas(
            broker: node.url,
            backend: redis.url(db: 1),
            queue: queue,
            "chord",
            ["count": 4, "fail_index": 1]
        )
        #expect(failed["body_meta"]?["result"]?["exc_type"] == "ChordError", "\(failed)")
        let stats = try daemon.stats()
        #expect(stats["tasks"]?["by_name"]?["swiftq.echo"]?["succeeded"]?.intValue == 1)
        // The chord's keys are cleaned up once the body is confirmed.
        #expect(
            eventually {
                let keys = (try? redis.cli(["-n", "1", "KEYS", "celery-taskset-meta-*.j"])) ?? "?"
                return keys.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "\n").count <= 1
            }
        )
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
}
