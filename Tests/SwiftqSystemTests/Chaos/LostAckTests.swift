import Foundation
import SwiftqCore
import Testing

/// Found by the chaos suite on RabbitMQ: a task that finished just before its connection was cut ran a second time,
/// because its ack was still in a socket buffer (AMQP never confirms an ack) and the broker redelivered it. Here the
/// proxy holds the ack back deterministically: it stalls the connection while the task finishes, then cuts it.
@Suite(.serialized) struct LostAckTests {
    @Test func aTaskWhoseAckIsLostWithItsConnectionIsNotRunAgain() throws {
        let node = try RabbitMQNode.shared()
        let backend = try RedisServer()
        let hostPort = node.url.split(separator: "@", maxSplits: 1)[1].split(separator: "/", maxSplits: 1)[0]
        let port = try #require(hostPort.split(separator: ":").last.flatMap { Int($0) })
        let proxy = try ChaosProxy(upstreamPort: port)
        let queue = uniqueQueueName("lost-ack")
        let work = try TemporaryDirectory()
        let ledger = work.path + "/ledger"
        let ids = work.path + "/ids"
        let daemon = try Daemon(
            extraYAML: """
                broker:
                  url: amqp://guest:guest@127.0.0.1:\(proxy.port)//
                result_backend:
                  url: \(backend.url(db: 1))

                """,
            workerYAML: "  acks_late: true\n  queues: \(queue)\n",
            binary: Binaries.directory + "/swiftq-chaos-worker"
        )
        #expect(eventually(timeout: 30) { (try? node.consumerCount(queue)) == 1 }, "log:\n\(daemon.log)")
        let sent = try runCommand(
            Python.interpreter,
            [Python.scripts + "/chaos_client.py", "send", node.url, "1", ids, ledger, "1", queue],
            timeout: 60
        )
        #expect(sent.status == 0, "\(sent.stderr)")
        let id = try String(contentsOfFile: ids, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(eventually(timeout: 30) { TaskSemanticsTests.lines(ledger).count == 1 })
        // The task sleeps a second: stall now, so that its ack goes no further than the proxy.
        proxy.beginStall()
        let finished = eventually(timeout: 30) {
            daemon.log.contains("task succeeded swiftq.task.id=\(id)")
        }
        #expect(finished, "log:\n\(daemon.log)")
        Thread.sleep(forTimeInterval: 0.5)
        proxy.cut()
        proxy.endStall()
        // The broker redelivers the message; swiftqd acks it without running it again.
        #expect(
            eventually(timeout: 30) { node.isEmpty(queue) && daemon.log.contains("already ran here") },
            "log:\n\(daemon.log)"
        )
        Thread.sleep(forTimeInterval: 1)
        #expect(TaskSemanticsTests.lines(ledger).count == 1, "ledger: \(TaskSemanticsTests.lines(ledger))")
        let meta = try backend.cli(["-n", "1", "GET", "celery-task-meta-\(id)"])
        #expect(meta.contains("SUCCESS"))
        withExtendedLifetime(daemon) {}
    }
}
