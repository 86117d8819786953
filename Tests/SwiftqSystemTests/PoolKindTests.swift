import Foundation
import SwiftqCore
import Testing

/// `worker.pool: prefork | threads | solo` end to end on a real redis-server with a stock Python Celery client, and
/// the per-task counters of `stats` (`throughput`) moving with the work done.
@Suite(.serialized) struct PoolKindTests {
    static func consumerRow(_ stats: JSONValue) -> JSONValue? {
        stats["children"]?.arrayValue?.first { $0["role"] == "consumer" }
    }

    @Test(arguments: ["prefork", "threads", "solo"])
    func eachPoolRunsTasksEndToEnd(_ pool: String) throws {
        let redis = try RedisServer()
        let daemon = try RedisInteropTests.daemon(broker: redis, workerYAMLExtra: "  pool: \(pool)\n")
        let before = try daemon.stats()
        let consumer = try #require(Self.consumerRow(before)?["pid"]?.intValue)
        var calls: [JSONValue] = []
        for index in 0..<20 { calls.append(["task": "swiftq.add", "args": [.int(Int64(index)), 1]]) }
        calls.append(["task": "swiftq.echo", "kwargs": ["value": "héllo"]])
        // A Swift error thrown by the task: its failure, never the consumer's end.
        calls.append(["task": "swiftq.fail", "args": ["it broke on purpose"]])
        calls.append(["task": "swiftq.add", "args": [40, 2]])
        let results = try Python.celeryClient(RedisInteropTests.request(redis, calls: calls))
        #expect(results.count == 23)
        for index in 0..<20 { #expect(results[index]["result"] == .int(Int64(index + 1)), "\(results[index])") }
        #expect(results[20]["result"] == "héllo")
        #expect(results[21]["state"] == "FAILURE", "\(results[21])")
        #expect(results[21]["exception"]?["type"] == "RuntimeError", "\(results[21])")
        #expect(results[22]["result"] == 42, "after the failure: \(results[22])")

        let after = try daemon.stats()
        // Same consumer: nothing crashed.
        #expect(Self.consumerRow(after)?["pid"]?.intValue == consumer)
        #expect(Self.consumerRow(after)?["restarts"] == 0)
        let throughput = try #require(after["throughput"])
        #expect(throughput["tasks"]?.intValue == 23, "\(throughput)")
        let frames = throughput["pool_frames"]?.intValue ?? -1
        if pool == "prefork" {
            // A job and a result per task, at least.
            #expect(frames >= 46, "\(throughput)")
        } else {
            #expect(frames == 0, "\(pool) sends no frames: \(throughput)")
        }
        #expect((throughput["loop_wakeups"]?.intValue ?? 0) > (before["throughput"]?["loop_wakeups"]?.intValue ?? 0))
        #expect((throughput["broker_round_trips"]?.intValue ?? 0) > 0)
        #expect((throughput["per_task"]?["broker_round_trips"]?.doubleValue ?? 0) > 0)
        for batch in ["reserve", "ack", "store"] {
            let histogram = try #require(throughput["batches"]?[batch])
            #expect((histogram["items"]?.intValue ?? 0) >= 23, "\(batch): \(histogram)")
            let sizes = histogram["sizes"]?.objectValue ?? [:]
            #expect(sizes.values.compactMap(\.intValue).reduce(0, +) == histogram["batches"]?.intValue)
        }
        // The pool's slots are the rows of `stats`, with the consumer's pid when tasks run inside it.
        let rows = after["children"]?.arrayValue?.filter { $0["role"] == "pool" } ?? []
        #expect(rows.count == (pool == "solo" ? 1 : 2), "\(rows)")
        if pool != "prefork" { #expect(rows.allSatisfy { $0["pid"]?.intValue == consumer }, "\(rows)") }
        #expect(after["status"]?.stringValue?.contains("pool \(rows.count)/\(rows.count)") == true, "\(after)")
    }

    /// One task at a time (a light load) costs three broker round trips: the reserve; one empty reserve, woken by
    /// the reserve's own pop (Redis tells the queue watcher of every write, its own too), but not a second one right
    /// after a reserve that emptied every queue; and, with the result backend on the broker's server (here its
    /// database 1, as the interop daemons have it), the result stored and the message acked in one script. (5 per
    /// task with the second empty reserve, 4 with a round trip for the store and one for the ack.)
    @Test func oneTaskAtATimeCostsThreeBrokerRoundTrips() throws {
        let (perTask, total) = try Self.roundTripsOfSequentialAdds(count: 100)
        #expect(perTask < 3.5, "\(total) broker round trips for 100 tasks")
    }

    /// Broker round trips per task (and in all) of `count` `swiftq.add` tasks sent one at a time by Celery's client
    /// to a daemon with the result backend in database 1 of its broker's server, once each message is acked. A few
    /// are made while idle: a reserve a second, the worker heartbeat event, the incarnation's beat.
    static func roundTripsOfSequentialAdds(count: Int) throws -> (perTask: Double, total: Int) {
        let redis = try RedisServer()
        let daemon = try RedisInteropTests.daemon(broker: redis)
        let before = try #require(try daemon.stats()["throughput"]?["broker_round_trips"]?.intValue)
        var request = RedisInteropTests.request(
            redis,
            calls: (0..<count).map { ["task": "swiftq.add", "args": [.int(Int64($0)), 1]] }
        )
        if case .object(var object) = request {
            object["sequential"] = true
            request = .object(object)
        }
        let results = try Python.celeryClient(request)
        #expect(results.count == count)
        #expect(results.allSatisfy { $0["state"] == "SUCCESS" }, "\(results.filter { $0["state"] != "SUCCESS" })")
        func unacked() throws -> String {
            try redis.cli(["HLEN", "unacked"]).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let deadline = Date().addingTimeInterval(5)
        while try unacked() != "0", Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        #expect(try unacked() == "0")
        let after = try #require(try daemon.stats()["throughput"]?["broker_round_trips"]?.intValue)
        return (Double(after - before) / Double(count), Int(after - before))
    }

    @Test func theThreadsPoolEndsSleepsAtSoftAndHardLimitsAndKeepsServing() throws {
        let redis = try RedisServer()
        let daemon = try RedisInteropTests.daemon(broker: redis, workerYAMLExtra: "  pool: threads\n")
        let consumer = try #require(Self.consumerRow(try daemon.stats())?["pid"]?.intValue)
        let started = Date()
        let results = try Python.celeryClient(
            RedisInteropTests.request(
                redis,
                calls: [
                    ["task": "swiftq.sleep", "args": [10], "options": ["soft_time_limit": 1]],
                    // A hard limit from the message: the thread cannot be killed, the task fails at the limit.
                    ["task": "swiftq.sleep", "args": [10], "options": ["time_limit": 1]],
                    ["task": "swiftq.add", "args": [2, 3]],
                ],
                timeout: 20
            )
        )
        let elapsed = Date().timeIntervalSince(started)
        #expect(results[0]["exception"]?["type"] == "SoftTimeLimitExceeded", "\(results)")
        #expect(results[1]["exception"]?["type"] == "TimeLimitExceeded", "\(results)")
        #expect(results[2]["result"] == 5, "\(results)")
        #expect(elapsed < 6, "took \(elapsed)s: the limits did not end the sleeps")
        let stats = try daemon.stats()
        #expect(Self.consumerRow(stats)?["pid"]?.intValue == consumer)
        #expect(stats["tasks"]?["time_limited"] == 1, "\(stats["tasks"] ?? .null)")
    }

    @Test func aConfiguredHardTimeLimitIsRefusedWithTheThreadsPool() throws {
        let directory = try TemporaryDirectory()
        let config = try directory.write(
            "config.yaml",
            "worker:\n  pool: threads\ntasks:\n  defaults:\n    time_limit: 30s\n"
        )
        let check = try runCommand(Binaries.swiftqd, ["--check-config", "--config", config])
        #expect(check.status != 0)
        #expect(check.stderr.contains("worker.pool"), "\(check.stderr)")
        #expect(check.stderr.contains("tasks.defaults.time_limit"), "\(check.stderr)")
        let soft = try directory.write(
            "soft.yaml",
            "worker:\n  pool: threads\ntasks:\n  defaults:\n    soft_time_limit: 30s\n"
        )
        let accepted = try runCommand(Binaries.swiftqd, ["--check-config", "--config", soft])
        #expect(accepted.status == 0, "\(accepted.stderr)")
    }
}
