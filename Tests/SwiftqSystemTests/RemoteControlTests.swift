import Foundation
import SwiftqCore
import Testing

/// Stock Celery tools for remote control, for the remote-control tests: the `celery` CLI, a worker of
/// `control_tasks.py` (the same task names as swiftqd's built-ins) and the helper scripts.
enum CeleryControl {
    static func environment(broker: String, backend: String? = nil) -> [String: String] {
        var environment = ProcessInfo.processInfo.environment
        environment["SWIFTQ_TEST_BROKER"] = broker
        environment["SWIFTQ_TEST_BACKEND"] = backend ?? ""
        environment["PYTHONPATH"] = Python.scripts
        return environment
    }

    /// `celery -A control_tasks -b BROKER <arguments>`; stdout parsed as JSON (`-j`).
    static func cli(_ broker: String, _ arguments: [String], timeout: Double = 60) throws -> JSONValue {
        let result = try runCommand(
            Python.interpreter,
            ["-m", "celery", "-A", "control_tasks", "-b", broker] + arguments,
            environment: environment(broker: broker),
            timeout: timeout
        )
        guard result.status == 0 else {
            throw TestSetupError(
                "celery \(arguments.joined(separator: " ")) failed (\(result.status)): \(result.stderr)"
            )
        }
        return try JSONValue(parsing: result.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// A prefork Celery worker (one child) of `control_tasks.py` consuming `queue` as node `node`.
    static func worker(
        broker: String,
        backend: String? = nil,
        queue: String,
        node: String,
        mingle: Bool = false,
        logFile: String? = nil
    ) throws -> TestProcess {
        try TestProcess(
            Python.interpreter,
            [
                "-m", "celery", "-A", "control_tasks", "worker", "-P", "prefork", "-c", "1", "-Q", queue, "-n", node,
                "--without-gossip", "--without-heartbeat", "-E", "--loglevel", "INFO",
            ]
                + (mingle ? [] : ["--without-mingle"]),
            environment: environment(broker: broker, backend: backend),
            logFile: logFile
        )
    }

    /// Runs Python code with `control_tasks` importable (sending tasks, reading results); returns stdout.
    @discardableResult
    static func python(_ code: String, broker: String, backend: String? = nil) throws -> String {
        let result = try runCommand(
            Python.interpreter,
            ["-c", code],
            environment: environment(broker: broker, backend: backend),
            timeout: 60
        )
        guard result.status == 0 else { throw TestSetupError("python failed: \(result.stderr)\n\(code)") }
        return result.stdout
    }

    /// The shape of a JSON value: objects by their keys (order ignored), lists by their first element, scalars by
    /// their type (numbers as one type: Python writes `4` where swiftq writes `4.0`).
    static func shape(_ value: JSONValue) -> JSONValue {
        switch value {
        case .null: "null"
        case .bool: "bool"
        case .int, .double, .bigInt: "number"
        case .string: "string"
        case .array(let items): .array(items.first.map { [shape($0)] } ?? [])
        case .object(let object):
            .object(.init(uniqueKeysWithValues: object.keys.sorted().map { ($0, shape(object[$0]!)) }))
        }
    }

    /// Pids of the processes whose parent is `pid`, from /proc.
    static func children(of pid: Int32) -> [Int32] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { entry -> Int32? in
            guard let child = Int32(entry),
                let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { return nil }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            guard fields.count > 2, fields[0] != "Z", Int32(fields[1]) == pid else { return nil }
            return child
        }
    }
}

/// `celery inspect` / `celery control` (stock Celery 5.7 CLI), Flower's burst and garbage on the pidbox, answered by
/// swiftqd and by a Python Celery worker side by side on the same broker; every reply checked field by field
/// (keys and types) against the Python worker's.
@Suite(.serialized) struct RemoteControlTests {
    /// Replies that must have the same shape as the Python worker's.
    static let comparedInspects = ["ping", "stats", "active", "reserved", "scheduled", "registered", "active_queues"]

    func exercise(
        broker: String,
        backend: String?,
        daemon: Daemon,
        swift: String,
        python: String,
        pythonQueue: String,
        swiftQueue: String
    ) throws {
        let nodes = "\(swift),\(python)"
        // Both answer before anything is compared (the Python worker takes seconds to start on a loaded machine).
        #expect(
            eventually(timeout: 90) {
                let replies = try? CeleryControl.cli(broker, ["inspect", "ping", "-j", "-d", nodes, "--timeout", "3"])
                return replies?[swift] != nil && replies?[python] != nil
            },
            "not both nodes answered ping; log:\n\(daemon.log.suffix(3000))"
        )
        // Work in every state on both: one ETA task (scheduled), one running (active), the rest reserved.
        let sent = try CeleryControl.python(
            """
            import json
            from control_tasks import app
            ids = []
            for queue in ["\(swiftQueue)", "\(pythonQueue)"]:
                ids.append(app.send_task("swiftq.sleep", args=[1], queue=queue, countdown=600).id)
                # Long enough to still run when `terminate` comes, on a loaded machine too (the inspects before
                # it took over 60 s at load 10); terminate ends them.
                for _ in range(3):
                    ids.append(app.send_task("swiftq.sleep", args=[900], queue=queue).id)
            print(json.dumps(ids))
            """,
            broker: broker
        )
        let ids = try JSONValue(parsing: sent.trimmingCharacters(in: .whitespacesAndNewlines)).arrayValue ?? []
        #expect(ids.count == 8)
        #expect(
            eventually(timeout: 60) {
                let replies = try? CeleryControl.cli(
                    broker,
                    ["inspect", "active", "-j", "-d", nodes, "--timeout", "3"]
                )
                let reserved = try? CeleryControl.cli(
                    broker,
                    ["inspect", "reserved", "-j", "-d", nodes, "--timeout", "3"]
                )
                return replies?[swift]?.arrayValue?.count == 1 && replies?[python]?.arrayValue?.count == 1
                    && reserved?[swift]?.arrayValue?.isEmpty == false && reserved?[python]?.arrayValue?.isEmpty == false
            },
            "tasks never became active and reserved on both"
        )
        for command in Self.comparedInspects {
            let replies = try CeleryControl.cli(broker, ["inspect", command, "-j", "-d", nodes, "--timeout", "5"])
            let mine = try #require(replies[swift], "swiftqd did not answer \(command): \(replies)")
            let theirs = try #require(replies[python], "the Python worker did not answer \(command): \(replies)")
            #expect(
                CeleryControl.shape(mine) == CeleryControl.shape(theirs),
                "\(command): swiftqd \(mine) vs python \(theirs)"
            )
            #expect(!(mine.arrayValue?.isEmpty ?? false) || command == "registered", "\(command) is empty: \(mine)")
        }
        // Flower's needs: objects where it reads keys.
        let stats = try CeleryControl.cli(broker, ["inspect", "stats", "-j", "-d", swift, "--timeout", "5"])[swift]
        #expect(stats?["total"]?.objectValue?["swiftq.sleep"] == 1)
        #expect(stats?["broker"]?["transport"] == (broker.hasPrefix("amqp") ? "amqp" : "redis"))
        #expect(stats?["clock"]?.stringValue != nil)
        // conf: Celery-named settings in an object, as the Python worker's.
        let conf = try CeleryControl.cli(broker, ["inspect", "conf", "-j", "-d", nodes, "--timeout", "5"])
        #expect(conf[swift]?["broker_url"]?.stringValue != nil && conf[python]?["broker_url"]?.stringValue != nil)
        #expect(conf[swift]?["worker_prefetch_multiplier"] == 4)
        // Keys Celery's own suite reads from `inspect conf`, with swiftqd's values for them.
        #expect(conf[swift]?["accept_content"] == ["json"])
        #expect(conf[swift]?["enable_utc"] == true && conf[swift]?["timezone"] == "UTC")
        #expect(conf[swift]?["broker_heartbeat"]?.doubleValue != nil)
        #expect(conf[swift]?["worker_hijack_root_logger"] == false && conf[swift]?["worker_log_color"] == false)
        #expect(conf[swift]?["include"] == [] && conf[swift]?["deprecated_settings"] == [])
        let registered = try CeleryControl.cli(broker, ["inspect", "registered", "-j", "-d", swift, "--timeout", "5"])
        #expect(registered[swift]?.arrayValue?.contains("swiftq.sleep") == true)

        // Control commands: the same reply shapes as the Python worker's.
        let extra = swiftQueue + "-extra"
        for arguments in [
            ["revoke", "not-a-real-id"], ["pool_grow", "1"], ["pool_shrink", "1"],
            ["add_consumer", extra], ["cancel_consumer", extra], ["enable_events"],
            ["rate_limit", "swiftq.sleep", "100/s"], ["time_limit", "swiftq.sleep", "600", "1200"],
        ] {
            let replies = try CeleryControl.cli(
                broker,
                ["control"] + arguments + ["-j", "-d", nodes, "--timeout", "5"]
            )
            var byNode: [String: JSONValue] = [:]
            for reply in replies.arrayValue ?? [] {
                for (node, value) in reply.objectValue ?? [:] { byNode[node] = value }
            }
            let mine = try #require(byNode[swift], "swiftqd did not answer \(arguments): \(replies)")
            #expect(mine["ok"]?.stringValue != nil, "\(arguments): \(mine)")
            let theirs = try #require(byNode[python], "the Python worker did not answer \(arguments): \(replies)")
            // Python refuses to shrink a pool whose processes are all busy (swiftq retires a busy child after its
            // task): an error reply of Celery's shape, not comparable.
            if arguments[0] != "pool_shrink" {
                #expect(CeleryControl.shape(mine) == CeleryControl.shape(theirs), "\(arguments): \(replies)")
            }
        }
        let revoked = try CeleryControl.cli(broker, ["inspect", "revoked", "-j", "-d", swift, "--timeout", "5"])
        #expect(revoked[swift]?.arrayValue?.contains("not-a-real-id") == true)

        // terminate (Celery's CLI sends a signal and the ids): both workers end their running tasks.
        let terminated = try CeleryControl.cli(
            broker,
            ["control", "terminate", "KILL"] + ids.compactMap(\.stringValue) + ["-j", "-d", nodes, "--timeout", "5"]
        )
        #expect("\(terminated)".contains("terminate:"), "\(terminated)")
        #expect(
            eventually(timeout: 30) {
                let replies = try? CeleryControl.cli(
                    broker,
                    ["inspect", "active", "-j", "-d", swift, "--timeout", "3"]
                )
                return replies?[swift]?.arrayValue?.isEmpty == true
            },
            "swiftqd still runs a terminated task"
        )
        // The ETA task, the two reserved ones and the terminated one: REVOKED (the last when its child's exit is
        // reaped, which a loaded machine may delay past the moment `active` is empty).
        var daemonStats: JSONValue = .null
        #expect(
            eventually(timeout: 20) {
                daemonStats = (try? daemon.stats()) ?? .null
                return daemonStats["tasks"]?["revoked"]?.intValue ?? 0 >= 4
            },
            "\(daemonStats)"
        )
    }

    func checkPool(broker: String, daemon: Daemon, swift: String) throws {
        let consumer = try #require(try daemon.consumerPID())
        #expect(eventually(timeout: 20) { CeleryControl.children(of: consumer).count == 1 })
        _ = try CeleryControl.cli(broker, ["control", "pool_grow", "2", "-j", "-d", swift, "--timeout", "5"])
        #expect(
            eventually(timeout: 20) { CeleryControl.children(of: consumer).count == 3 },
            "pool_grow 2: \(CeleryControl.children(of: consumer))"
        )
        _ = try CeleryControl.cli(broker, ["control", "pool_shrink", "1", "-j", "-d", swift, "--timeout", "5"])
        #expect(
            eventually(timeout: 20) { CeleryControl.children(of: consumer).count == 2 },
            "pool_shrink 1: \(CeleryControl.children(of: consumer))"
        )
        let stats = try CeleryControl.cli(broker, ["inspect", "stats", "-j", "-d", swift, "--timeout", "5"])[swift]
        #expect(stats?["pool"]?["max-concurrency"] == 2)
        #expect(stats?["prefetch_count"] == 8, "the prefetch window follows the pool")
    }

    func checkQueues(broker: String, daemon: Daemon, swift: String, queue: String) throws {
        let extra = queue + "-added"
        let before = (try daemon.stats())["tasks"]?["succeeded"]?.intValue ?? 0
        _ = try CeleryControl.cli(broker, ["control", "add_consumer", extra, "-j", "-d", swift, "--timeout", "5"])
        let queues = try CeleryControl.cli(broker, ["inspect", "active_queues", "-j", "-d", swift, "--timeout", "5"])
        #expect(queues[swift]?.arrayValue?.compactMap { $0["name"]?.stringValue } == [queue, extra])
        try CeleryControl.python(
            "from control_tasks import app\napp.send_task('swiftq.add', args=[1, 2], queue='\(extra)')",
            broker: broker
        )
        #expect(
            eventually(timeout: 30) { ((try? daemon.stats())?["tasks"]?["succeeded"]?.intValue ?? 0) > before },
            "a task sent to the added queue did not run"
        )
        _ = try CeleryControl.cli(broker, ["control", "cancel_consumer", extra, "-j", "-d", swift, "--timeout", "5"])
        let after = try CeleryControl.cli(broker, ["inspect", "active_queues", "-j", "-d", swift, "--timeout", "5"])
        #expect(after[swift]?.arrayValue?.compactMap { $0["name"]?.stringValue } == [queue])
    }

    func checkGarbageAndBurst(broker: String, daemon: Daemon, swift: String) throws {
        let consumer = try daemon.consumerPID()
        let sent = try runCommand(
            Python.interpreter,
            [Python.scripts + "/pidbox_garbage.py", broker],
            environment: CeleryControl.environment(broker: broker),
            timeout: 60
        )
        #expect(sent.status == 0, "\(sent.stderr)")
        let burst = try runCommand(
            Python.interpreter,
            [Python.scripts + "/control_burst.py", broker, swift],
            environment: CeleryControl.environment(broker: broker),
            timeout: 60
        )
        let replies = try JSONValue(parsing: burst.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
        for (method, reply) in replies.objectValue ?? [:] {
            #expect(!reply.isNull, "\(method) was not answered within Flower's 1 s")
        }
        #expect(replies.objectValue?.count == 8)
        #expect(replies["stats"]?["total"]?.objectValue != nil && replies["stats"]?["broker"]?.objectValue != nil)
        #expect(try daemon.consumerPID() == consumer, "the consumer restarted")
        #expect(
            eventually(timeout: 10) {
                daemon.log.contains("dropping a pidbox message") || daemon.log.contains("ignoring a control message")
            }
        )
        #expect(daemon.log.contains("control command no_such_command refused"))
    }

    @Test func celeryInspectAndControlReachSwiftqdOnRedis() throws {
        let redis = try RedisServer()
        let tag = UInt32.random(in: 0...UInt32.max)
        let swift = "swift-\(tag)@test"
        let python = "py-\(tag)@test"
        let daemon = try RedisInteropTests.daemon(
            broker: redis,
            concurrency: 1,
            queues: "[sq]",
            workerYAMLExtra: "  hostname: \(swift)\n"
        )
        let worker = try CeleryControl.worker(
            broker: redis.url,
            queue: "pq",
            node: python,
            logFile: daemon.directory.path + "/python.log"
        )
        defer { worker.stop() }
        try exercise(
            broker: redis.url,
            backend: nil,
            daemon: daemon,
            swift: swift,
            python: python,
            pythonQueue: "pq",
            swiftQueue: "sq"
        )
        try checkPool(broker: redis.url, daemon: daemon, swift: swift)
        try checkQueues(broker: redis.url, daemon: daemon, swift: swift, queue: "sq")
        try checkGarbageAndBurst(broker: redis.url, daemon: daemon, swift: swift)
    }

    @Test func celeryInspectAndControlReachSwiftqdOnRabbitMQ() throws {
        let rabbit = try RabbitMQNode.shared()
        let queue = uniqueQueueName()
        let swift = "swift-\(queue)@test"
        let python = "py-\(queue)@test"
        let daemon = try RabbitMQInteropTests.daemon(
            broker: rabbit.url,
            backend: nil,
            queue: queue,
            concurrency: 1,
            workerYAML: "  hostname: \(swift)\n"
        )
        let worker = try CeleryControl.worker(
            broker: rabbit.url,
            queue: queue + "-py",
            node: python,
            logFile: daemon.directory.path + "/python.log"
        )
        defer { worker.stop() }
        try exercise(
            broker: rabbit.url,
            backend: nil,
            daemon: daemon,
            swift: swift,
            python: python,
            pythonQueue: queue + "-py",
            swiftQueue: queue
        )
        // The node's pidbox queue is exclusive (RabbitMQ 4.3 refuses transient non-exclusive queues).
        let queues = try rabbit.ctl(["list_queues", "--no-table-headers", "name", "exclusive"])
        #expect(queues.contains("\(swift).celery.pidbox\ttrue"), "\(queues)")
        try checkPool(broker: rabbit.url, daemon: daemon, swift: swift)
        try checkQueues(broker: rabbit.url, daemon: daemon, swift: swift, queue: queue)
        try checkGarbageAndBurst(broker: rabbit.url, daemon: daemon, swift: swift)
    }

    /// `swiftqctl --broadcast inspect ping` through `broker`, expecting both nodes.
    func checkSwiftqctlBroadcast(broker: String, swift: String, python: String) throws {
        var listed = ""
        #expect(
            eventually(timeout: 60) {
                let result = try? runCommand(
                    Binaries.swiftqctl,
                    [
                        "--broadcast", "--broker", broker, "--destination", swift, "--destination", python, "--timeout",
                        "5",
                        "inspect", "ping",
                    ]
                )
                listed = result?.stdout ?? ""
                return listed.contains("\(swift): pong") && listed.contains("\(python): pong")
            },
            "swiftqctl --broadcast listed: \(listed)"
        )
        let json = try runCommand(
            Binaries.swiftqctl,
            ["--broadcast", "--broker", broker, "--destination", swift, "--timeout", "5", "--json", "inspect", "stats"]
        )
        #expect(
            try JSONValue(parsing: json.stdout)[swift]?["broker"]?.objectValue != nil,
            "\(json.stdout) \(json.stderr)"
        )
        let usage = try runCommand(Binaries.swiftqctl, ["--broadcast", "--broker", broker, "frobnicate"])
        #expect(usage.status == 2)
    }

    @Test func swiftqctlBroadcastListsAPythonWorkerAndSwiftqd() throws {
        let redis = try RedisServer()
        let tag = UInt32.random(in: 0...UInt32.max)
        let swift = "swift-\(tag)@test"
        let python = "py-\(tag)@test"
        let daemon = try RedisInteropTests.daemon(
            broker: redis,
            concurrency: 1,
            workerYAMLExtra: "  hostname: \(swift)\n"
        )
        let worker = try CeleryControl.worker(broker: redis.url, queue: "pq", node: python)
        defer { worker.stop() }
        try checkSwiftqctlBroadcast(broker: redis.url, swift: swift, python: python)
        _ = daemon
        let rabbit = try RabbitMQNode.shared()
        let queue = uniqueQueueName()
        let rabbitSwift = "swift-\(queue)@test"
        let rabbitPython = "py-\(queue)@test"
        let rabbitDaemon = try RabbitMQInteropTests.daemon(
            broker: rabbit.url,
            backend: nil,
            queue: queue,
            concurrency: 1,
            workerYAML: "  hostname: \(rabbitSwift)\n"
        )
        let rabbitWorker = try CeleryControl.worker(broker: rabbit.url, queue: queue + "-py", node: rabbitPython)
        defer { rabbitWorker.stop() }
        try checkSwiftqctlBroadcast(broker: rabbit.url, swift: rabbitSwift, python: rabbitPython)
        _ = rabbitDaemon
    }
}
