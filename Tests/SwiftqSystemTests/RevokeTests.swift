import Foundation
import SwiftqCore
import Testing

/// `swiftqctl revoke` that holds (reserved, ETA-held, sent later, `--terminate` on a running task, across a restart,
/// from Python's `app.control.revoke`, to a Python worker through mingle), the socket's command table, and its
/// admin and broadcast restrictions.
@Suite(.serialized) struct RevokeTests {
    /// The stored meta of a task (`celery-task-meta-<id>` in db 1), or nil.
    static func meta(_ redis: RedisServer, _ id: String) -> JSONValue? {
        guard let text = try? redis.cli(["-n", "1", "GET", "celery-task-meta-\(id)"]),
            !text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty
        else { return nil }
        return try? JSONValue(parsing: text.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    static func status(_ redis: RedisServer, _ id: String) -> String? { meta(redis, id)?["status"]?.stringValue }

    /// Sends `swiftq.*` tasks with fixed ids through stock Celery: `(id, name, args, countdown)`.
    static func send(_ redis: RedisServer, queue: String = "celery", _ tasks: [(String, String, [JSONValue], Int?)])
        throws
    {
        let lines = tasks.map { id, name, args, countdown in
            "app.send_task('\(name)', args=json.loads('\(JSONValue.array(args).jsonString)'), task_id='\(id)', "
                + "queue='\(queue)'\(countdown.map { ", countdown=\($0)" } ?? ""))"
        }
        try CeleryControl.python(
            "import json\nfrom control_tasks import app\n" + lines.joined(separator: "\n"),
            broker: redis.url,
            backend: redis.url(db: 1)
        )
    }

    @Test func revokedTasksNeverRunAndTerminateEndsTheRunningOneAsRevoked() throws {
        let redis = try RedisServer()
        let daemon = try RedisInteropTests.daemon(broker: redis, concurrency: 1, prefetch: 4)
        try Self.send(redis, [("long", "swiftq.sleep", [30], nil)])
        #expect(
            eventually(timeout: 30) {
                (try? daemon.ctl(["inspect", "active", "--json"]))?.stdout.contains("long") == true
            }
        )
        try Self.send(
            redis,
            [
                ("reserved-1", "swiftq.add", [1, 2], nil), ("next", "swiftq.add", [2, 2], nil),
                ("eta-1", "swiftq.add", [1, 1], 600),
            ]
        )
        #expect(
            eventually(timeout: 30) {
                let reserved = (try? daemon.ctl(["inspect", "reserved"]))?.stdout ?? ""
                let scheduled = (try? daemon.ctl(["inspect", "scheduled"]))?.stdout ?? ""
                return reserved.contains("reserved-1") && scheduled.contains("eta-1")
            },
            "the tasks were not reserved and scheduled: \(daemon.log.suffix(2000))"
        )
        let revoked = try daemon.ctl(["revoke", "reserved-1", "eta-1", "later-1"])
        #expect(revoked.status == 0, "\(revoked.stderr)")
        #expect(revoked.stdout.contains("flagged as revoked"))
        #expect(Self.status(redis, "reserved-1") == "REVOKED")
        #expect(eventually(timeout: 5) { Self.status(redis, "eta-1") == "REVOKED" })
        // Sent after the revoke: revoked on receipt.
        try Self.send(redis, [("later-1", "swiftq.add", [3, 3], nil)])
        #expect(eventually(timeout: 20) { Self.status(redis, "later-1") == "REVOKED" })
        let listed = try daemon.ctl(["inspect", "revoked"]).stdout
        #expect(listed.split(separator: "\n") == ["reserved-1", "eta-1", "later-1"])
        // --terminate ends the running task within a second, REVOKED (terminated), and the next task runs.
        // The second counts from the daemon's answer (swiftqctl's own start-up under load is not the daemon's).
        let started = Date()
        let terminated = try daemon.ctl(["revoke", "--terminate", "long"])
        let answered = Date()
        #expect(terminated.stdout.contains("terminate: long"), "\(terminated.stdout) \(terminated.stderr)")
        #expect(eventually(timeout: 5) { Self.status(redis, "long") == "REVOKED" })
        #expect(Date().timeIntervalSince(answered) < 1.0, "terminate took \(Date().timeIntervalSince(answered)) s")
        #expect(
            Date().timeIntervalSince(started) < 1.5,
            "swiftqctl + terminate took \(Date().timeIntervalSince(started)) s"
        )
        #expect(Self.meta(redis, "long")?["result"]?["exc_message"] == ["terminated"])
        #expect(eventually(timeout: 20) { Self.status(redis, "next") == "SUCCESS" })
        for id in ["reserved-1", "eta-1", "later-1"] {
            #expect(Self.meta(redis, id)?["result"]?["exc_type"] == "TaskRevokedError", "\(id)")
        }
        #expect((try daemon.stats())["tasks"]?["succeeded"]?.intValue == 1, "only `next` ran")
    }

    @Test func aRevokeFromPythonsAppControlIsHonoured() throws {
        let redis = try RedisServer()
        let node = "swift-\(UInt32.random(in: 0...UInt32.max))@test"
        let daemon = try RedisInteropTests.daemon(
            broker: redis,
            concurrency: 1,
            workerYAMLExtra: "  hostname: \(node)\n"
        )
        #expect(
            eventually(timeout: 60) {
                (try? CeleryControl.cli(redis.url, ["inspect", "ping", "-j", "-d", node]))?[node] != nil
            }
        )
        try CeleryControl.python(
            "from control_tasks import app\napp.control.revoke('py-revoked', destination=['\(node)'], reply=True)",
            broker: redis.url
        )
        #expect(try daemon.ctl(["inspect", "revoked"]).stdout.contains("py-revoked"))
        try Self.send(redis, [("py-revoked", "swiftq.add", [1, 1], nil), ("py-ok", "swiftq.add", [1, 1], nil)])
        #expect(eventually(timeout: 20) { Self.status(redis, "py-ok") == "SUCCESS" })
        #expect(Self.status(redis, "py-revoked") == "REVOKED")
    }

    /// Celery's stamping: `revoke_by_stamped_headers` from Python's `app.control` revokes later tasks that carry the
    /// stamp, with Celery's reply texts, and with `terminate` ends a running one as REVOKED.
    @Test func revokeByStampedHeadersFromPythonHoldsAndTerminates() throws {
        let redis = try RedisServer()
        let node = "swift-\(UInt32.random(in: 0...UInt32.max))@test"
        let daemon = try RedisInteropTests.daemon(
            broker: redis,
            concurrency: 1,
            workerYAMLExtra: "  hostname: \(node)\n"
        )
        #expect(
            eventually(timeout: 60) {
                (try? CeleryControl.cli(redis.url, ["inspect", "ping", "-j", "-d", node]))?[node] != nil
            }
        )
        let flagged = try CeleryControl.python(
            "import json\nfrom control_tasks import app\n"
                + "print(json.dumps(app.control.revoke_by_stamped_headers({'batch': 'b1'}, destination=['\(node)'], "
                + "reply=True)))",
            broker: redis.url
        )
        let reply = try JSONValue(parsing: flagged.trimmingCharacters(in: .whitespacesAndNewlines))
        #expect(
            reply[0]?[node]?["ok"] == "headers {'batch': 'b1'} flagged as revoked, but not terminated",
            "\(flagged)"
        )
        let stampedSend = { (id: String, name: String, args: String, batch: String) in
            "app.send_task('\(name)', args=\(args), task_id='\(id)', stamped_headers=['batch'], batch='\(batch)')"
        }
        try CeleryControl.python(
            "from control_tasks import app\n"
                + [
                    stampedSend("stamped-1", "swiftq.add", "[1, 1]", "b1"),
                    stampedSend("stamped-2", "swiftq.add", "[2, 2]", "b2"),
                    stampedSend("stamped-long", "swiftq.sleep", "[30]", "long"),
                ].joined(separator: "\n"),
            broker: redis.url,
            backend: redis.url(db: 1)
        )
        #expect(eventually(timeout: 30) { Self.status(redis, "stamped-2") == "SUCCESS" }, "\(daemon.log.suffix(2000))")
        #expect(Self.status(redis, "stamped-1") == "REVOKED")
        #expect(Self.meta(redis, "stamped-1")?["result"]?["exc_type"] == "TaskRevokedError")
        #expect(
            eventually(timeout: 30) {
                (try? daemon.ctl(["inspect", "active", "--json"]))?.stdout.contains("stamped-long") == true
            }
        )
        let terminated = try CeleryControl.python(
            "import json\nfrom control_tasks import app\n"
                + "print(json.dumps(app.control.revoke_by_stamped_headers({'batch': 'long'}, terminate=True, "
                + "destination=['\(node)'], reply=True)))",
            broker: redis.url
        )
        let answered = try JSONValue(parsing: terminated.trimmingCharacters(in: .whitespacesAndNewlines))
        #expect(
            answered[0]?[node]?["ok"] == "headers defaultdict(<class 'set'>, {'batch': {'long'}}) revoked",
            "\(terminated)"
        )
        #expect(
            eventually(timeout: 5) { Self.status(redis, "stamped-long") == "REVOKED" },
            "\(daemon.log.suffix(2000))"
        )
    }

    @Test func aPythonWorkerStartedAfterASwiftqdRevokeDoesNotRunItThroughMingle() throws {
        let redis = try RedisServer()
        let tag = UInt32.random(in: 0...UInt32.max)
        let node = "swift-\(tag)@test"
        let daemon = try RedisInteropTests.daemon(
            broker: redis,
            concurrency: 1,
            workerYAMLExtra: "  hostname: \(node)\n"
        )
        #expect(try daemon.ctl(["revoke", "mingled-1"]).status == 0)
        // The Python worker (mingle on) asks the live nodes for their revokes before it consumes.
        let python = "py-\(tag)@test"
        let worker = try CeleryControl.worker(
            broker: redis.url,
            backend: redis.url(db: 1),
            queue: "pq",
            node: python,
            mingle: true,
            logFile: daemon.directory.path + "/python.log"
        )
        defer { worker.stop() }
        #expect(
            eventually(timeout: 60) {
                (try? CeleryControl.cli(redis.url, ["inspect", "revoked", "-j", "-d", python]))?[python]?.arrayValue?
                    .contains("mingled-1") == true
            },
            "the Python worker did not learn the revoke: \((try? String(contentsOfFile: daemon.directory.path + "/python.log", encoding: .utf8)) ?? "")"
        )
        try Self.send(
            redis,
            queue: "pq",
            [("mingled-1", "swiftq.add", [1, 1], nil), ("py-ok", "swiftq.add", [1, 1], nil)]
        )
        #expect(eventually(timeout: 30) { Self.status(redis, "py-ok") == "SUCCESS" })
        #expect(Self.status(redis, "mingled-1") == "REVOKED")
    }

    @Test func theSocketTableAnswersInspectPoolAndQueueCommands() throws {
        let redis = try RedisServer()
        let daemon = try RedisInteropTests.daemon(broker: redis, concurrency: 1)
        let registered = try daemon.ctl(["inspect", "registered"])
        #expect(registered.stdout.contains("swiftq.sleep"))
        let queues = try daemon.ctl(["inspect", "queues", "--json"])
        #expect(try JSONValue(parsing: queues.stdout)[0]?["name"] == "celery")
        #expect(try daemon.ctl(["inspect", "conf"]).stdout.contains("worker_concurrency"))
        let report = try daemon.ctl(["inspect", "report"]).stdout
        #expect(report.contains("node -> "))
        // Celery's first line, `software -> celery:<version> …` (its test_inspect's test_report reads it).
        #expect(report.contains("software -> celery:5.7 swiftqd:"))
        #expect(try daemon.ctl(["pool", "grow", "2"]).stdout.contains("pool will grow"))
        let consumer = try #require(try daemon.consumerPID())
        #expect(eventually(timeout: 20) { CeleryControl.children(of: consumer).count == 3 })
        #expect(try daemon.ctl(["pool", "shrink", "1"]).status == 0)
        #expect(eventually(timeout: 20) { CeleryControl.children(of: consumer).count == 2 })
        #expect(try daemon.ctl(["queue", "add", "more"]).stdout.contains("add consumer more"))
        #expect(try daemon.ctl(["inspect", "queues"]).stdout.contains("more"))
        #expect(try daemon.ctl(["queue", "cancel", "more"]).stdout.contains("no longer consuming from more"))
        // Usage errors never reach the daemon.
        #expect(try daemon.ctl(["pool", "grow", "zero"]).status == 2)
        #expect(try daemon.ctl(["inspect", "everything"]).status == 2)
        #expect(try daemon.ctl(["revoke", "x", "--signal", "KILL"]).status == 2)
        // Bad arguments over the raw socket: a clear error, the daemon stays up.
        #expect(throws: (any Error).self) { try daemon.call("pool_grow", arguments: ["n": "lots"]) }
        #expect(throws: (any Error).self) { try daemon.call("no_such_command") }
        #expect(try daemon.call("ping")["pong"] == true)
    }

    /// Runs swiftqctl as uid/gid 65534 through setpriv.
    static func asNobody(_ daemon: Daemon, _ arguments: [String]) throws -> CommandResult {
        try runCommand(
            "/usr/bin/setpriv",
            ["--reuid=65534", "--regid=65534", "--clear-groups", Binaries.swiftqctl, "--socket", daemon.socketPath]
                + arguments
        )
    }

    @Test func aNonAdminGetsStatsButIsRefusedShutdownAndRevoke() throws {
        guard getuid() == 0 else { return }  // setpriv needs root
        let redis = try RedisServer()
        let admin = try Daemon(
            concurrency: 1,
            extraYAML: "broker:\n  url: \(redis.url)\nresult_backend:\n  url: \(redis.url(db: 1))\n",
            controlYAML: "  mode: \"0666\"\n  allow_uids: [65534]\n  admin_uids: [0]\n"
        )
        #expect(try Self.asNobody(admin, ["stats"]).status == 0)
        #expect(try Self.asNobody(admin, ["inspect", "revoked"]).status == 0)
        let shutdown = try Self.asNobody(admin, ["shutdown"])
        #expect(shutdown.status == 69, "\(shutdown.stdout) \(shutdown.stderr)")
        #expect(shutdown.stderr.contains("may not run shutdown"))
        let revoke = try Self.asNobody(admin, ["revoke", "x"])
        #expect(revoke.status == 69)
        #expect(admin.log.contains("control request refused: revoke"))
        #expect(admin.log.contains("uid=65534"))
        #expect(!(try admin.ctl(["inspect", "revoked"]).stdout.contains("x\n")))
        // Root (an admin) may.
        #expect(try admin.ctl(["revoke", "x"]).status == 0)
        #expect(admin.exitStatus() == nil, "the daemon stopped")
    }

    @Test func broadcastReadOnlyAnswersInspectAndRefusesControl() throws {
        let redis = try RedisServer()
        let node = "ro-\(UInt32.random(in: 0...UInt32.max))@test"
        let daemon = try RedisInteropTests.daemon(
            broker: redis,
            concurrency: 1,
            workerYAMLExtra: "  hostname: \(node)\n",
            controlYAMLExtra: "  broadcast: read-only\n"
        )
        #expect(
            eventually(timeout: 60) {
                (try? CeleryControl.cli(redis.url, ["inspect", "ping", "-j", "-d", node]))?[node] == ["ok": "pong"]
            }
        )
        let shutdown = try CeleryControl.cli(redis.url, ["control", "shutdown", "-j", "-d", node, "--timeout", "3"])
        #expect("\(shutdown)".contains("read-only"), "\(shutdown)")
        let revoke = try CeleryControl.cli(redis.url, ["control", "revoke", "r1", "-j", "-d", node, "--timeout", "3"])
        #expect("\(revoke)".contains("read-only"))
        #expect(daemon.log.contains("pidbox request shutdown refused (control.broadcast: read-only)"))
        #expect(daemon.exitStatus() == nil, "the daemon stopped")
        #expect(!(try daemon.ctl(["inspect", "revoked"]).stdout.contains("r1")))
    }

    @Test func broadcastOffIgnoresThePidbox() throws {
        let redis = try RedisServer()
        let node = "off-\(UInt32.random(in: 0...UInt32.max))@test"
        let daemon = try RedisInteropTests.daemon(
            broker: redis,
            concurrency: 1,
            workerYAMLExtra: "  hostname: \(node)\n",
            controlYAMLExtra: "  broadcast: false\n"
        )
        #expect(eventually(timeout: 30) { daemon.log.contains("consuming from") })
        #expect(
            eventually(timeout: 30) {
                daemon.log.contains("pidbox request ping ignored")
                    || {
                        _ = try? CeleryControl.cli(redis.url, ["inspect", "ping", "-j", "-d", node, "--timeout", "1"])
                        return false
                    }()
            }
        )
        // The socket still answers everything.
        #expect(try daemon.ctl(["inspect", "revoked"]).status == 0)
    }

    @Test func aRevokeHoldsAcrossARestartThroughTheStateFile() throws {
        let redis = try RedisServer()
        let state = try TemporaryDirectory()
        let yaml = "  state_db: \(state.path)/revokes.json\n"
        do {
            let first = try RedisInteropTests.daemon(broker: redis, concurrency: 1, workerYAMLExtra: yaml)
            #expect(try first.ctl(["revoke", "after-restart"]).status == 0)
            #expect(eventually(timeout: 5) { FileManager.default.fileExists(atPath: state.path + "/revokes.json") })
            first.signal(SIGTERM)
            #expect(first.waitForExit() == 0)
        }
        let saved = try JSONValue(parsing: String(contentsOfFile: state.path + "/revokes.json", encoding: .utf8))
        #expect(saved["revoked"]?[0]?[0] == "after-restart")
        // Only the state file remembers it now.
        try redis.cli(["DEL", "swiftq.revoked"])
        let second = try RedisInteropTests.daemon(broker: redis, concurrency: 1, workerYAMLExtra: yaml)
        #expect(try second.ctl(["inspect", "revoked"]).stdout.contains("after-restart"))
        try Self.send(redis, [("after-restart", "swiftq.add", [1, 1], nil), ("fine", "swiftq.add", [1, 1], nil)])
        #expect(eventually(timeout: 30) { Self.status(redis, "fine") == "SUCCESS" })
        #expect(Self.status(redis, "after-restart") == "REVOKED")
        #expect(second.log.contains("loaded 1 revoke(s) from"))
    }

    @Test func aSwiftqdStartedAfterARevokeFindsItInTheBroker() throws {
        let redis = try RedisServer()
        let first = try RedisInteropTests.daemon(
            broker: redis,
            concurrency: 1,
            queues: "[first]",
            workerYAMLExtra: "  hostname: first-\(UInt32.random(in: 0...UInt32.max))@test\n"
        )
        #expect(try first.ctl(["revoke", "cluster-1"]).status == 0)
        #expect(
            eventually(timeout: 10) { (try? redis.cli(["ZSCORE", "swiftq.revoked", "cluster-1"]))?.isEmpty == false }
        )
        first.signal(SIGTERM)
        #expect(first.waitForExit() == 0)
        // Started later, with no live peer to mingle with: the broker's revoke list holds it.
        let second = try RedisInteropTests.daemon(
            broker: redis,
            concurrency: 1,
            workerYAMLExtra: "  hostname: second-\(UInt32.random(in: 0...UInt32.max))@test\n"
        )
        try Self.send(redis, [("cluster-1", "swiftq.add", [1, 1], nil), ("cluster-ok", "swiftq.add", [1, 1], nil)])
        #expect(eventually(timeout: 30) { Self.status(redis, "cluster-ok") == "SUCCESS" })
        #expect(Self.status(redis, "cluster-1") == "REVOKED")
        #expect(second.log.contains("revokes from the broker's revoke list"))
    }

    @Test func swiftqdStartedAfterAPythonRevokeLearnsItThroughMingle() throws {
        let redis = try RedisServer()
        let tag = UInt32.random(in: 0...UInt32.max)
        let python = "py-\(tag)@test"
        let directory = try TemporaryDirectory()
        let worker = try CeleryControl.worker(
            broker: redis.url,
            backend: redis.url(db: 1),
            queue: "pq",
            node: python,
            logFile: directory.path + "/python.log"
        )
        defer { worker.stop() }
        #expect(
            eventually(timeout: 90) {
                (try? CeleryControl.cli(redis.url, ["inspect", "ping", "-j", "-d", python, "--timeout", "3"]))?[python]
                    != nil
            }
        )
        try CeleryControl.python(
            "from control_tasks import app\napp.control.revoke('from-python', destination=['\(python)'], reply=True)",
            broker: redis.url
        )
        // Without mingle (Celery's --without-mingle) a swiftqd does not ask, and does not learn it: by the time it
        // ran a task, its startup revokes were in.
        do {
            let unmingled = try RedisInteropTests.daemon(
                broker: redis,
                concurrency: 1,
                workerYAMLExtra: "  hostname: unmingled-\(tag)@test\n  mingle: false\n"
            )
            try Self.send(redis, [("before-mingle", "swiftq.add", [1, 1], nil)])
            #expect(eventually(timeout: 30) { Self.status(redis, "before-mingle") == "SUCCESS" })
            #expect(!unmingled.log.contains("revokes from mingle"), "\(unmingled.log.suffix(2000))")
            #expect(try !unmingled.ctl(["inspect", "revoked"]).stdout.contains("from-python"))
            unmingled.process.terminate()
            _ = reap(unmingled.process, timeout: 20)
        }
        // Only the Python worker knows it; swiftqd asks at startup (mingle) before consuming.
        let daemon = try RedisInteropTests.daemon(
            broker: redis,
            concurrency: 1,
            workerYAMLExtra: "  hostname: swift-\(tag)@test\n"
        )
        #expect(eventually(timeout: 10) { daemon.log.contains("revokes from mingle") })
        #expect(try daemon.ctl(["inspect", "revoked"]).stdout.contains("from-python"), "\(daemon.log.suffix(2000))")
        try Self.send(redis, [("from-python", "swiftq.add", [1, 1], nil), ("also-fine", "swiftq.add", [1, 1], nil)])
        #expect(eventually(timeout: 30) { Self.status(redis, "also-fine") == "SUCCESS" })
        #expect(Self.status(redis, "from-python") == "REVOKED")
    }

    /// RabbitMQ keeps no revoke list of its own (neither does Celery on it): a swiftqd started after a revoke learns
    /// it from the live workers through mingle, and does not run the task sent to it.
    @Test func onRabbitMQASwiftqdStartedAfterARevokeLearnsItFromAnotherSwiftqd() throws {
        let rabbit = try RabbitMQNode.shared()
        let redis = try RedisServer()
        let queue = uniqueQueueName()
        let first = try RabbitMQInteropTests.daemon(
            broker: rabbit.url,
            backend: redis.url(db: 1),
            queue: queue + "-first",
            concurrency: 1,
            workerYAML: "  hostname: first-\(queue)@test\n"
        )
        #expect(try first.ctl(["revoke", "amqp-later"]).status == 0)
        // Mingle at the first's own start takes a second, and a worker answers no `hello` until it is done.
        #expect(eventually(timeout: 10) { first.log.contains("revokes from mingle") })
        let second = try RabbitMQInteropTests.daemon(
            broker: rabbit.url,
            backend: redis.url(db: 1),
            queue: queue,
            concurrency: 1,
            workerYAML: "  hostname: second-\(queue)@test\n"
        )
        #expect(eventually(timeout: 10) { second.log.contains("revokes from mingle") }, "\(second.log.suffix(2000))")
        try CeleryControl.python(
            "from control_tasks import app\n"
                + "app.send_task('swiftq.add', args=[1, 1], task_id='amqp-later', queue='\(queue)')\n"
                + "app.send_task('swiftq.add', args=[1, 1], task_id='amqp-fine', queue='\(queue)')",
            broker: rabbit.url,
            backend: redis.url(db: 1)
        )
        #expect(eventually(timeout: 30) { Self.status(redis, "amqp-fine") == "SUCCESS" }, "\(second.log.suffix(2000))")
        #expect(Self.status(redis, "amqp-later") == "REVOKED", "\(first.log.suffix(1500))\n\(second.log.suffix(3000))")
        #expect(Self.meta(redis, "amqp-later")?["result"]?["exc_type"] == "TaskRevokedError")
    }

    /// On RabbitMQ too, a revoke reaches a worker started after every other one stopped: the broker keeps it.
    @Test func onRabbitMQASwiftqdStartedAfterARevokeFindsItInTheBroker() throws {
        let rabbit = try RabbitMQNode.shared()
        let redis = try RedisServer()
        let queue = uniqueQueueName()
        let id = "amqp-offline-\(queue)"
        do {
            let first = try RabbitMQInteropTests.daemon(
                broker: rabbit.url,
                backend: redis.url(db: 1),
                queue: queue + "-first",
                concurrency: 1,
                workerYAML: "  hostname: first-\(queue)@test\n"
            )
            #expect(try first.ctl(["revoke", id]).status == 0)
            first.signal(SIGTERM)
            #expect(first.waitForExit() == 0)
        }
        // No live peer to mingle with, and no state file: only the broker remembers.
        let second = try RabbitMQInteropTests.daemon(
            broker: rabbit.url,
            backend: redis.url(db: 1),
            queue: queue,
            concurrency: 1,
            workerYAML: "  hostname: second-\(queue)@test\n"
        )
        #expect(eventually(timeout: 10) { second.log.contains("revokes from the broker's revoke list") })
        try CeleryControl.python(
            "from control_tasks import app\n"
                + "app.send_task('swiftq.add', args=[1, 1], task_id='\(id)', queue='\(queue)')\n"
                + "app.send_task('swiftq.add', args=[1, 1], task_id='\(id)-ok', queue='\(queue)')",
            broker: rabbit.url,
            backend: redis.url(db: 1)
        )
        #expect(eventually(timeout: 30) { Self.status(redis, id + "-ok") == "SUCCESS" }, "\(second.log.suffix(2000))")
        #expect(Self.status(redis, id) == "REVOKED", "\(second.log.suffix(2000))")
    }

    @Test func onRabbitMQMingleWorksBothWays() throws {
        let rabbit = try RabbitMQNode.shared()
        let queue = uniqueQueueName()
        let python = "py-\(queue)@test"
        let directory = try TemporaryDirectory()
        let worker = try CeleryControl.worker(
            broker: rabbit.url,
            queue: queue + "-py",
            node: python,
            logFile: directory.path + "/python.log"
        )
        defer { worker.stop() }
        #expect(
            eventually(timeout: 90) {
                (try? CeleryControl.cli(rabbit.url, ["inspect", "ping", "-j", "-d", python, "--timeout", "3"]))?[python]
                    != nil
            }
        )
        try CeleryControl.python(
            "from control_tasks import app\napp.control.revoke('amqp-py', destination=['\(python)'], reply=True)",
            broker: rabbit.url
        )
        let swift = "swift-\(queue)@test"
        let daemon = try RabbitMQInteropTests.daemon(
            broker: rabbit.url,
            backend: nil,
            queue: queue,
            concurrency: 1,
            workerYAML: "  hostname: \(swift)\n"
        )
        #expect(eventually(timeout: 10) { daemon.log.contains("revokes from mingle") }, "\(daemon.log.suffix(2000))")
        #expect(try daemon.ctl(["inspect", "revoked"]).stdout.contains("amqp-py"))
        // And the reverse: swiftqd's revoke reaches a Python worker that mingles at its start.
        #expect(try daemon.ctl(["revoke", "amqp-swift"]).status == 0)
        let late = "late-\(queue)@test"
        let second = try CeleryControl.worker(
            broker: rabbit.url,
            queue: queue + "-late",
            node: late,
            mingle: true,
            logFile: directory.path + "/late.log"
        )
        defer { second.stop() }
        #expect(
            eventually(timeout: 90) {
                (try? CeleryControl.cli(rabbit.url, ["inspect", "revoked", "-j", "-d", late, "--timeout", "3"]))?[late]?
                    .arrayValue?.contains("amqp-swift") == true
            }
        )
    }

    @Test func autoscaleGrowsUnderABacklogAndShrinksWhenIdle() throws {
        let redis = try RedisServer()
        let daemon = try RedisInteropTests.daemon(broker: redis, concurrency: 1, prefetch: 4)
        let consumer = try #require(try daemon.consumerPID())
        #expect(eventually(timeout: 20) { CeleryControl.children(of: consumer).count == 1 })
        let set = try daemon.ctl(["autoscale", "4", "1"])
        #expect(set.stdout.contains("autoscale now max=4 min=1"), "\(set.stdout) \(set.stderr)")
        #expect(try daemon.ctl(["pool", "grow", "1"]).status == 1, "pool grow is refused with autoscale")
        try Self.send(redis, (0..<8).map { ("scale-\($0)", "swiftq.sleep", [2], nil) })
        #expect(
            eventually(timeout: 30) { CeleryControl.children(of: consumer).count == 4 },
            "children: \(CeleryControl.children(of: consumer).count); \(daemon.log.suffix(1500))"
        )
        #expect(eventually(timeout: 60) { (0..<8).allSatisfy { Self.status(redis, "scale-\($0)") == "SUCCESS" } })
        #expect(
            eventually(timeout: 30) { CeleryControl.children(of: consumer).count == 1 },
            "the pool did not shrink when idle: \(CeleryControl.children(of: consumer).count)"
        )
    }
}
