import Foundation
import SwiftqCore
import Testing

/// `/metrics` beyond the task path: the sampled depth of the consumed queues (Redis priority lists, RabbitMQ
/// passive declare) and beat's runs, last run and lease; `promtool check metrics` stays clean.
@Suite(.serialized) struct MetricsDepthAndBeatTests {
    /// The value of one sample line (`name{labels} value`), or nil when the line is absent.
    static func sample(_ text: String, _ series: String) -> Double? {
        for line in text.split(separator: "\n") where line.hasPrefix(series + " ") {
            return Double(line.dropFirst(series.count + 1))
        }
        return nil
    }

    static func promtoolIsClean(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let promtool = try runCommand(try which("promtool"), ["check", "metrics"], input: Data(text.utf8))
        #expect(
            promtool.status == 0 && promtool.stdout.isEmpty && promtool.stderr.isEmpty,
            "promtool: \(promtool.stdout) \(promtool.stderr)\n\(text)",
            sourceLocation: sourceLocation
        )
    }

    @Test(.timeLimit(.minutes(2)))
    func redisQueueDepthCountsEveryPriorityListAndBeatShowsRunsAndLease() throws {
        let redis = try RedisServer()
        let scratch = try TemporaryDirectory()
        let port = try freeLoopbackPort()
        let daemon = try RedisInteropTests.daemon(
            broker: redis,
            concurrency: 1,
            prefetch: 1,
            extraYAML: """
                metrics:
                  listen: 127.0.0.1:\(port)
                  queue_depth_interval: 500ms
                beat:
                  enabled: true
                  state: \(scratch.path)/beat.json
                  schedule:
                    tick:
                      task: swiftq.add
                      every: 1s
                      args: [1, 2]
                      queue: beat-only

                """
        )
        // One long task takes the whole window (1); the rest wait in the broker, in two priority lists.
        _ = try Python.celeryClient(
            [
                "broker": .string(redis.url), "backend": .string(redis.url(db: 1)), "wait": false,
                "calls": [["task": "swiftq.sleep", "args": [8]]],
            ]
        )
        #expect(eventually(timeout: 10) { BeatSystemTests.length(redis, "celery") == 0 })
        var calls: [JSONValue] = (0..<3).map { _ in ["task": "swiftq.add", "args": [1, 1], "options": ["priority": 9]] }
        calls += (0..<2).map { _ in ["task": "swiftq.add", "args": [2, 2]] }
        _ = try Python.celeryClient(
            ["broker": .string(redis.url), "backend": .string(redis.url(db: 1)), "wait": false, "calls": .array(calls)]
        )
        // kombu's lists: `celery` (priority 0) and `celery\x06\x169`.
        let high = Int(try redis.cli(["LLEN", "celery\u{06}\u{16}9"]).trimmingCharacters(in: .whitespacesAndNewlines))
        #expect(high == 3, "the priority-9 list holds \(String(describing: high))")
        var text = ""
        #expect(
            eventually(timeout: 10) {
                text = (try? httpGet(port: port, "/metrics"))?.body ?? ""
                return Self.sample(text, #"swiftq_queue_depth_messages{queue="celery"}"#) == 5
            },
            "\(text)"
        )
        // Beat: runs by entry, the last run, this node holds the lease and is named as its holder.
        #expect(
            eventually(timeout: 15) {
                text = (try? httpGet(port: port, "/metrics"))?.body ?? ""
                return (Self.sample(text, #"swiftq_beat_runs_total{entry="tick"}"#) ?? 0) >= 2
            },
            "\(text)"
        )
        let lastRun = try #require(Self.sample(text, #"swiftq_beat_last_run_timestamp_seconds{entry="tick"}"#))
        #expect(abs(lastRun - Date().timeIntervalSince1970) < 5, "last run \(lastRun)")
        #expect(Self.sample(text, "swiftq_beat_lease_held_bool") == 1)
        let holder = text.split(separator: "\n").first { $0.hasPrefix("swiftq_beat_lock_holder_info{") }
        #expect(holder?.contains(#"holder="beat@"#) == true && holder?.hasSuffix(" 1") == true, "\(text)")
        let stats = try daemon.stats()
        #expect(
            holder?.contains(stats["beat"]?["lock_holder"]?.stringValue ?? "?") == true,
            "\(String(describing: holder)) vs \(String(describing: stats["beat"]))"
        )
        try Self.promtoolIsClean(text)

        // The queue drains: the sampled depth follows.
        #expect(
            eventually(timeout: 20) {
                text = (try? httpGet(port: port, "/metrics"))?.body ?? ""
                return Self.sample(text, #"swiftq_queue_depth_messages{queue="celery"}"#) == 0
            },
            "\(text)"
        )
    }

    @Test(.timeLimit(.minutes(2)))
    func rabbitMQQueueDepthIsThePassiveDeclaresCount() throws {
        let node = try RabbitMQNode.shared()
        let queue = uniqueQueueName("depth")
        let port = try freeLoopbackPort()
        let daemon = try Daemon(
            concurrency: 1,
            extraYAML: """
                broker:
                  url: \(node.url)
                result_backend:
                  url: rpc://
                metrics:
                  listen: 127.0.0.1:\(port)
                  queue_depth_interval: 500ms

                """,
            workerYAML: "  prefetch_multiplier: 1\n  queues: [\(queue)]\n  acks_late: true\n"
        )
        _ = daemon
        let request = RabbitMQInteropTests.request(
            broker: node.url,
            backend: "rpc://",
            queue: queue,
            calls: [["task": "swiftq.sleep", "args": [8]]]
                + (0..<4).map { _ in ["task": "swiftq.add", "args": [1, 1]] },
            wait: false
        )
        _ = try Python.celeryClient(request)
        // acks_late with a window of 1: one delivered and unacked, four ready.
        #expect(eventually(timeout: 10) { (try? node.queueCounts(queue))??.ready == 4 })
        var text = ""
        #expect(
            eventually(timeout: 10) {
                text = (try? httpGet(port: port, "/metrics"))?.body ?? ""
                return Self.sample(text, "swiftq_queue_depth_messages{queue=\"\(queue)\"}") == 4
            },
            "\(text)"
        )
        try Self.promtoolIsClean(text)
        #expect(
            eventually(timeout: 20) {
                text = (try? httpGet(port: port, "/metrics"))?.body ?? ""
                return Self.sample(text, "swiftq_queue_depth_messages{queue=\"\(queue)\"}") == 0
            },
            "\(text)"
        )
    }
}
