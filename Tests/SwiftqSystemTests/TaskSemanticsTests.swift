import Foundation
import SwiftqCore
import Testing

/// Retries, time limits, rate limits, acknowledgement and child limits, against a real redis-server, real pool
/// children and a stock Python Celery client.
@Suite(.serialized) struct TaskSemanticsTests {
    static var execScript: String { Python.scripts + "/exec_task.py" }

    /// Lines of a file (the runs an exec task recorded).
    static func lines(_ path: String) -> [String] {
        ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    /// A client request that also records the states the backend shows while the client waits.
    static func tracking(_ request: JSONValue) -> JSONValue {
        var fields = request.objectValue ?? [:]
        fields["track_states"] = true
        return .object(fields)
    }

    // MARK: Retries

    @Test func anExecTaskThatExits75TwiceSucceedsOnItsThirdRunAndTheBackendShowedRetry() throws {
        let redis = try RedisServer()
        let runs = try TemporaryDirectory()
        let daemon = try RedisInteropTests.daemon(
            broker: redis,
            extraYAML: """
                tasks:
                  exec.flaky:
                    exec: [\(Python.interpreter), \(Self.execScript), flaky, \(runs.path), "2"]

                """
        )
        let results = try Python.celeryClient(
            Self.tracking(RedisInteropTests.request(redis, calls: [["task": "exec.flaky", "args": []]], timeout: 30))
        )
        #expect(results.first?["state"] == "SUCCESS")
        #expect(results.first?["result"] == ["runs": 3])
        #expect(results.first?["states"]?.arrayValue?.contains("RETRY") == true, "\(results)")
        let id = try #require(results.first?["id"]?.stringValue)
        #expect(Self.lines(runs.path + "/" + id).count == 3)
        let stats = try daemon.stats()
        #expect(stats["tasks"]?["retried"] == 2)
        #expect(stats["tasks"]?["succeeded"] == 1)
        #expect(try redis.cli(["HLEN", "unacked"]).trimmingCharacters(in: .whitespacesAndNewlines) == "0")
    }

    @Test func maxRetriesOneEndsInFailureWithTheCauseAfterTwoRuns() throws {
        let redis = try RedisServer()
        let runs = try TemporaryDirectory()
        let daemon = try RedisInteropTests.daemon(
            broker: redis,
            extraYAML: """
                tasks:
                  exec.down:
                    exec: [\(Python.interpreter), \(Self.execScript), flaky, \(runs.path), "100"]
                    max_retries: 1

                """
        )
        let results = try Python.celeryClient(
            RedisInteropTests.request(redis, calls: [["task": "exec.down", "args": []]], timeout: 30)
        )
        #expect(results.first?["state"] == "FAILURE")
        #expect(results.first?["exception"]?["type"] == "ExecTaskFailed")
        #expect(results.first?["exception"]?["message"] == "not yet (run 2)")
        let id = try #require(results.first?["id"]?.stringValue)
        // Nothing runs a third time, even later.
        Thread.sleep(forTimeInterval: 1.5)
        #expect(Self.lines(runs.path + "/" + id).count == 2)
        #expect(try daemon.stats()["tasks"]?["retried"] == 1)
    }

    @Test func aSwiftTaskRetriesWithItsCountdown() throws {
        let redis = try RedisServer()
        let daemon = try RedisInteropTests.daemon(broker: redis, binary: Binaries.exampleWorker)
        let started = Date()
        let results: [JSONValue]
        do {
            results = try Python.celeryClient(
                Self.tracking(
                    RedisInteropTests.request(redis, calls: [["task": "example.flaky", "args": []]], timeout: 20)
                )
            )
        } catch {
            Issue.record("\(error)\nlog:\n\(daemon.log)")
            return
        }
        let elapsed = Date().timeIntervalSince(started)
        #expect(results.first?["state"] == "SUCCESS")
        #expect(results.first?["result"] == "succeeded after 2 retries")
        #expect(results.first?["states"]?.arrayValue?.contains("RETRY") == true, "\(results)")
        #expect(elapsed >= 2, "two retries with countdown=1 took \(elapsed)s")
        // The stored result names the task as its own parent, as Celery's retries do.
        let id = try #require(results.first?["id"]?.stringValue)
        let meta = try JSONValue(
            parsing: try redis.cli(["-n", "1", "GET", "celery-task-meta-\(id)"]).trimmingCharacters(
                in: .whitespacesAndNewlines
            )
        )
        #expect(meta["parent_id"]?.stringValue == id)
    }

    @Test func swiftTasksRejectAndIgnoreAsCeleryTasksDo() throws {
        let redis = try RedisServer()
        let daemon = try RedisInteropTests.daemon(broker: redis, binary: Binaries.exampleWorker)
        let refused = try Python.celeryClient(
            RedisInteropTests.request(redis, calls: [["task": "example.refuse", "args": ["not today"]]])
        )
        #expect(refused.first?["state"] == "FAILURE")
        #expect(refused.first?["exception"]?["type"] == "Reject", "\(refused)")
        let skipped = try Python.celeryClient(
            [
                "broker": .string(redis.url), "backend": .string(redis.url(db: 1)), "wait": false,
                "calls": [["task": "example.skip", "args": []]],
            ]
        )
        let id = try #require(skipped.first?["id"]?.stringValue)
        #expect(
            eventually { Self.count(redis, ["LLEN", "celery"]) == 0 && Self.count(redis, ["HLEN", "unacked"]) == 0 }
        )
        Thread.sleep(forTimeInterval: 0.5)
        let meta = try redis.cli(["-n", "1", "EXISTS", "celery-task-meta-\(id)"])
        #expect(meta.trimmingCharacters(in: .whitespacesAndNewlines) == "0", "Ignore stores nothing")
        #expect(try daemon.stats()["tasks"]?["rejected"]?["task_rejected"] == 1)
    }

    // MARK: Time limits

    @Test func aHardLimitFromTheHeaderEndsSleepTenWithinThreeSecondsAndTheNextTaskRuns() throws {
        let redis = try RedisServer()
        let daemon = try RedisInteropTests.daemon(broker: redis, concurrency: 1, prefetch: 1)
        let results = try Python.celeryClient(
            Self.withDates(
                RedisInteropTests.request(
                    redis,
                    calls: [["task": "swiftq.sleep", "args": [10], "options": ["time_limit": 1]]],
                    timeout: 20
                )
            )
        )
        let line = try #require(results.first)
        #expect(line["exception"]?["type"] == "TimeLimitExceeded", "\(results)")
        // From sending to the stored failure, on the backend's clock (not the Python client's start-up).
        let elapsed = try #require(Self.seconds(line, "date_done")) - (try #require(Self.seconds(line, "sent_at")))
        #expect(elapsed < 3, "took \(elapsed)s")
        let next = try Python.celeryClient(
            RedisInteropTests.request(redis, calls: [["task": "swiftq.add", "args": [20, 22]]])
        )
        #expect(next.first?["result"] == 42)
        withExtendedLifetime(daemon) {}
    }

    @Test func softLimitsTellTheBuiltInTheAsyncSwiftTaskAndTheExecProgram() throws {
        let redis = try RedisServer()
        let marks = try TemporaryDirectory()
        let daemon = try RedisInteropTests.daemon(
            broker: redis,
            concurrency: 3,
            extraYAML: """
                tasks:
                  exec.soft:
                    exec: [\(Python.interpreter), \(Self.execScript), soft, \(marks.path)]

                """,
            binary: Binaries.exampleWorker
        )
        let started = Date()
        let results = try Python.celeryClient(
            RedisInteropTests.request(
                redis,
                calls: [
                    ["task": "swiftq.sleep", "args": [10], "options": ["soft_time_limit": 1, "time_limit": 8]],
                    ["task": "example.patient", "args": [10], "options": ["soft_time_limit": 1]],
                    ["task": "exec.soft", "args": [10], "options": ["soft_time_limit": 1, "time_limit": 8]],
                ],
                timeout: 20
            )
        )
        let elapsed = Date().timeIntervalSince(started)
        #expect(results.count == 3)
        #expect(results[0]["exception"]?["type"] == "SoftTimeLimitExceeded", "\(results)")
        #expect(results[0]["exception"]?["module"] == "billiard.exceptions")
        #expect(results[1]["result"] == "cleaned up after the soft time limit", "\(results)")
        #expect(results[2]["exception"]?["type"] == "SoftTimeLimitExceeded", "\(results)")
        let id = try #require(results[2]["id"]?.stringValue)
        #expect(Self.lines(marks.path + "/" + id) == ["cleaned up after signal 15"])
        #expect(elapsed < 5, "took \(elapsed)s: the soft limits did not stop the tasks")
        // The children stayed (a soft limit does not kill).
        let stats = try daemon.stats()
        #expect(stats["tasks"]?["time_limited"] == 0)
        #expect(stats["children"]?.arrayValue?.allSatisfy { $0["restarts"] == 0 || $0["role"] != "pool" } == true)
    }

    @Test func configuredLimitsApplyWhenTheMessageHasNone() throws {
        let redis = try RedisServer()
        let daemon = try RedisInteropTests.daemon(
            broker: redis,
            concurrency: 3,
            extraYAML: """
                tasks:
                  defaults:
                    time_limit: 1s
                  swiftq.sleep:
                    soft_time_limit: 500ms
                    time_limit: 4s
                  exec.slow:
                    exec: [\(Python.interpreter), \(Self.execScript), sleep]

                """
        )
        let results = try Python.celeryClient(
            Self.withDates(
                RedisInteropTests.request(
                    redis,
                    calls: [
                        ["task": "swiftq.sleep", "args": [10]],
                        ["task": "swiftq.sleep", "args": [10], "options": ["soft_time_limit": 30]],
                        ["task": "exec.slow", "args": [10]],
                    ],
                    timeout: 20
                )
            )
        )
        try #require(results.count == 3)
        // How long each took from sending to its stored failure, on the backend's clock.
        let took = results.map { line in
            (Self.seconds(line, "date_done") ?? .infinity) - (Self.seconds(line, "sent_at") ?? 0)
        }
        // The task's soft limit.
        #expect(results[0]["exception"]?["type"] == "SoftTimeLimitExceeded", "\(results)")
        #expect(took[0] < 3, "\(took)")
        // The header's soft limit (30 s) wins; the task's hard limit (4 s) ends it.
        #expect(results[1]["exception"]?["type"] == "TimeLimitExceeded", "\(results)")
        #expect(results[1]["exception"]?["args"] == ["4"], "\(results)")
        #expect(took[1] >= 4 && took[1] < 7, "\(took)")
        // tasks.defaults' hard limit, for a task without settings of its own.
        #expect(results[2]["exception"]?["type"] == "TimeLimitExceeded", "\(results)")
        #expect(results[2]["exception"]?["args"] == ["1"], "\(results)")
        #expect(took[2] >= 1 && took[2] < 4, "\(took)")
        withExtendedLifetime(daemon) {}
    }

    @Test func twentyHardLimitKillsInAMinuteAreNoCrashLoop() throws {
        let redis = try RedisServer()
        let daemon = try RedisInteropTests.daemon(broker: redis, concurrency: 2, prefetch: 1)
        let calls: [JSONValue] = (0..<20).map { _ in
            ["task": "swiftq.sleep", "args": [5], "options": ["time_limit": 0.3]]
        }
        let results = try Python.celeryClient(RedisInteropTests.request(redis, calls: calls, timeout: 40), timeout: 90)
        #expect(results.count == 20)
        #expect(results.allSatisfy { $0["exception"]?["type"] == "TimeLimitExceeded" }, "\(results)")
        let after = try Python.celeryClient(RedisInteropTests.request(redis, calls: [["task": "swiftq.ping"]]))
        #expect(after.first?["result"] == "pong")
        let stats = try daemon.stats()
        #expect(stats["tasks"]?["time_limited"] == 20)
        let pool = stats["children"]?.arrayValue?.filter { $0["role"] == "pool" } ?? []
        #expect(pool.count == 2)
        for child in pool {
            #expect(child["crash_loop"] == false)
            #expect(child["restarts"] == 0, "a time-limit kill counted as a crash: \(child)")
        }
        #expect(!daemon.log.contains("crash-looping"))
    }

    // MARK: Rate limits

    @Test func tenPerSecondOnOneNameDoesNotHoldUpAnother() throws {
        let redis = try RedisServer()
        let daemon = try RedisInteropTests.daemon(
            broker: redis,
            extraYAML: """
                tasks:
                  swiftq.add:
                    rate_limit: 10/s

                """
        )
        let calls: [JSONValue] =
            (0..<30).map { ["task": "swiftq.add", "args": [.int(Int64($0)), 1]] }
            + (0..<100).map { ["task": "swiftq.echo", "args": [.int(Int64($0))]] }
        var request = RedisInteropTests.request(redis, calls: calls, timeout: 30).objectValue ?? [:]
        request["date_done"] = true
        let results = try Python.celeryClient(.object(request), timeout: 90)
        try #require(results.count == 130)
        let done = results.map { $0["date_done"]?.stringValue.flatMap(CeleryTimestamp.init(iso8601:)) }
        try #require(done.allSatisfy { $0 != nil }, "\(results.prefix(3))")
        let adds = done[0..<30].map { $0!.secondsSince1970 }
        let echoes = done[30...].map { $0!.secondsSince1970 }
        let addSpan = adds.max()! - adds.min()!
        #expect(addSpan >= 2, "30 tasks at 10/s took \(addSpan)s")
        let echoesDone = echoes.max()! - adds.min()!
        #expect(echoesDone < 3, "100 tasks of another name finished \(echoesDone)s after the first limited one")
        #expect(echoes.max()! < adds.max()!, "the other name waited behind the limited one")
        withExtendedLifetime(daemon) {}
    }

    // MARK: Acknowledgement and lost workers

    /// The stored meta of `id` once it is ready (SUCCESS or FAILURE), polled from the backend.
    static func finalMeta(_ redis: RedisServer, _ id: String, timeout: Double = 20) -> JSONValue? {
        var meta: JSONValue?
        _ = eventually(timeout: timeout) {
            let text = (try? redis.cli(["-n", "1", "GET", "celery-task-meta-\(id)"])) ?? ""
            meta = try? JSONValue(parsing: text.trimmingCharacters(in: .whitespacesAndNewlines))
            let status = meta?["status"]?.stringValue
            return status == "SUCCESS" || status == "FAILURE"
        }
        return meta
    }

    /// Sends one `exec.slow` task, waits until a pool child runs it, `kill -9`s that child and returns the task id.
    static func killBusyChild(_ daemon: Daemon, _ redis: RedisServer) throws -> String {
        let sent = try Python.celeryClient(
            [
                "broker": .string(redis.url), "backend": .string(redis.url(db: 1)), "wait": false,
                "calls": [["task": "exec.slow", "args": []]],
            ]
        )
        let id = try #require(sent.first?["id"]?.stringValue)
        var busy: Int32?
        #expect(
            eventually(timeout: 15) {
                let children = (try? daemon.stats())?["children"]?.arrayValue ?? []
                busy = children.first { $0["task_id"]?.stringValue == id }?["pid"]?.intValue.map { Int32($0) }
                return busy != nil
            }
        )
        let pid = try #require(busy)
        Thread.sleep(forTimeInterval: 0.3)
        kill(pid, SIGKILL)
        return id
    }

    static func slowTaskDaemon(_ redis: RedisServer, runs: TemporaryDirectory, settings: String) throws -> Daemon {
        try RedisInteropTests.daemon(
            broker: redis,
            extraYAML: """
                tasks:
                  exec.slow:
                    exec: [\(Python.interpreter), \(Self.execScript), slowcount, \(runs.path), "1.5"]
                \(settings)

                """
        )
    }

    @Test func aLateAckedTaskWhoseChildIsKilledRunsAgainWithRejectOnWorkerLost() throws {
        let redis = try RedisServer()
        let runs = try TemporaryDirectory()
        let daemon = try Self.slowTaskDaemon(
            redis,
            runs: runs,
            settings: "    acks_late: true\n    reject_on_worker_lost: true"
        )
        let id = try Self.killBusyChild(daemon, redis)
        let meta = try #require(Self.finalMeta(redis, id))
        #expect(meta["status"] == "SUCCESS", "\(meta)")
        #expect(meta["result"] == ["runs": 2])
        Thread.sleep(forTimeInterval: 1)
        #expect(Self.lines(runs.path + "/" + id).count == 2, "it ran exactly twice: killed once, then succeeded")
        #expect(try daemon.stats()["tasks"]?["succeeded"] == 1)
    }

    @Test(arguments: ["    acks_late: true\n    reject_on_worker_lost: false", "    acks_late: false"])
    func aKilledChildFailsTheTaskWithWorkerLostErrorNamingTheSignal(settings: String) throws {
        let redis = try RedisServer()
        let runs = try TemporaryDirectory()
        let daemon = try Self.slowTaskDaemon(redis, runs: runs, settings: settings)
        let id = try Self.killBusyChild(daemon, redis)
        let meta = try #require(Self.finalMeta(redis, id))
        #expect(meta["status"] == "FAILURE", "\(meta)")
        #expect(meta["result"]?["exc_type"] == "WorkerLostError")
        #expect(meta["result"]?["exc_module"] == "billiard.exceptions")
        let message = meta["result"]?["exc_message"]?.arrayValue?.first?.stringValue ?? ""
        #expect(message.contains("signal 9 (SIGKILL)"), "\(message)")
        Thread.sleep(forTimeInterval: 2.5)
        #expect(Self.lines(runs.path + "/" + id).count == 1, "not run again")
        #expect(try redis.cli(["HLEN", "unacked"]).trimmingCharacters(in: .whitespacesAndNewlines) == "0")
        #expect(try redis.cli(["LLEN", "celery"]).trimmingCharacters(in: .whitespacesAndNewlines) == "0")
        withExtendedLifetime(daemon) {}
    }

    // MARK: Child limits

    /// Runs `count` pings through the client (waiting for each batch).
    static func ping(_ redis: RedisServer, _ count: Int) throws {
        let calls: [JSONValue] = (0..<count).map { _ in ["task": "swiftq.ping"] }
        let results = try Python.celeryClient(RedisInteropTests.request(redis, calls: calls))
        #expect(results.allSatisfy { $0["result"] == "pong" })
    }

    @Test func maxTasksPerChildReplacesTheChildEveryFiveTasks() throws {
        let redis = try RedisServer()
        let daemon = try RedisInteropTests.daemon(
            broker: redis,
            concurrency: 1,
            prefetch: 1,
            workerYAMLExtra: "  max_tasks_per_child: 5\n"
        )
        #expect(eventually { ((try? daemon.poolPIDs()) ?? [:]).count == 1 })
        var pid = try #require(try daemon.poolPIDs()[0])
        var seen: Set<Int32> = [pid]
        for round in 1...3 {
            try Self.ping(redis, 4)
            #expect(try daemon.poolPIDs()[0] == pid, "replaced before its 5th task in round \(round)")
            try Self.ping(redis, 1)
            #expect(eventually { ((try? daemon.poolPIDs())?[0]).map { $0 != pid } == true }, "round \(round)")
            pid = try #require(try daemon.poolPIDs()[0])
            #expect(!seen.contains(pid))
            seen.insert(pid)
        }
        let slot = try #require(try daemon.stats()["children"]?.arrayValue?.first { $0["role"] == "pool" })
        #expect(slot["exit_reason"] == "max_tasks")
        #expect(slot["replaced"]?["max_tasks"] == 3)
        #expect(slot["restarts"] == 0)
        #expect(slot["tasks_completed"] == 15)
    }

    @Test func maxMemoryPerChildReplacesTheChildAfterTheTaskThatGrewIt() throws {
        let redis = try RedisServer()
        let daemon = try RedisInteropTests.daemon(
            broker: redis,
            concurrency: 1,
            prefetch: 1,
            workerYAMLExtra: "  max_memory_per_child: 100000\n",
            binary: Binaries.exampleWorker
        )
        #expect(eventually { ((try? daemon.poolPIDs()) ?? [:]).count == 1 })
        let before = try #require(try daemon.poolPIDs()[0])
        try Self.ping(redis, 3)
        #expect(try daemon.poolPIDs()[0] == before, "a small child is not replaced")
        let results = try Python.celeryClient(
            RedisInteropTests.request(redis, calls: [["task": "example.hoard", "args": [200]]])
        )
        // The task that grew the child finished: it was not killed during its run.
        #expect(results.first?["result"] == 200, "\(results)")
        #expect(eventually { ((try? daemon.poolPIDs())?[0]).map { $0 != before } == true })
        let slot = try #require(try daemon.stats()["children"]?.arrayValue?.first { $0["role"] == "pool" })
        #expect(slot["exit_reason"] == "max_memory")
        #expect(slot["replaced"]?["max_memory"] == 1)
        #expect(slot["restarts"] == 0)
        try Self.ping(redis, 1)
    }

    // MARK: Countdown and ETA

    static func withDates(_ request: JSONValue) -> JSONValue {
        var fields = request.objectValue ?? [:]
        fields["date_done"] = true
        return .object(fields)
    }

    static func seconds(_ line: JSONValue, _ key: String) -> Double? {
        line[key]?.stringValue.flatMap(CeleryTimestamp.init(iso8601:))?.secondsSince1970
    }

    @Test func countdownTwoRunsBetweenTwoAndThreeSeconds() throws {
        let redis = try RedisServer()
        let daemon = try RedisInteropTests.daemon(broker: redis)
        let results = try Python.celeryClient(
            Self.withDates(
                RedisInteropTests.request(
                    redis,
                    calls: [["task": "swiftq.echo", "args": ["later"], "options": ["countdown": 2]]]
                )
            )
        )
        let line = try #require(results.first)
        #expect(line["result"] == "later")
        let delay = try #require(Self.seconds(line, "date_done")) - (try #require(Self.seconds(line, "sent_at")))
        #expect(delay >= 2 && delay <= 3, "ran \(delay)s after it was sent")
        withExtendedLifetime(daemon) {}
    }

    @Test func twoHundredHeldETATasksDoNotSlowAThousandPlainOnes() throws {
        let redis = try RedisServer()
        let daemon = try RedisInteropTests.daemon(broker: redis, concurrency: 2, prefetch: 4)
        let held: [JSONValue] = (0..<200).map {
            ["task": "swiftq.echo", "args": [.int(Int64($0))], "options": ["countdown": 8]]
        }
        let plain: [JSONValue] = (0..<1000).map { ["task": "swiftq.add", "args": [.int(Int64($0)), 1]] }
        let results = try Python.celeryClient(
            Self.withDates(RedisInteropTests.request(redis, calls: held + plain, timeout: 60)),
            timeout: 180
        )
        try #require(results.count == 1200)
        #expect(results.allSatisfy { $0["state"] == "SUCCESS" })
        let firstSent = try #require(results.compactMap { Self.seconds($0, "sent_at") }.min())
        let plainDone = results[200...].compactMap { Self.seconds($0, "date_done") }
        let heldDone = results[..<200].compactMap { Self.seconds($0, "date_done") }
        try #require(plainDone.count == 1000 && heldDone.count == 200)
        // The plain tasks all finished before the first held one was due: none waited behind the held ones.
        #expect(plainDone.max()! < heldDone.min()!, "plain tasks waited behind held ETA tasks")
        #expect(plainDone.max()! - firstSent < 8, "1,000 plain tasks took \(plainDone.max()! - firstSent)s")
        #expect(heldDone.min()! - firstSent >= 7.5)
        withExtendedLifetime(daemon) {}
    }

    /// kombu restores unacked messages older than the visibility timeout; swiftqd keeps the deadline of a message it
    /// holds for an ETA fresh, so a second worker never takes it while the first holds it.
    @Test func anETATaskDueAfterTheVisibilityTimeoutRunsOnceWithTwoWorkers() throws {
        let redis = try RedisServer()
        func worker(_ name: String) throws -> Daemon {
            try Daemon(
                concurrency: 2,
                extraYAML: """
                    broker:
                      url: \(redis.url)
                      visibility_timeout: 2s
                    result_backend:
                      url: \(redis.url(db: 1))

                    """,
                workerYAML: "  hostname: \(name)@%h\n"
            )
        }
        let first = try worker("first")
        let second = try worker("second")
        let results = try Python.celeryClient(
            RedisInteropTests.request(
                redis,
                calls: [["task": "swiftq.echo", "args": ["once"], "options": ["countdown": 5]]],
                timeout: 20
            )
        )
        #expect(results.first?["result"] == "once")
        // Long enough for a restore after the 2 s timeout and a second run to show.
        Thread.sleep(forTimeInterval: 3)
        let runs = try [first, second].map { try $0.stats()["tasks"]?["succeeded"]?.intValue ?? -1 }
        #expect(runs.reduce(0, +) == 1, "runs per worker: \(runs)")
        #expect(try redis.cli(["HLEN", "unacked"]).trimmingCharacters(in: .whitespacesAndNewlines) == "0")
    }

    // MARK: Poison messages

    static func poisonDaemon(_ redis: RedisServer, runs: TemporaryDirectory, name: String) throws -> Daemon {
        try Daemon(
            concurrency: 2,
            extraYAML: """
                broker:
                  url: \(redis.url)
                  visibility_timeout: 2s
                result_backend:
                  url: \(redis.url(db: 1))
                tasks:
                  exec.poison:
                    exec: [\(Python.interpreter), \(Self.execScript), poison, \(runs.path), "2"]
                    acks_late: true
                    reject_on_worker_lost: true

                """,
            workerYAML: "  hostname: \(name)@%h\n  poison_threshold: 3\n"
        )
    }

    static func send(_ redis: RedisServer, _ task: String) throws -> String {
        let sent = try Python.celeryClient(
            [
                "broker": .string(redis.url), "backend": .string(redis.url(db: 1)), "wait": false,
                "calls": [["task": .string(task), "args": []]],
            ]
        )
        return try #require(sent.first?["id"]?.stringValue)
    }

    static func count(_ redis: RedisServer, _ arguments: [String]) -> Int {
        Int(((try? redis.cli(arguments)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
    }

    /// Two kills under one swiftqd, which is then killed outright while the third run is in flight; the next
    /// swiftqd gets the message back (visibility timeout) with its count and dead-letters it at the third kill.
    @Test func aTaskThatAlwaysKillsItsChildIsDeadLetteredAtTheThresholdAcrossARestart() throws {
        let redis = try RedisServer()
        let runs = try TemporaryDirectory()
        var first: Daemon? = try Self.poisonDaemon(redis, runs: runs, name: "first")
        let consumer = try first?.consumerPID()
        let id = try Self.send(redis, "exec.poison")
        let runsFile = runs.path + "/" + id
        #expect(eventually(timeout: 20) { Self.lines(runsFile).count >= 3 }, "runs: \(Self.lines(runsFile))")
        // The third run waits 3 s before it kills: stop this swiftqd outright meanwhile.
        if let pid = first?.pid { kill(pid, SIGKILL) }
        #expect(eventually(timeout: 10) { consumer.map(processHasEnded) ?? true })
        first = nil
        #expect(Self.count(redis, ["LLEN", "celery.dead"]) == 0)

        let second = try Self.poisonDaemon(redis, runs: runs, name: "second")
        #expect(eventually(timeout: 30) { Self.count(redis, ["LLEN", "celery.dead"]) == 1 }, "\(second.log)")
        // Killed twice under the first swiftqd, once under the second: the count survived the restart.
        #expect(Self.lines(runsFile).count == 4, "runs: \(Self.lines(runsFile).count)")
        let meta = try #require(Self.finalMeta(redis, id))
        #expect(meta["status"] == "FAILURE")
        #expect(meta["result"]?["exc_type"] == "WorkerLostError")
        let stats = try second.stats()
        #expect(stats["tasks"]?["dead_lettered"] == 1)
        let pong = try Python.celeryClient(RedisInteropTests.request(redis, calls: [["task": "swiftq.ping"]]))
        #expect(pong.first?["result"] == "pong", "the worker stays healthy")
        #expect(
            (stats["children"]?.arrayValue ?? []).allSatisfy { $0["crash_loop"] != true },
            "three kills are no crash loop"
        )

        // swiftqctl dead list shows it with the reason; requeue puts it back with a clean count; purge drops it.
        let list = try runCommand(Binaries.swiftqctl, ["dead", "list", "--broker", redis.url])
        #expect(list.status == 0, "\(list.stderr)")
        #expect(list.stdout.contains(id) && list.stdout.contains("killed its pool child 3 times"), "\(list.stdout)")
        Thread.sleep(forTimeInterval: 1)
        let requeued = try runCommand(Binaries.swiftqctl, ["dead", "requeue", "--broker", redis.url, "celery"])
        #expect(requeued.stdout.contains("requeued 1 message"), "\(requeued.stdout) \(requeued.stderr)")
        #expect(Self.count(redis, ["LLEN", "celery.dead"]) == 0)
        // It runs again (from a clean count: three more kills) and ends dead again.
        #expect(eventually(timeout: 30) { Self.count(redis, ["LLEN", "celery.dead"]) == 1 })
        #expect(Self.lines(runsFile).count == 7, "runs: \(Self.lines(runsFile).count)")
        let purged = try runCommand(Binaries.swiftqctl, ["dead", "purge", "--broker", redis.url])
        #expect(purged.stdout.contains("purged 1 message"), "\(purged.stdout) \(purged.stderr)")
        #expect(Self.count(redis, ["LLEN", "celery.dead"]) == 0)
    }

    // MARK: RabbitMQ

    @Test func retriesAndPoisonMessagesOnRabbitMQ() throws {
        let node = try RabbitMQNode.shared()
        let redis = try RedisServer()
        let runs = try TemporaryDirectory()
        let queue = uniqueQueueName()
        let daemon = try Daemon(
            concurrency: 2,
            extraYAML: """
                broker:
                  url: \(node.url)
                result_backend:
                  url: \(redis.url(db: 1))
                tasks:
                  exec.flaky:
                    exec: [\(Python.interpreter), \(Self.execScript), flaky, \(runs.path), "2"]
                  exec.poison:
                    exec: [\(Python.interpreter), \(Self.execScript), poison, \(runs.path), "100"]
                    acks_late: true
                    reject_on_worker_lost: true

                """,
            workerYAML: "  queues: [\(queue)]\n  poison_threshold: 2\n"
        )
        let results = try Python.celeryClient(
            Self.tracking(
                RabbitMQInteropTests.request(
                    broker: node.url,
                    backend: redis.url(db: 1),
                    queue: queue,
                    calls: [["task": "exec.flaky", "args": []]],
                    timeout: 30
                )
            )
        )
        #expect(results.first?["result"] == ["runs": 3], "\(results)")
        #expect(results.first?["states"]?.arrayValue?.contains("RETRY") == true, "\(results)")

        let sent = try Python.celeryClient(
            RabbitMQInteropTests.request(
                broker: node.url,
                backend: redis.url(db: 1),
                queue: queue,
                calls: [["task": "exec.poison", "args": []]],
                wait: false
            )
        )
        let id = try #require(sent.first?["id"]?.stringValue)
        // Two kills, then the dead-letter queue (declared by swiftqd as <queue>.dead).
        #expect(eventually(timeout: 30) { (try? node.queueCounts("\(queue).dead"))?.ready == 1 }, "\(daemon.log)")
        #expect(Self.lines(runs.path + "/" + id).count == 2)
        #expect(Self.finalMeta(redis, id)?["result"]?["exc_type"] == "WorkerLostError")
        #expect(eventually { node.isEmpty(queue) })
        #expect(try daemon.stats()["tasks"]?["dead_lettered"] == 1)
        _ = try? node.ctl(["delete_queue", "\(queue).dead"])
    }

    /// `swiftqctl dead list|requeue|purge` on RabbitMQ: list leaves the message in place, requeue moves it back to
    /// its queue with a clean kill count (it is killed twice more and dead-lettered again), purge empties the queue.
    @Test func deadLettersOnRabbitMQAreListedRequeuedAndPurgedBySwiftqctl() throws {
        let node = try RabbitMQNode.shared()
        let redis = try RedisServer()
        let runs = try TemporaryDirectory()
        let queue = uniqueQueueName("dead")
        let dead = "\(queue).dead"
        defer { _ = try? node.ctl(["delete_queue", dead]) }
        let daemon = try Daemon(
            concurrency: 2,
            extraYAML: """
                broker:
                  url: \(node.url)
                result_backend:
                  url: \(redis.url(db: 1))
                tasks:
                  exec.poison:
                    exec: [\(Python.interpreter), \(Self.execScript), poison, \(runs.path), "100"]
                    acks_late: true
                    reject_on_worker_lost: true

                """,
            workerYAML: "  queues: [\(queue)]\n  poison_threshold: 2\n"
        )
        let sent = try Python.celeryClient(
            RabbitMQInteropTests.request(
                broker: node.url,
                backend: redis.url(db: 1),
                queue: queue,
                calls: [["task": "exec.poison", "args": []]],
                wait: false
            )
        )
        let id = try #require(sent.first?["id"]?.stringValue)
        let runsFile = runs.path + "/" + id
        #expect(eventually(timeout: 30) { (try? node.queueCounts(dead))??.ready == 1 }, "\(daemon.log)")
        #expect(Self.lines(runsFile).count == 2)

        let list = try runCommand(Binaries.swiftqctl, ["dead", "list", "--broker", node.url, queue])
        #expect(list.status == 0, "\(list.stderr)")
        #expect(list.stdout.contains(id) && list.stdout.contains("killed its pool child 2 times"), "\(list.stdout)")
        #expect(list.stdout.contains("exec.poison  ") && list.stdout.contains("  \(queue): "), "\(list.stdout)")
        let json = try runCommand(Binaries.swiftqctl, ["dead", "list", "--json", "--broker", node.url, queue])
        let rows = try JSONValue(parsing: json.stdout).arrayValue ?? []
        #expect(rows.count == 1 && rows.first?["id"]?.stringValue == id && rows.first?["queue"]?.stringValue == queue)
        // Listing consumed without acking: the message is still there.
        #expect(eventually(timeout: 10) { (try? node.queueCounts(dead))??.ready == 1 })

        let requeued = try runCommand(Binaries.swiftqctl, ["dead", "requeue", "--broker", node.url, queue])
        #expect(
            requeued.status == 0 && requeued.stdout.contains("requeued 1 message"),
            "\(requeued.stdout) \(requeued.stderr)"
        )
        // It runs again from a clean count: two more kills, then dead again.
        #expect(eventually(timeout: 30) { Self.lines(runsFile).count == 4 }, "runs: \(Self.lines(runsFile).count)")
        #expect(eventually(timeout: 30) { (try? node.queueCounts(dead))??.ready == 1 }, "\(daemon.log)")
        #expect(Self.lines(runsFile).count == 4)
        #expect(eventually { node.isEmpty(queue) })

        let purged = try runCommand(Binaries.swiftqctl, ["dead", "purge", "--broker", node.url, queue])
        #expect(purged.status == 0 && purged.stdout.contains("purged 1 message"), "\(purged.stdout) \(purged.stderr)")
        #expect(eventually(timeout: 10) { node.isEmpty(dead) })
        let empty = try runCommand(Binaries.swiftqctl, ["dead", "list", "--broker", node.url, queue])
        #expect(empty.status == 0 && empty.stdout.isEmpty, "\(empty.stdout) \(empty.stderr)")
        // A dead-letter queue that does not exist is empty, not an error.
        let missing = try runCommand(
            Binaries.swiftqctl,
            ["dead", "list", "--broker", node.url, uniqueQueueName("none")]
        )
        #expect(missing.status == 0 && missing.stdout.isEmpty, "\(missing.stdout) \(missing.stderr)")
    }
}
