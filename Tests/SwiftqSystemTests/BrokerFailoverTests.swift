import Foundation
import SwiftqCore
import Testing

/// Broker failover on the brokers' own high availability: Redis Sentinel and a RabbitMQ cluster with quorum queues.
/// Real servers on loopback, a stock Celery producer using kombu's failover URLs, and swiftqd with acks_late; the
/// server swiftqd is connected to is stopped mid-run, and every task's result must be stored in the end.
@Suite(.serialized) struct BrokerFailoverTests {
    static let taskCount = 2000

    /// Sends `taskCount` `swiftq.add(i, 1)` through `failover_client.py`; returns the ids in order.
    static func send(_ request: JSONValue) throws -> [String] {
        let result = try runCommand(
            Python.interpreter,
            [Python.scripts + "/failover_client.py"],
            input: Data(request.serialized()),
            timeout: 180
        )
        guard result.status == 0 else { throw TestSetupError("failover_client.py failed: \(result.stderr)") }
        return result.stdout.split(separator: "\n").map(String.init)
    }

    /// The ids of `wanted` whose stored result is not `SUCCESS` with the task's `i + 1` (`i` its index in `ids`);
    /// all of them when the server cannot be read.
    static func missingResults(_ wanted: [String], of ids: [String], on server: RedisServer, db: Int) -> [String] {
        let index = Dictionary(uniqueKeysWithValues: ids.enumerated().map { ($1, $0) })
        var missing: [String] = []
        for start in stride(from: 0, to: wanted.count, by: 500) {
            let batch = Array(wanted[start..<min(wanted.count, start + 500)])
            guard
                let output = try? server.cli(["-n", "\(db)", "MGET"] + batch.map { "celery-task-meta-\($0)" }),
                case let lines = output.split(separator: "\n", omittingEmptySubsequences: false).map(String.init),
                lines.count >= batch.count
            else { return missing + Array(wanted[start...]) }
            for (offset, id) in batch.enumerated() {
                let meta = try? JSONValue(parsing: lines[offset])
                let expected = JSONValue.int(Int64((index[id] ?? -2) + 1))
                if meta?["status"] != "SUCCESS" || meta?["result"] != expected { missing.append(id) }
            }
        }
        return missing
    }

    // MARK: - Redis Sentinel

    @Test(.timeLimit(.minutes(5))) func aSentinelFailoverMidRunLosesNoTask() throws {
        let group = try SentinelGroup()
        let options: JSONValue = ["master_name": .string(SentinelGroup.masterName)]
        let ids = try Self.send([
            "broker": .string(group.url(db: 0)), "backend": .string(group.url(db: 1)),
            "broker_transport_options": options, "result_backend_transport_options": options,
            "count": .int(Int64(Self.taskCount)), "task": "swiftq.add",
        ])
        #expect(ids.count == Self.taskCount)
        // What the producer published is on the replica too: a Redis failover loses what was not replicated, and
        // that loss is the producer's (see docs/ARCHITECTURE.md), not what this test is about.
        #expect(group.waitForReplication(), "the replica did not catch up")
        // Started once every task is queued, so that the master is killed with three quarters still to run.
        let daemon = try Daemon(
            concurrency: 2,
            extraYAML: """
                broker:
                  url: \(group.url(db: 0))
                  master_name: \(SentinelGroup.masterName)
                result_backend:
                  url: \(group.url(db: 1))
                  master_name: \(SentinelGroup.masterName)
                tasks:
                  swiftq.add:
                    rate_limit: 100/s

                """,
            workerYAML: "  prefetch_multiplier: 4\n  acks_late: true\n"
        )
        #expect(
            eventually(timeout: 30) { daemon.log.contains("connected to redis://127.0.0.1:\(group.master.port)/0") },
            "swiftqd did not reach the master through the sentinels:\n\(daemon.log)"
        )
        #expect(
            eventually(timeout: 60) {
                Int(
                    (try? group.master.cli(["-n", "1", "DBSIZE"]))?.trimmingCharacters(in: .whitespacesAndNewlines)
                        ?? ""
                ) ?? 0 >= Self.taskCount / 4
            },
            "swiftqd did not get through a quarter of the tasks"
        )
        let storedBeforeKill =
            Int(try group.master.cli(["-n", "1", "DBSIZE"]).trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        #expect(storedBeforeKill < Self.taskCount, "every task finished before the master was killed")
        group.master.process?.stop(signal: SIGKILL, timeout: 10)
        #expect(
            eventually(timeout: 60) { group.masterPort() == group.replica.port },
            "the sentinels did not promote the replica:\n\(group.logs)"
        )
        var missing = ids
        #expect(
            eventually(timeout: 150) {
                missing = Self.missingResults(missing, of: ids, on: group.replica, db: 1)
                return missing.isEmpty
            },
            "\(missing.count) task(s) lost after the failover (first: \(missing.prefix(5))); log:\n\(daemon.log.suffix(4000))"
        )
        // swiftqd followed the promotion, and nothing is left reserved or queued on the new master.
        #expect(daemon.log.contains("connected to redis://127.0.0.1:\(group.replica.port)/0"))
        #expect(
            eventually(timeout: 30) {
                (try? group.replica.cli(["HLEN", "unacked"]))?.trimmingCharacters(in: .whitespacesAndNewlines) == "0"
                    && (try? group.replica.cli(["LLEN", "celery"]))?.trimmingCharacters(in: .whitespacesAndNewlines)
                        == "0"
            },
            "messages were left unacked or queued on the new master"
        )
        let stats = try daemon.stats()
        let succeeded = stats["tasks"]?["by_name"]?["swiftq.add"]?["succeeded"]?.intValue ?? 0
        // At least once: tasks whose ack the old master had not replicated run again; never fewer than sent.
        #expect(Int(succeeded) >= Self.taskCount)
        print(
            "sentinel failover: \(Self.taskCount) tasks, \(storedBeforeKill) results stored before the kill, "
                + "\(succeeded) runs (\(Int(succeeded) - Self.taskCount) redelivered after the failover), 0 lost"
        )
    }

    @Test func unreachableSentinelsAreReportedByName() throws {
        let ports = try (0..<2).map { _ in try freeLoopbackPort() }
        let url = ports.map { "sentinel://127.0.0.1:\($0)" }.joined(separator: ";")
        let daemon = try Daemon(extraYAML: "broker:\n  url: \(url)\n  master_name: nowhere\n")
        #expect(
            eventually(timeout: 30) {
                let log = daemon.log
                return log.contains("no sentinel named a master for 'nowhere'")
                    && ports.allSatisfy { log.contains("127.0.0.1:\($0):") }
            },
            "\(daemon.log)"
        )
        // Still running, and retrying: the sentinels may come back.
        #expect(daemon.exitStatus() == nil)
    }

    @Test func unreachableRabbitMQHostsAreEachTriedAndReported() throws {
        let ports = try (0..<2).map { _ in try freeLoopbackPort() }
        let url = ports.map { "amqp://guest:guest@127.0.0.1:\($0)//" }.joined(separator: ";")
        let daemon = try Daemon(extraYAML: "broker:\n  url: \"\(url)\"\n  connect_timeout: 1s\n")
        #expect(
            eventually(timeout: 30) {
                let log = daemon.log
                return ports.allSatisfy { log.contains("cannot connect to amqp://guest:****@127.0.0.1:\($0)//") }
            },
            "\(daemon.log)"
        )
        #expect(daemon.exitStatus() == nil)
    }

    @Test func badFailoverURLsAreConfigurationErrors() throws {
        let directory = try TemporaryDirectory()
        for (yaml, message) in [
            (
                "broker:\n  url: sentinel://127.0.0.1:26379\n",
                "broker.url lists Redis Sentinels but broker.master_name is not set"
            ),
            ("broker:\n  url: sentinel://\n  master_name: m\n", "sentinel 1 names no host"),
            ("broker:\n  url: redis://h/0\n  master_name: m\n", "but broker.url is not a sentinel:// URL"),
            ("broker:\n  url: amqp://h1//;;amqp://h2//\n", "host 2 of the failover list is empty"),
        ] {
            let path = try directory.write("config.yaml", yaml)
            let result = try runCommand(Binaries.swiftqd, ["--config", path, "--check-config"], timeout: 30)
            #expect(result.status == 78, "\(yaml): \(result.stdout)\(result.stderr)")
            #expect(result.stderr.contains(message), "\(yaml): \(result.stderr)")
        }
    }
}

extension BrokerFailoverTests {
    // MARK: - RabbitMQ cluster

    @Test(.timeLimit(.minutes(20))) func stoppingTheConnectedRabbitMQNodeMovesToAnotherAndLosesNoTask() throws {
        let cluster = try RabbitCluster()
        let results = try RedisServer()
        let ids = try Self.send([
            "broker": .string(cluster.url), "backend": .string(results.url(db: 1)), "queue_type": "quorum",
            "count": .int(Int64(Self.taskCount)), "task": "swiftq.add",
        ])
        #expect(ids.count == Self.taskCount)
        // Started once every task is queued (publishing with confirms is slow here), so that the node is stopped
        // with three quarters still to run.
        let daemon = try Daemon(
            concurrency: 2,
            extraYAML: """
                broker:
                  url: \(cluster.url)
                  queue_type: quorum
                result_backend:
                  url: \(results.url(db: 1))
                tasks:
                  swiftq.add:
                    rate_limit: 100/s

                """,
            workerYAML: "  prefetch_multiplier: 4\n  acks_late: true\n"
        )
        let first = cluster.nodes[0]
        #expect(
            eventually(timeout: 60) {
                daemon.log.contains("connected to amqp://guest:****@\(RabbitCluster.endpoint(first))")
            },
            "swiftqd did not connect to the first node:\n\(daemon.log)"
        )
        let types = try cluster.nodes[1].ctl(["list_queues", "--no-table-headers", "name", "type"])
        #expect(
            types.split(separator: "\n").contains { $0.hasPrefix("celery") && $0.hasSuffix("quorum") },
            "the queue is not a quorum queue: \(types)"
        )
        #expect(
            eventually(timeout: 60) {
                Int((try? results.cli(["-n", "1", "DBSIZE"]))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "")
                    ?? 0 >= Self.taskCount / 4
            },
            "swiftqd did not get through a quarter of the tasks"
        )
        let storedBeforeStop =
            Int(try results.cli(["-n", "1", "DBSIZE"]).trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        #expect(storedBeforeStop < Self.taskCount, "every task finished before the node was stopped")
        try cluster.stop(first)
        var missing = ids
        #expect(
            eventually(timeout: 240) {
                missing = Self.missingResults(missing, of: ids, on: results, db: 1)
                return missing.isEmpty
            },
            "\(missing.count) task(s) lost after the node stopped (first: \(missing.prefix(5))); log:\n\(daemon.log.suffix(4000))"
        )
        let others = cluster.nodes.dropFirst().map { "connected to amqp://guest:****@\(RabbitCluster.endpoint($0))" }
        #expect(others.contains { daemon.log.contains($0) }, "swiftqd did not move to another node")
        #expect(eventually(timeout: 30) { cluster.nodes[1].isEmpty("celery") }, "messages were left in the queue")
        let succeeded = try daemon.stats()["tasks"]?["by_name"]?["swiftq.add"]?["succeeded"]?.intValue ?? 0
        #expect(Int(succeeded) >= Self.taskCount)
        print(
            "rabbitmq failover: \(Self.taskCount) tasks on a 3-node quorum queue, \(storedBeforeStop) results stored "
                + "before the stop, \(succeeded) runs (\(Int(succeeded) - Self.taskCount) redelivered), 0 lost"
        )
    }
}
