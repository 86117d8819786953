import Foundation
import SwiftqCore
import Testing

/// Longer Redis scenarios: sharing queues with Python workers, exec and Swift tasks, the client commands,
/// the embedded broker, and a broker restart under load.
@Suite(.serialized) struct RedisWorkloadTests {
    static func trimmed(_ text: String) -> String { text.trimmingCharacters(in: .whitespacesAndNewlines) }

    @Test func aPythonWorkerAndSwiftqdShareAQueueAndEveryTaskRunsOnce() throws {
        let redis = try RedisServer()
        let daemon = try RedisInteropTests.daemon(broker: redis, concurrency: 2, prefetch: 1)
        let python = try Python.sharedTasksWorker(
            broker: redis.url,
            backend: redis.url(db: 1),
            ledger: redis.url,
            queue: "celery"
        )
        defer { python.stop() }
        // Both workers consume before the first task is sent: otherwise swiftqd, up first, may drain all 300
        // before the Python worker has started (its start takes seconds on a loaded machine).
        #expect(
            eventually(timeout: 60) { ((try? redis.cli(["GET", "ready:python"])) ?? "").contains("1") },
            "the Python worker never became ready"
        )
        #expect(
            eventually(timeout: 60) {
                (try? daemon.stats())?["broker"]?["connections"]?["fetch"]?["connected"]?.boolValue == true
            },
            "swiftqd's fetcher never connected\n\(daemon.log.suffix(3000))"
        )
        let count = 300
        let results = try Python.celeryClient(
            RedisInteropTests.request(
                redis,
                calls: (0..<count).map { ["task": "swiftq.add", "args": [.int(Int64($0)), 1]] },
                timeout: 60
            ),
            timeout: 120
        )
        #expect(results.count == count)
        for (index, result) in results.enumerated() { #expect(result["result"] == .int(Int64(index + 1))) }
        let byPython = try redis.cli(["LRANGE", "executed:python", "0", "-1"]).split(separator: "\n").map(String.init)
        #expect(Set(byPython).count == byPython.count, "a task ran twice in the Python worker")
        let bySwiftqd = try #require(
            try daemon.stats()["tasks"]?["by_name"]?["swiftq.add"]?["succeeded"]?.intValue,
            "swiftqd ran none of the tasks\n\(daemon.log.suffix(3000))"
        )
        #expect(Int(bySwiftqd) + byPython.count == count, "swiftqd \(bySwiftqd) + python \(byPython.count) != \(count)")
        #expect(
            bySwiftqd > 0 && !byPython.isEmpty,
            "one worker got no work: swiftqd \(bySwiftqd), python \(byPython.count)"
        )
    }

    @Test func execTasksRunProgramsAndReportTheirFailures() throws {
        let redis = try RedisServer()
        let script = Python.scripts + "/exec_task.py"
        let daemon = try RedisInteropTests.daemon(
            broker: redis,
            extraYAML: """
                tasks:
                  reports.sum:
                    exec: [\(Python.interpreter), \(script), sum]
                  reports.fail:
                    exec: [\(Python.interpreter), \(script), fail]
                  reports.garbage:
                    exec: [\(Python.interpreter), \(script), garbage]
                  reports.slow:
                    exec: [\(Python.interpreter), \(script), sleep]
                    timeout: 1s

                """
        )
        let results = try Python.celeryClient(
            RedisInteropTests.request(
                redis,
                calls: [
                    [
                        "task": "reports.sum", "args": [1, 2, 3], "kwargs": ["note": "ü"],
                        "options": ["priority": 3, "app_id": "1234"],
                    ],
                    ["task": "reports.fail"],
                    ["task": "reports.garbage"],
                    ["task": "reports.slow", "args": [30]],
                ],
                timeout: 30
            )
        )
        let sum = results[0]["result"]
        #expect(sum?["sum"] == 6)
        #expect(sum?["id"] == results[0]["id"])
        #expect(sum?["env_id"] == results[0]["id"])
        #expect(sum?["kwargs"] == ["note": "ü"])
        // The request context on stdin: a client's task is its own root; this worker's node name; the queue.
        #expect(sum?["retries"] == 0)
        #expect(sum?["request"]?["root_id"] == results[0]["id"], "\(String(describing: sum))")
        #expect(sum?["request"]?["parent_id"] == .null)
        #expect(sum?["request"]?["hostname"]?.stringValue?.contains("@") == true)
        #expect(sum?["request"]?["delivery_info"]?["queue"] == "celery")
        // Celery's delivery_info and properties: as the client published it (default exchange, priority 3, app_id).
        #expect(sum?["request"]?["delivery_info"]?["exchange"] == "")
        #expect(sum?["request"]?["delivery_info"]?["routing_key"] == "celery")
        #expect(sum?["request"]?["delivery_info"]?["priority"] == 3)
        #expect(sum?["request"]?["properties"]?["app_id"] == "1234")
        #expect(sum?["request"]?["properties"]?["priority"] == 3)
        #expect(results[1]["exception"]?["type"] == "ExecTaskFailed")
        #expect(results[1]["exception"]?["message"]?.stringValue?.contains("exited with code 3") == true)
        #expect(results[1]["exception"]?["message"]?.stringValue?.contains("cannot frobnicate") == true)
        #expect(results[2]["exception"]?["message"]?.stringValue?.contains("not JSON") == true)
        #expect(results[3]["exception"]?["type"] == "TimeLimitExceeded")
        // The stored traceback is the program's stderr.
        let failedID = try #require(results[1]["id"]?.stringValue)
        let meta = try JSONValue(parsing: try redis.cli(["-n", "1", "GET", "celery-task-meta-\(failedID)"]))
        #expect(meta["traceback"]?.stringValue?.contains("ValueError: cannot frobnicate") == true)
        #expect(try daemon.ctl(["ping"]).status == 0)
    }

    /// An exec task's program runs in a process group of its own, so a kill of its pool child alone would
    /// not reach it: it must still never outlive the worker.
    @Test func anExecTaskProgramDiesWithAColdShutdown() throws {
        let redis = try RedisServer()
        let marker = UUID().uuidString
        let script = Python.scripts + "/exec_task.py"
        let daemon = try RedisInteropTests.daemon(
            broker: redis,
            extraYAML: "tasks:\n  reports.slow:\n    exec: [\(Python.interpreter), \(script), sleep, \(marker)]\n"
        )
        var request = RedisInteropTests.request(redis, calls: [["task": "reports.slow", "args": [60]]])
        if case .object(var object) = request {
            object["wait"] = false
            request = .object(object)
        }
        _ = try Python.celeryClient(request)
        func programs() -> [Int32] {
            ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { entry in
                guard let pid = Int32(entry),
                    let cmdline = try? String(contentsOfFile: "/proc/\(entry)/cmdline", encoding: .utf8),
                    cmdline.contains(marker), cmdline.contains("exec_task.py"), !cmdline.contains("_exec")
                else { return nil }
                return processHasEnded(pid) ? nil : pid
            }
        }
        #expect(eventually(timeout: 10) { !programs().isEmpty })
        daemon.signal(SIGQUIT)
        #expect(daemon.waitForExit(timeout: 10) == 0)
        #expect(eventually(timeout: 3) { programs().isEmpty }, "the exec task's program outlived the worker")
    }

    @Test func aUsersOwnBinaryRunsTypedSwiftTasks() throws {
        let redis = try RedisServer()
        // Keep the daemon referenced: releasing it kills the worker.
        let daemon = try RedisInteropTests.daemon(broker: redis, binary: Binaries.exampleWorker)
        let results = try Python.celeryClient(
            RedisInteropTests.request(
                redis,
                calls: [
                    ["task": "example.multiply", "args": [6, 7]],
                    ["task": "example.greet", "args": ["Ada"]],
                    [
                        "task": "example.invoice",
                        "kwargs": ["items": [["name": "tea", "price": 3.5, "quantity": 2]], "currency": "EUR"],
                    ],
                    ["task": "example.invoice", "kwargs": ["items": [], "currency": "EUR"]],
                    ["task": "example.multiply", "args": [6, "seven"]],
                    ["task": "swiftq.add", "args": [1, 2]],
                ]
            )
        )
        #expect(results[0]["result"] == 42)
        #expect(results[1]["result"] == "Hello, Ada!")
        #expect(results[2]["result"]?["total"] == 7.0)
        #expect(results[2]["result"]?["lines"] == ["2 × tea @ 3.5"])
        #expect(results[3]["exception"]?["type"] == "EmptyOrder")
        #expect(results[3]["exception"]?["message"] == "an invoice needs at least one item")
        #expect(results[4]["exception"]?["type"] == "TypeError")
        #expect(results[4]["exception"]?["message"]?.stringValue?.contains("argument 2") == true)
        #expect(results[5]["result"] == 3)
        #expect(try daemon.stats()["tasks"]?["by_name"]?["example.multiply"]?["succeeded"] == 1)
    }

    @Test func swiftqctlCallSendsTasksAndReadsResults() throws {
        let redis = try RedisServer()
        let daemon = try RedisInteropTests.daemon(broker: redis)
        let sum = try runCommand(
            Binaries.swiftqctl,
            ["call", "swiftq.add", "2", "3", "--wait", "--config", daemon.configPath]
        )
        #expect(sum.status == 0, "\(sum.stderr)")
        #expect(Self.trimmed(sum.stdout) == "5")
        let echo = try runCommand(
            Binaries.swiftqctl,
            [
                "call", "swiftq.echo", "--kwargs", #"{"value": {"a": [1, "b"]}}"#, "--wait", "--config",
                daemon.configPath,
            ]
        )
        #expect(Self.trimmed(echo.stdout) == #"{"a":[1,"b"]}"#)
        let failed = try runCommand(
            Binaries.swiftqctl,
            ["call", "swiftq.fail", "nope", "--wait", "--config", daemon.configPath]
        )
        #expect(failed.status == 1)
        #expect(failed.stderr.contains("RuntimeError: nope"))
        let sent = try runCommand(Binaries.swiftqctl, ["call", "swiftq.ping", "--config", daemon.configPath])
        let id = Self.trimmed(sent.stdout)
        #expect(UUID(uuidString: id) != nil, "\(sent.stdout)")
        #expect(
            eventually {
                let result = try? runCommand(Binaries.swiftqctl, ["result", id, "--config", daemon.configPath])
                return result?.stdout.hasPrefix("SUCCESS  \"pong\"") == true
            }
        )
        let pending = try runCommand(
            Binaries.swiftqctl,
            ["result", "00000000-0000-0000-0000-000000000000", "--config", daemon.configPath]
        )
        #expect(Self.trimmed(pending.stdout) == "PENDING")
        // A Python client reads what swiftqctl sent: the envelope is Python's.
        let viaPython = try Python.celeryClient(
            RedisInteropTests.request(redis, calls: [["task": "swiftq.add", "args": [40, 2]]])
        )
        #expect(viaPython.first?["result"] == 42)
        let unreachable = try runCommand(
            Binaries.swiftqctl,
            ["call", "swiftq.ping", "--broker", "redis://127.0.0.1:1/0"]
        )
        #expect(unreachable.status == 69)
    }

    @Test func statsShowTheBrokerQueuesAndPerTaskFigures() throws {
        let redis = try RedisServer(extraArguments: ["--requirepass", "s3cret"])
        let url = "redis://:s3cret@127.0.0.1:\(redis.port)/0"
        let daemon = try Daemon(
            concurrency: 2,
            extraYAML: "broker:\n  url: \(url)\nresult_backend:\n  url: redis://:s3cret@127.0.0.1:\(redis.port)/1\n",
            workerYAML: "  prefetch_multiplier: 3\n  queues: [celery, other]\n"
        )
        _ = try runCommand(
            Binaries.swiftqctl,
            ["call", "swiftq.add", "1", "1", "--wait", "--config", daemon.configPath]
        )
        _ = try runCommand(Binaries.swiftqctl, ["call", "swiftq.fail", "x", "--wait", "--config", daemon.configPath])
        let stats = try daemon.stats()
        #expect(stats["broker"]?["url"]?.stringValue?.contains("s3cret") == false)
        #expect(stats["broker"]?["url"]?.stringValue?.contains("***") == true)
        #expect(stats["broker"]?["connected"] == true)
        #expect(stats["queues"] == ["celery", "other"])
        #expect(stats["prefetch"] == 6)
        #expect(stats["tasks"]?["by_name"]?["swiftq.add"]?["succeeded"] == 1)
        #expect(stats["tasks"]?["by_name"]?["swiftq.fail"]?["failed"] == 1)
        #expect(stats["tasks"]?["by_name"]?["swiftq.add"]?["runtime_p50"]?.doubleValue != nil)
        #expect(stats["tasks"]?["reserved"] == 0)
        #expect(stats["tasks"]?["active"] == 0)
        #expect(stats["status"]?.stringValue?.contains("broker connected") == true)
        let table = try daemon.ctl(["stats"])
        #expect(table.stdout.contains("broker"))
        #expect(!table.stdout.contains("s3cret"))
    }

    @Test func theEmbeddedBrokerRunsTasksWithNothingInstalledByHand() throws {
        let daemon = try Daemon(
            concurrency: 1,
            extraYAML: "broker:\n  url: embedded\nresult_backend:\n  url: embedded\n"
        )
        // The control socket answers before the later bootsteps (the embedded broker among them) have started,
        // as it must for `stats` during startup; READY=1 comes after them. Wait for what READY would say.
        #expect(eventually(timeout: 30) { (try? daemon.stats())?["broker"]?["connected"] == true })
        let sum = try runCommand(
            Binaries.swiftqctl,
            ["call", "swiftq.add", "2", "3", "--wait", "--config", daemon.configPath]
        )
        #expect(sum.status == 0, "\(sum.stderr)\n\(daemon.log)")
        #expect(Self.trimmed(sum.stdout) == "5")
        let stats = try daemon.stats()
        let broker = try #require(stats["children"]?.arrayValue?.first { $0["role"] == "broker" })
        let brokerPID = Int32(try #require(broker["pid"]?.intValue))
        #expect(!processHasEnded(brokerPID))
        // The embedded redis-server never outlives the supervisor.
        daemon.signal(SIGKILL)
        #expect(eventually(timeout: 3) { processHasEnded(brokerPID) })
    }

    @Test func theEmbeddedBrokerIsRespawnedWhenItDies() throws {
        let daemon = try Daemon(
            concurrency: 1,
            extraYAML: "broker:\n  url: embedded\nresult_backend:\n  url: embedded\n"
        )
        let broker = try #require(try daemon.stats()["children"]?.arrayValue?.first { $0["role"] == "broker" })
        kill(Int32(try #require(broker["pid"]?.intValue)), SIGKILL)
        #expect(
            eventually(timeout: 15) {
                let result = try? runCommand(
                    Binaries.swiftqctl,
                    ["call", "swiftq.add", "1", "2", "--wait", "--timeout", "2", "--config", daemon.configPath]
                )
                return result.map { Self.trimmed($0.stdout) == "3" } ?? false
            },
            "\(daemon.log)"
        )
    }

    /// The broker restarts in the middle of a run (with `appendonly yes` and `appendfsync always`, so Redis
    /// itself keeps what it acknowledged; results go to a second server that stays up): every task ends
    /// with exactly one SUCCESS result and the worker resumes by itself.
    @Test func aBrokerRestartMidRunLosesAndDuplicatesNothing() throws {
        let broker = try RedisServer(extraArguments: ["--appendonly", "yes", "--appendfsync", "always"])
        let backend = try RedisServer()
        let count = 2000
        var request = RedisInteropTests.request(
            broker,
            backend: backend,
            calls: (0..<count).map { ["task": "swiftq.add", "args": [.int(Int64($0)), 0]] }
        )
        if case .object(var object) = request {
            object["wait"] = false
            request = .object(object)
        }
        let sent = try Python.celeryClient(request, timeout: 300)
        #expect(sent.count == count)
        let daemon = try RedisInteropTests.daemon(broker: broker, backend: backend, concurrency: 2, prefetch: 8)
        #expect(eventually(timeout: 60) { (try? daemon.stats())?["tasks"]?["completed"]?.intValue ?? 0 >= 300 })
        broker.stop()
        usleep(1_500_000)
        try broker.start()
        #expect(
            eventually(timeout: 240) {
                Int(Self.trimmed((try? backend.cli(["-n", "1", "DBSIZE"])) ?? "0")) == count
            },
            "results stored: \((try? backend.cli(["-n", "1", "DBSIZE"])) ?? "?")"
        )
        for (index, entry) in sent.enumerated() where index % 97 == 0 || index == count - 1 {
            let id = try #require(entry["id"]?.stringValue)
            let meta = try JSONValue(parsing: try backend.cli(["-n", "1", "GET", "celery-task-meta-\(id)"]))
            #expect(meta["status"] == "SUCCESS")
            #expect(meta["result"] == .int(Int64(index)))
        }
        #expect(Self.trimmed(try broker.cli(["LLEN", "celery"])) == "0")
        #expect(eventually { Self.trimmed((try? broker.cli(["HLEN", "unacked"])) ?? "") == "0" })
        #expect(daemon.log.contains("broker unreachable"))
        let stats = try daemon.stats()
        #expect(stats["broker"]?["connected"] == true)
        // Each task ran once: as many executions as tasks (a stored SUCCESS is never overwritten, so the
        // result count alone could hide a second run).
        #expect(stats["tasks"]?["by_name"]?["swiftq.add"]?["succeeded"]?.intValue == Int64(count))
    }
}
