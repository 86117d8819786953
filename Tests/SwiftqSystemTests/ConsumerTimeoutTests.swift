import Foundation
import SwiftqCore
import Testing

/// RabbitMQ's `consumer_timeout` against tasks held for a countdown, on a private node whose timeout is 3 s (checked
/// every second): first that the node really closes the channel of a held task when swiftqd is told the node has no
/// timeout, then that with `broker.consumer_timeout: 3s` tasks held three times as long run once, at their ETA, on a
/// channel that survives.
@Suite(.serialized) struct ConsumerTimeoutTests {
    static func daemon(
        _ node: RabbitMQNode,
        backend: RedisServer,
        queue: String,
        consumerTimeout: String,
        runs: TemporaryDirectory
    ) throws -> Daemon {
        try RabbitMQInteropTests.daemon(
            broker: node.url,
            backend: backend.url(db: 1),
            queue: queue,
            brokerYAML: """
                  consumer_timeout: \(consumerTimeout)
                tasks:
                  exec.count:
                    exec: [\(Python.interpreter), \(TaskSemanticsTests.execScript), slowcount, \(runs.path), "0"]

                """
        )
    }

    static func date(_ text: JSONValue?) -> Date? {
        guard let text = text?.stringValue else { return nil }
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.date(from: text) ?? ISO8601DateFormatter().date(from: text)
    }

    @Test(.timeLimit(.minutes(5)))
    func tasksHeldPastTheNodesConsumerTimeoutRunOnceAtTheirETAAndTheChannelSurvives() throws {
        let node = try RabbitMQNode.privateNode(consumerTimeoutMilliseconds: 3000)
        let redis = try RedisServer()

        // The control: told the node has no timeout, swiftqd holds the task and the node closes the channel.
        do {
            let runs = try TemporaryDirectory()
            let queue = uniqueQueueName("timeout-control")
            let daemon = try Self.daemon(node, backend: redis, queue: queue, consumerTimeout: "0s", runs: runs)
            _ = try Python.celeryClient(
                RabbitMQInteropTests.request(
                    broker: node.url,
                    backend: redis.url(db: 1),
                    queue: queue,
                    calls: [["task": "exec.count", "args": [], "options": ["countdown": 60]]],
                    wait: false
                )
            )
            #expect(
                eventually(timeout: 30) { daemon.log.contains("timed out") },
                "the node did not enforce its consumer timeout:\n\(daemon.log.suffix(3000))"
            )
            daemon.signal(SIGTERM)
            _ = daemon.waitForExit()
        }

        let runs = try TemporaryDirectory()
        let queue = uniqueQueueName("timeout")
        let daemon = try Self.daemon(node, backend: redis, queue: queue, consumerTimeout: "3s", runs: runs)
        let calls: [JSONValue] = (0..<3).map { _ in ["task": "exec.count", "args": [], "options": ["countdown": 9]] }
        var request = RabbitMQInteropTests.request(
            broker: node.url,
            backend: redis.url(db: 1),
            queue: queue,
            calls: calls,
            timeout: 30
        )
        if case .object(var fields) = request {
            fields["date_done"] = true
            request = .object(fields)
        }
        let results = try Python.celeryClient(request, timeout: 90)
        #expect(results.count == 3)
        for result in results {
            #expect(result["state"] == "SUCCESS", "\(result)")
            #expect(result["result"] == ["runs": 1], "\(result)")
            if let done = Self.date(result["date_done"]), let sent = Self.date(result["sent_at"]) {
                let delay = done.timeIntervalSince(sent)
                #expect(delay >= 9 && delay < 11.5, "ran \(delay) s after it was sent, countdown 9 s")
            } else {
                Issue.record("no dates: \(result)")
            }
        }
        // Held three times as long as the timeout: published again several times, never lost the channel.
        let stats = try daemon.stats()
        #expect((stats["tasks"]?["eta_republished"]?.intValue ?? 0) >= 3 * 5, "\(String(describing: stats["tasks"]))")
        #expect(!daemon.log.contains("timed out"), "\(daemon.log.suffix(3000))")
        #expect(!daemon.log.contains("broker unreachable"), "\(daemon.log.suffix(3000))")
        // Once each, and nothing left behind to run again.
        Thread.sleep(forTimeInterval: 4)
        for result in results {
            let id = result["id"]?.stringValue ?? "?"
            #expect(TaskSemanticsTests.lines(runs.path + "/" + id).count == 1, "runs of \(id)")
        }
        #expect(eventually(timeout: 10) { node.isEmpty(queue) })
    }

    /// A configured hard time limit that could outlast the node's consumer timeout: swiftqd's task consumers carry
    /// `x-consumer-timeout` ((prefetch_multiplier + 1) × the longest limit + 60 s), as `rabbitmqctl` shows. The node
    /// of this machine's Debian (3.10) ignores the argument; RabbitMQ 3.11.15 and later honour it.
    @Test func aLongHardTimeLimitAsksForALongerConsumerTimeout() throws {
        let node = try RabbitMQNode.shared()
        let queue = uniqueQueueName("consumer-timeout-argument")
        let daemon = try RabbitMQInteropTests.daemon(
            broker: node.url,
            backend: nil,
            queue: queue,
            prefetch: 4,
            brokerYAML: """
                  consumer_timeout: 30m
                tasks:
                  defaults:
                    time_limit: 1h

                """
        )
        var consumers = ""
        #expect(
            eventually(timeout: 30) {
                consumers = (try? node.ctl(["list_consumers", "queue_name", "arguments"])) ?? ""
                return consumers.split(separator: "\n").contains { $0.hasPrefix(queue + "\t") }
            },
            "no consumer on \(queue): \(consumers)"
        )
        let line = consumers.split(separator: "\n").first { $0.hasPrefix(queue + "\t") }.map(String.init) ?? ""
        #expect(line.contains("x-consumer-timeout") && line.contains("18060000"), "\(line)")
        _ = daemon
    }
}
