import Foundation
import SwiftqCore
import Testing

/// The transport contract end to end against real brokers: pidbox control deliveries from stock Celery, the
/// prefetch window following reloads, incarnations of one node name on Redis, read-only Redis, and the supervisor
/// replacing a consumer that stopped heartbeating.
@Suite(.serialized) struct TransportContractTests {
    /// Sends `broadcast('ping')` and `inspect().ping()` to `node` with stock Celery.
    static func ping(broker: String, node: String) throws {
        let result = try runCommand(
            Python.interpreter,
            [Python.scripts + "/control_ping.py", broker, node],
            timeout: 60
        )
        guard result.status == 0 else { throw TestSetupError("control_ping.py failed: \(result.stderr)") }
    }

    static func pings(_ daemon: Daemon) -> Int64 {
        (try? daemon.stats())?["broker"]?["control_methods"]?["ping"]?.intValue ?? 0
    }

    @Test func celeryPingsReachTheConsumerAsControlDeliveriesOnRedis() throws {
        let redis = try RedisServer()
        let node = "ping-\(UInt32.random(in: 0...UInt32.max))@test"
        let daemon = try RedisInteropTests.daemon(broker: redis, workerYAMLExtra: "  hostname: \(node)\n")
        #expect(eventually(timeout: 20) { (try? daemon.stats())?["broker"]?["connected"] == true })
        // The control reader subscribes on its own connection; give it a moment after the fetcher connected.
        #expect(
            eventually(timeout: 20) {
                (try? Self.ping(broker: redis.url, node: node)) != nil && Self.pings(daemon) >= 2
            },
            "pings seen: \(Self.pings(daemon)); log:\n\(daemon.log.suffix(3000))"
        )
        #expect(daemon.log.contains("control message ping"))
    }

    @Test func celeryPingsReachTheConsumerAsControlDeliveriesOnRabbitMQ() throws {
        let rabbit = try RabbitMQNode.shared()
        let queue = uniqueQueueName()
        let node = "ping-\(queue)@test"
        let daemon = try RabbitMQInteropTests.daemon(
            broker: rabbit.url,
            backend: nil,
            queue: queue,
            workerYAML: "  hostname: \(node)\n"
        )
        #expect(eventually(timeout: 20) { (try? daemon.stats())?["broker"]?["connected"] == true })
        let queues = try rabbit.ctl(["list_queues", "--no-table-headers", "name", "exclusive", "auto_delete"])
        #expect(queues.contains("\(node).celery.pidbox"), "pidbox queue missing: \(queues)")
        try Self.ping(broker: rabbit.url, node: node)
        #expect(
            eventually(timeout: 10) { Self.pings(daemon) >= 2 },
            "pings seen: \(Self.pings(daemon)); log:\n\(daemon.log.suffix(3000))"
        )
        // Control messages are never tasks.
        #expect((try? daemon.stats())?["tasks"]?["received"]?.intValue == 0)
    }

    /// Sends `calls` to `queue` on RabbitMQ with Celery's client (results in `redis`, database 1); waits for their
    /// results only when asked.
    static func send(
        _ calls: [JSONValue],
        to queue: String,
        on rabbit: RabbitMQNode,
        results redis: RedisServer,
        wait: Bool = false
    ) throws {
        _ = try Python.celeryClient(
            RabbitMQInteropTests.request(
                broker: rabbit.url,
                backend: redis.url(db: 1),
                queue: queue,
                calls: calls,
                wait: wait
            )
        )
    }

    /// A fresh queue on the shared node with 16 tasks of 1.5 s waiting in it (results in a Redis of their own).
    static func sixteenSleepingTasks() throws -> (RabbitMQNode, RedisServer, String, Int) {
        let rabbit = try RabbitMQNode.shared()
        let redis = try RedisServer()
        let queue = uniqueQueueName()
        let calls: [JSONValue] = (0..<16).map { _ in ["task": "swiftq.sleep", "args": [1.5]] }
        try send(calls, to: queue, on: rabbit, results: redis)
        return (rabbit, redis, queue, calls.count)
    }

    @Test func aReloadFromOneToFourChildrenRaisesTheRabbitMQWindowAndFeedsTheNewChildren() throws {
        let (rabbit, redis, queue, count) = try Self.sixteenSleepingTasks()
        let extraYAML = """
            broker:
              url: \(rabbit.url)
            result_backend:
              url: \(redis.url(db: 1))

            """
        let workerYAML = "  prefetch_multiplier: 1\n  queues: [\(queue)]\n"
        let daemon = try Daemon(concurrency: 1, extraYAML: extraYAML, workerYAML: workerYAML)
        #expect(eventually(timeout: 20) { ((try? rabbit.queueCounts(queue))?.unacked ?? 0) == 1 })
        #expect(((try? rabbit.unackedOnChannels(consuming: queue)) ?? 0) <= 1)
        try Daemon.configuration(socket: daemon.socketPath, concurrency: 4, controlYAML: "", workerYAML: workerYAML)
            .appending(extraYAML)
            .write(toFile: daemon.configPath, atomically: true, encoding: .utf8)
        daemon.signal(SIGHUP)
        var samples: [Int] = []
        #expect(
            eventually(timeout: 30) {
                let unacked = (try? rabbit.unackedOnChannels(consuming: queue)) ?? 0
                samples.append(unacked)
                return unacked == 4
            },
            "unacked after the reload: \(samples)"
        )
        // Classic queues: one channel-wide window (as Celery sets it), changed in place.
        let channels = try rabbit.ctl(["list_channels", "--no-table-headers", "global_prefetch_count"])
        #expect(
            channels.split(separator: "\n").contains { $0.trimmingCharacters(in: .whitespaces) == "4" },
            "channels' global prefetch: \(channels)"
        )
        #expect(
            eventually(timeout: 20) { ((try? daemon.stats())?["tasks"]?["busy"]?.intValue ?? 0) == 4 },
            "the new children were not fed"
        )
        #expect(samples.allSatisfy { $0 <= 4 }, "more than 4 unacked with 4 × 1: \(samples)")
        #expect(
            eventually(timeout: 60) {
                (try? daemon.stats())?["tasks"]?["by_name"]?["swiftq.sleep"]?["succeeded"]?.intValue == Int64(count)
            }
        )
    }

    /// `broker.global_qos: false` (what RabbitMQ ≥ 4.3 needs, and where swiftqd goes by itself once a broker refuses
    /// a channel-wide limit): the window is a per-consumer `basic.qos`, and a reload from 1 to 4 children restarts
    /// the consumer with the new limit, so the new children are fed.
    @Test func aPerConsumerWindowFollowsAReloadToo() throws {
        let (rabbit, redis, queue, count) = try Self.sixteenSleepingTasks()
        let extraYAML = """
            broker:
              url: \(rabbit.url)
              global_qos: false
            result_backend:
              url: \(redis.url(db: 1))

            """
        let workerYAML = "  prefetch_multiplier: 1\n  queues: [\(queue)]\n"
        let daemon = try Daemon(concurrency: 1, extraYAML: extraYAML, workerYAML: workerYAML)
        #expect(eventually(timeout: 20) { ((try? rabbit.queueCounts(queue))?.unacked ?? 0) == 1 })
        let consumers = {
            (try? rabbit.ctl(["list_consumers", "--no-table-headers", "queue_name", "prefetch_count"])) ?? ""
        }
        #expect(
            consumers().split(separator: "\n").contains { $0.contains(queue) && $0.hasSuffix("1") },
            "consumers: \(consumers())"
        )
        try Daemon.configuration(socket: daemon.socketPath, concurrency: 4, controlYAML: "", workerYAML: workerYAML)
            .appending(extraYAML)
            .write(toFile: daemon.configPath, atomically: true, encoding: .utf8)
        daemon.signal(SIGHUP)
        #expect(
            eventually(timeout: 20) { ((try? daemon.stats())?["tasks"]?["busy"]?.intValue ?? 0) == 4 },
            "the new children were not fed"
        )
        #expect(
            consumers().split(separator: "\n").contains { $0.contains(queue) && $0.hasSuffix("4") },
            "consumers: \(consumers())"
        )
        // No channel-wide limit was set on the channels consuming this queue (the node is shared: other tests'
        // daemons may use a channel-wide window of 4 meanwhile).
        let consumerLines: [Substring] = try rabbit.ctl([
            "list_consumers", "--no-table-headers", "queue_name", "channel_pid",
        ]).split(separator: "\n")
        var ownChannels: Set<String> = []
        for line in consumerLines {
            let fields: [Substring] = line.split(whereSeparator: \.isWhitespace)
            if fields.count == 2 && fields[0] == queue { ownChannels.insert(String(fields[1])) }
        }
        #expect(!ownChannels.isEmpty, "no consumer of \(queue)")
        let channels: String = try rabbit.ctl(["list_channels", "--no-table-headers", "pid", "global_prefetch_count"])
        var ownGlobal: [String: String] = [:]
        for line in channels.split(separator: "\n") {
            let fields: [Substring] = line.split(whereSeparator: \.isWhitespace)
            if fields.count == 2 && ownChannels.contains(String(fields[0])) {
                ownGlobal[String(fields[0])] = String(fields[1])
            }
        }
        #expect(ownGlobal.count == ownChannels.count, "channels: \(channels)")
        #expect(ownGlobal.values.allSatisfy { $0 == "0" }, "a channel-wide limit on this daemon's channel: \(channels)")
        #expect(
            eventually(timeout: 60) {
                (try? daemon.stats())?["tasks"]?["by_name"]?["swiftq.sleep"]?["succeeded"]?.intValue == Int64(count)
            }
        )
    }

    /// The larger window for short tasks on RabbitMQ: while a streak of them comes in, `basic.qos` is Celery's
    /// window (2 × 4) plus what the children's queues hold of them (2 × 2 for tasks of 6 ms: a child takes a task to
    /// wait while what it holds is expected to take less than `child_prefetch_max_runtime`, 10 ms), channel-wide or
    /// per consumer, and no more for tasks of 6 ms (20 ms of work per slot is about 6 of them: the first step only);
    /// tasks of microseconds take it past 8 × Celery's window (64), up to 32 × (256; 136 when the machine is so
    /// loaded that they take more than ~160 µs); a task not known to be short brings it back to 8.
    ///
    /// Channel-wide, the unacked deliveries (as the consuming channel counts them, which is what the limit bounds:
    /// ``RabbitMQNode/unackedOnChannels(consuming:)``) never exceed the limit. Per consumer, a change is a new
    /// consumer: the cancelled one's deliveries are still unacked while the new one fills its own window, so for
    /// that moment they can add up to the old limit plus the new one (RabbitMQ counts a per-consumer limit per
    /// consumer).
    @Test(arguments: [true, false]) func aStreakOfShortTasksRaisesTheRabbitMQWindow(channelWide: Bool) throws {
        let rabbit = try RabbitMQNode.shared()
        let redis = try RedisServer()
        let queue = uniqueQueueName()
        let extraYAML = """
            broker:
              url: \(rabbit.url)
              global_qos: \(channelWide ? "auto" : "false")
            result_backend:
              url: \(redis.url(db: 1))

            """
        let daemon = try Daemon(concurrency: 2, extraYAML: extraYAML, workerYAML: "  queues: [\(queue)]\n")
        /// The limits RabbitMQ keeps for this daemon's consumers of `queue`.
        func windows() -> Set<String> {
            guard
                let consumers = try? rabbit.ctl([
                    "list_consumers", "--no-table-headers", "queue_name", "channel_pid", "prefetch_count",
                ])
            else { return [] }
            var ownChannels: Set<String> = []
            var perConsumer: Set<String> = []
            for line in consumers.split(separator: "\n") {
                let fields = line.split(whereSeparator: \.isWhitespace).map(String.init)
                guard fields.count == 3, fields[0] == queue else { continue }
                ownChannels.insert(fields[1])
                perConsumer.insert(fields[2])
            }
            guard channelWide else { return perConsumer }
            let channels = (try? rabbit.ctl(["list_channels", "--no-table-headers", "pid", "global_prefetch_count"]))
            var limits: Set<String> = []
            for line in (channels ?? "").split(separator: "\n") {
                let fields = line.split(whereSeparator: \.isWhitespace).map(String.init)
                if fields.count == 2 && ownChannels.contains(fields[0]) { limits.insert(fields[1]) }
            }
            return limits
        }
        #expect(eventually(timeout: 20) { windows() == ["8"] }, "before: \(windows())")
        // Short tasks (6 ms, below `child_prefetch_max_runtime`'s 10 ms once the first has run), many of them: enough
        // for ~12 s of work, so that a loaded machine's slow `rabbitmqctl` samples still catch the window full.
        let count = 4000
        try Self.send(
            (0..<count).map { _ in
                ["task": "swiftq.sleep", "args": [0.006], "options": ["ignore_result": true]]
            },
            to: queue,
            on: rabbit,
            results: redis
        )
        var seen: [Set<String>] = []
        var unacked: [Int] = []
        #expect(
            eventually(timeout: 60) {
                seen.append(windows())
                unacked.append((try? rabbit.unackedOnChannels(consuming: queue)) ?? 0)
                return seen.last == ["12"] && unacked.last.map { $0 > 8 } == true
            },
            "windows \(seen), unacked \(unacked)"
        )
        // 8 before, 12 after: per consumer, up to both at the change.
        let firstBound = channelWide ? 12 : 8 + 12
        #expect(unacked.allSatisfy { $0 <= firstBound }, "unacked \(unacked)")
        #expect(
            eventually(timeout: 60) {
                seen.append(windows())
                unacked.append((try? rabbit.unackedOnChannels(consuming: queue)) ?? 0)
                return (try? daemon.stats())?["tasks"]?["by_name"]?["swiftq.sleep"]?["succeeded"]?.intValue
                    == Int64(count)
            }
        )
        #expect(seen.allSatisfy { $0.isEmpty || $0 == ["8"] || $0 == ["12"] }, "windows \(seen)")
        #expect(unacked.allSatisfy { $0 <= firstBound }, "unacked \(unacked)")

        // Tasks of microseconds (a sleep of 0 s), many more: the window grows past 64, to 136 or 256, never beyond.
        let tiny = 20000
        try Self.send(
            (0..<tiny).map { _ in ["task": "swiftq.sleep", "args": [0], "options": ["ignore_result": true]] },
            to: queue,
            on: rabbit,
            results: redis
        )
        seen = []
        unacked = []
        #expect(
            eventually(timeout: 60) {
                seen.append(windows())
                unacked.append((try? rabbit.unackedOnChannels(consuming: queue)) ?? 0)
                return seen.last.map { $0.count == 1 && ($0.first.flatMap { Int($0) } ?? 0) >= 136 } == true
            },
            "windows \(seen), unacked \(unacked)"
        )
        #expect(
            eventually(timeout: 60) {
                unacked.append((try? rabbit.unackedOnChannels(consuming: queue)) ?? 0)
                return (try? daemon.stats())?["tasks"]?["by_name"]?["swiftq.sleep"]?["succeeded"]?.intValue
                    == Int64(count + tiny)
            }
        )
        #expect(seen.allSatisfy { $0.allSatisfy { (Int($0) ?? 0) <= 256 } }, "windows \(seen)")
        // Per consumer, the steps on the way (40, 72, 136, 256) are each a new consumer, at most once a second.
        #expect(unacked.allSatisfy { $0 <= (channelWide ? 256 : 136 + 256) }, "unacked \(unacked)")
        // A task whose runtime is not known ends the streak.
        try Self.send([["task": "swiftq.add", "args": [1, 2]]], to: queue, on: rabbit, results: redis, wait: true)
        #expect(eventually(timeout: 20) { windows() == ["8"] }, "after: \(windows())")
    }

    /// Tasks of microseconds take the Redis window to 32 × Celery's; the tasks that follow them are not short, so
    /// the window shrinks back to 8 and what the worker reserved of them beyond it goes back to the queue's head:
    /// while most of them still wait in the queue (for any worker), this one holds no more than its window. None is
    /// lost, and none runs twice.
    @Test func theTasksAfterAStreakWaitInTheQueueNotInTheWorker() throws {
        let redis = try RedisServer()
        let (tiny, slow) = (4000, 300)
        try CeleryControl.python(
            """
            from control_tasks import app
            with app.producer_or_acquire() as producer:
                for i in range(\(tiny)):
                    app.send_task('swiftq.add', args=[i, 1], ignore_result=True, producer=producer)
                for i in range(\(slow)):
                    app.send_task('swiftq.sleep', args=[0.05], task_id=f'slow-{i}', producer=producer)
            """,
            broker: redis.url,
            backend: redis.url(db: 1)
        )
        let daemon = try RedisInteropTests.daemon(broker: redis, concurrency: 2, prefetch: 4)
        func count(_ command: [String]) -> Int {
            Int(RedisWorkloadTests.trimmed((try? redis.cli(command)) ?? "")) ?? -1
        }
        func succeeded(_ name: String) -> Int64? {
            (try? daemon.stats())?["tasks"]?["by_name"]?[name]?["succeeded"]?.intValue
        }
        // Once the streak is over: how many the worker holds, how many wait in the queue, how many slow ones ran.
        var samples: [(unacked: Int, queued: Int, ran: Int64)] = []
        #expect(
            eventually(timeout: 60) {
                guard succeeded("swiftq.add") == Int64(tiny) else { return false }
                samples.append(
                    (count(["HLEN", "unacked"]), count(["LLEN", "celery"]), succeeded("swiftq.sleep") ?? 0)
                )
                return samples.last.map { $0.unacked <= 8 && $0.queued >= 100 } == true
            },
            "after the streak: \(samples.suffix(20)); \(daemon.log.suffix(1500))"
        )
        // Given back at once, not worked off: a worker that kept what it had reserved (a batch or two of 64) would
        // hold more than 8 until it had run most of them.
        #expect((samples.last?.ran ?? .max) <= 20, "\(samples.suffix(20))")
        #expect(daemon.log.contains("gave back"), "\(daemon.log.suffix(1500))")
        #expect(eventually(timeout: 60) { succeeded("swiftq.sleep") == Int64(slow) })
        #expect(
            (0..<slow).allSatisfy { RevokeTests.status(redis, "slow-\($0)") == "SUCCESS" },
            "a slow task has no SUCCESS"
        )
        #expect(succeeded("swiftq.sleep") == Int64(slow))
        #expect(count(["HLEN", "unacked"]) == 0)
    }

    @Test func twoDaemonsWithOneNodeNameNeverTakeEachOthersReservations() throws {
        let redis = try RedisServer()
        let node = "twin@test"
        let count = 24
        var request = RedisInteropTests.request(
            redis,
            calls: (0..<count).map { _ in ["task": "swiftq.sleep", "args": [0.5]] },
            timeout: 120
        )
        if case .object(var object) = request {
            object["wait"] = false
            request = .object(object)
        }
        let first = try RedisInteropTests.daemon(
            broker: redis,
            concurrency: 1,
            prefetch: 4,
            workerYAMLExtra: "  hostname: \(node)\n"
        )
        let sent = try Python.celeryClient(request)
        #expect(eventually { ((try? first.stats())?["tasks"]?["received"]?.intValue ?? 0) >= 4 })
        // The twin starts while the first holds reservations: before incarnations it gave them all back.
        let second = try RedisInteropTests.daemon(
            broker: redis,
            concurrency: 1,
            prefetch: 4,
            workerYAMLExtra: "  hostname: \(node)\n"
        )
        #expect(eventually(timeout: 20) { second.log.contains("another worker with node name \(node)") })
        #expect(
            eventually(timeout: 90) {
                let done = { (daemon: Daemon) in
                    (try? daemon.stats())?["tasks"]?["by_name"]?["swiftq.sleep"]?["succeeded"]?.intValue ?? 0
                }
                return done(first) + done(second) >= Int64(count)
            }
        )
        let executed = { (daemon: Daemon) in
            (try? daemon.stats())?["tasks"]?["by_name"]?["swiftq.sleep"]?["succeeded"]?.intValue ?? 0
        }
        #expect(executed(first) + executed(second) == Int64(count), "a task ran twice")
        #expect(!second.log.contains("back to the broker"), "the twin gave back the first daemon's reservations")
        #expect(!first.log.contains("redelivered task received"))
        for entry in sent {
            let id = try #require(entry["id"]?.stringValue)
            #expect(try redis.cli(["-n", "1", "GET", "celery-task-meta-\(id)"]).contains("SUCCESS"))
        }
        #expect(try redis.cli(["HLEN", "unacked"]).trimmingCharacters(in: .whitespacesAndNewlines) == "0")
    }

    @Test func aReadOnlyRedisIsALostConnectionUntilItIsWritableAgain() throws {
        let redis = try RedisServer()
        let daemon = try RedisInteropTests.daemon(broker: redis)
        #expect(eventually(timeout: 20) { (try? daemon.stats())?["broker"]?["connected"] == true })
        // A replica of a primary that is not there: it refuses writes with READONLY, as after a failover.
        let nowhere = try freeLoopbackPort()
        _ = try redis.cli(["REPLICAOF", "127.0.0.1", "\(nowhere)"])
        #expect(
            eventually(timeout: 20) { (try? daemon.stats())?["broker"]?["connected"] == false },
            "log:\n\(daemon.log.suffix(2000))"
        )
        #expect(daemon.log.contains("READONLY"))
        _ = try redis.cli(["REPLICAOF", "NO", "ONE"])
        let results = try Python.celeryClient(
            RedisInteropTests.request(redis, calls: [["task": "swiftq.add", "args": [2, 3]]], timeout: 30)
        )
        #expect(results.first?["result"] == 5)
        #expect((try? daemon.stats())?["broker"]?["connected"] == true)
    }

    @Test func aStoppedConsumerIsKilledAndReplaced() throws {
        let redis = try RedisServer()
        let daemon = try RedisInteropTests.daemon(broker: redis)
        // Stopped once it is up and heartbeating (a consumer that never gets ready is the startup's concern).
        #expect(eventually(timeout: 20) { (try? daemon.stats())?["broker"]?["connected"] == true })
        let consumer = try #require(try daemon.consumerPID())
        kill(consumer, SIGSTOP)
        defer { kill(consumer, SIGCONT) }
        #expect(
            eventually(timeout: 30) {
                guard let pid = try? daemon.consumerPID() else { return false }
                return pid != consumer
            },
            "log:\n\(daemon.log.suffix(2000))"
        )
        #expect(daemon.log.contains("killing the consumer (pid \(consumer)): no heartbeat"))
        let results = try Python.celeryClient(
            RedisInteropTests.request(redis, calls: [["task": "swiftq.add", "args": [1, 2]]], timeout: 30)
        )
        #expect(results.first?["result"] == 3)
    }
}
