import Foundation
import SwiftqCore
import SwiftqPlatform
import Testing

/// Embedded beat against a private redis-server: publishing, catch-up after a restart, the cluster-wide lease, and
/// SIGHUP reloads. Entries publish to queues no swiftqd consumes (unless the test wants them run), so the queue's
/// length counts the runs.
@Suite("Beat: system (Redis)", .serialized)
struct BeatSystemTests {
    static func beatYAML(redis: RedisServer, state: String, lockTimeout: String = "3s", entries: String) -> String {
        """
        broker:
          url: \(redis.url(db: 0))
        result_backend:
          url: \(redis.url(db: 1))
        beat:
          enabled: true
          state: \(state)
          lock_timeout: \(lockTimeout)
          schedule:
        \(entries)
        """
    }

    static func length(_ redis: RedisServer, _ queue: String) -> Int {
        Int((try? redis.cli(["LLEN", queue]))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? -1
    }

    /// Runs `swiftqd beat` alone with a configuration file.
    /// The scheduled times (seconds since the epoch) of the runs a beat log says it published, in log order.
    static func publishedRuns(_ log: String) -> [Double] {
        log.split(separator: "\n").filter { $0.contains("published ") }.compactMap { line in
            guard let range = line.range(of: "scheduled=") else { return nil }
            return Double(line[range.upperBound...].prefix { $0 == "." || $0.isNumber })
        }
    }

    /// Checks what two beats published together: no scheduled run twice, every run in the queue logged once, and,
    /// across a takeover at `killedAt`, no run lost: the first run after the last one published before it is one
    /// period later. Checked on the runs' scheduled times, not on wall-clock counts, which a loaded machine skews
    /// (a beat whose loop stalls past several run times publishes the latest once, by design).
    static func checkRuns(
        _ logs: [String],
        queueLength: Int?,
        lastBeforeKill: Double? = nil,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        let runs = logs.flatMap(publishedRuns)
        #expect(
            Set(runs).count == runs.count,
            "a run was published twice: \(runs.sorted())",
            sourceLocation: sourceLocation
        )
        if let queueLength {
            #expect(
                runs.count == queueLength,
                "logged \(runs.count) runs, queued \(queueLength)",
                sourceLocation: sourceLocation
            )
        }
        if let lastBeforeKill {
            let next = runs.filter { $0 > lastBeforeKill }.min()
            #expect(
                // The log shows milliseconds.
                next.map { abs($0 - lastBeforeKill - 1) < 0.01 } == true,
                "after \(lastBeforeKill) the next run was \(String(describing: next))",
                sourceLocation: sourceLocation
            )
        }
    }

    static func standaloneBeat(_ config: String, log: String) throws -> TestProcess {
        try TestProcess(Binaries.swiftqd, ["beat", "--config", config], logFile: log)
    }

    @Test(.timeLimit(.minutes(2)))
    func everySecondRunsOnSwiftqdAndShowsInCtl() throws {
        let redis = try RedisServer()
        let scratch = try TemporaryDirectory()
        let entries = """
                tick:
                  task: swiftq.add
                  every: 1s
                  args: [2, 3]
                manual:
                  task: swiftq.add
                  cron: "0 0 1 1 *"
                  timezone: Europe/Berlin
                  args: [1, 1]
                  queue: manual
            """
        let daemon = try Daemon(
            concurrency: 2,
            extraYAML: Self.beatYAML(redis: redis, state: scratch.path + "/state.json", entries: entries)
        )
        let started = Date()
        // About 5 runs in 5 s, executed by the daemon's own pool (results in db 1).
        Thread.sleep(forTimeInterval: 5.5)
        let results = try redis.cli(["-n", "1", "KEYS", "celery-task-meta-*"]).split(separator: "\n").count
        #expect(
            (4...7).contains(results),
            "results after \(Date().timeIntervalSince(started))s: \(results)\n\(daemon.log)"
        )
        let list = try daemon.ctl(["beat"])
        #expect(list.status == 0)
        #expect(list.stdout.contains("tick") && list.stdout.contains("every 1s"), "\(list.stdout)")
        #expect(list.stdout.contains("Europe/Berlin") && list.stdout.contains("2027-01-01T00:00:00"), "\(list.stdout)")
        #expect(list.stdout.contains("(this node)"), "\(list.stdout)")
        let stats = try daemon.stats()
        #expect(stats["beat"]?["holder"]?.boolValue == true)
        #expect(stats["status"]?.stringValue?.contains("beat leader") == true)
        // One run on request.
        let run = try daemon.ctl(["beat", "run", "manual"])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(Self.length(redis, "manual") == 1)
        let unknown = try daemon.ctl(["beat", "run", "nope"])
        #expect(unknown.status == 1 && unknown.stderr.contains("no beat entry"))
        daemon.signal(SIGTERM)
        #expect(daemon.waitForExit() == 0)
    }

    @Test(.timeLimit(.minutes(2)))
    func messagesRunOnAPythonCeleryWorker() throws {
        let redis = try RedisServer()
        let scratch = try TemporaryDirectory()
        let config = try scratch.write(
            "config.yaml",
            Self.beatYAML(
                redis: redis,
                state: scratch.path + "/state.json",
                entries: """
                        tick:
                          task: swiftq.add
                          every: 1s
                          args: [20, 22]
                          queue: python
                    """
            )
        )
        let python = try Python.sharedTasksWorker(
            broker: redis.url(db: 0),
            backend: redis.url(db: 1),
            ledger: redis.url(db: 0),
            queue: "python"
        )
        defer { python.stop() }
        let beat = try Self.standaloneBeat(config, log: scratch.path + "/beat.log")
        defer { beat.stop() }
        let ran = eventually(timeout: 30) { Self.length(redis, "executed:python") >= 3 }
        let log = (try? String(contentsOfFile: scratch.path + "/beat.log", encoding: .utf8)) ?? ""
        #expect(ran, "the Python worker ran no beat message; beat log:\n\(log)")
        let ids = try redis.cli(["LRANGE", "executed:python", "0", "0"]).trimmingCharacters(in: .whitespacesAndNewlines)
        let meta = try redis.cli(["-n", "1", "GET", "celery-task-meta-\(ids)"])
        #expect(meta.contains("\"result\": 42") || meta.contains("\"result\":42"), "\(meta)")
    }

    /// Restarts after a downtime of several periods: `none` publishes nothing at startup, `once` exactly one run.
    @Test(.timeLimit(.minutes(2)), arguments: ["none", "once"])
    func restartCatchUp(_ mode: String) throws {
        let redis = try RedisServer()
        let scratch = try TemporaryDirectory()
        let config = try scratch.write(
            "config.yaml",
            Self.beatYAML(
                redis: redis,
                state: scratch.path + "/state.json",
                entries: """
                        slow:
                          task: swiftq.add
                          every: 4s
                          queue: catchup
                          catch_up: \(mode)
                    """
            )
        )
        var beat = try Self.standaloneBeat(config, log: scratch.path + "/beat1.log")
        #expect(eventually(timeout: 10) { Self.length(redis, "catchup") == 1 })
        beat.stop()
        let state = (try? String(contentsOfFile: scratch.path + "/state.json", encoding: .utf8)) ?? ""
        #expect(state.contains("\"slow\""), "state file: \(state)")
        // Down for more than two periods; a different node id, as after a host restart, and no lease left over.
        Thread.sleep(forTimeInterval: 9)
        beat = try Self.standaloneBeat(config, log: scratch.path + "/beat2.log")
        defer { beat.stop() }
        Thread.sleep(forTimeInterval: 2.5)
        let expected = mode == "once" ? 2 : 1
        #expect(Self.length(redis, "catchup") == expected, "mode \(mode)")
        // And then the schedule goes on, one run per period.
        #expect(eventually(timeout: 6) { Self.length(redis, "catchup") == expected + 1 })
    }

    /// Two daemons with beat on one Redis: each run is published once; when the holder is killed with SIGKILL, the
    /// other takes over within the lease and no run is lost or doubled.
    @Test(.timeLimit(.minutes(3)))
    func twoDaemonsOneLeaseAndTakeover() throws {
        let redis = try RedisServer()
        let scratch = try TemporaryDirectory()
        let entries = """
                tick:
                  task: swiftq.add
                  every: 1s
                  queue: shared
            """
        let first = try Daemon(
            concurrency: 1,
            extraYAML: Self.beatYAML(redis: redis, state: scratch.path + "/a.json", entries: entries)
        )
        let second = try Daemon(
            concurrency: 1,
            extraYAML: Self.beatYAML(redis: redis, state: scratch.path + "/b.json", entries: entries)
        )
        #expect(eventually(timeout: 10) { Self.length(redis, "shared") >= 1 })
        Thread.sleep(forTimeInterval: 10)
        // Both ran for 10 s: every run once, whichever published it.
        Self.checkRuns([first.log, second.log], queueLength: nil)
        #expect(Self.length(redis, "shared") >= 5, "beat published \(Self.length(redis, "shared")) runs in 10s")
        let holders = [first, second].filter { (try? $0.stats()["beat"]?["holder"]?.boolValue) == true }
        try #require(holders.count == 1, "holders: \(holders.count)")
        let holder = holders[0]
        let other = holder === first ? second : first
        let killedAt = Date()
        kill(holder.pid, SIGKILL)
        _ = holder.waitForExit()
        let lastBeforeKill = [first.log, second.log].flatMap(Self.publishedRuns).max()
        // The other node holds the lease within the lease time (3s) plus one retry interval.
        #expect(eventually(timeout: 5) { (try? other.stats()["beat"]?["holder"]?.boolValue) == true })
        let tookOver = Date().timeIntervalSince(killedAt)
        #expect(tookOver < 4.5, "took over after \(tookOver)s")
        Thread.sleep(forTimeInterval: 6)
        other.signal(SIGTERM)
        #expect(other.waitForExit() == 0)
        // Every scheduled second since the kill is published once: the runs missed during the takeover included.
        // Both beats are gone now, so the queue and the logs cannot move apart while they are read.
        Self.checkRuns(
            [first.log, second.log],
            queueLength: Self.length(redis, "shared"),
            lastBeforeKill: lastBeforeKill
        )
    }

    /// A holder paused past its lease (SIGSTOP) loses it to the other beat; when it resumes it publishes nothing
    /// that the new holder published: the fenced publish script refuses it. Standalone `swiftqd beat` processes.
    @Test(.timeLimit(.minutes(2)))
    func pausedHolderCannotPublishAfterLosingTheLease() throws {
        let redis = try RedisServer()
        let scratch = try TemporaryDirectory()
        let entries = """
                tick:
                  task: swiftq.add
                  every: 1s
                  queue: fenced
            """
        let configA = try scratch.write(
            "a.yaml",
            Self.beatYAML(redis: redis, state: scratch.path + "/a.json", entries: entries)
        )
        let configB = try scratch.write(
            "b.yaml",
            Self.beatYAML(redis: redis, state: scratch.path + "/b.json", entries: entries)
        )
        let a = try Self.standaloneBeat(configA, log: scratch.path + "/a.log")
        defer { a.stop() }
        #expect(eventually(timeout: 10) { Self.length(redis, "fenced") >= 1 })
        let b = try Self.standaloneBeat(configB, log: scratch.path + "/b.log")
        defer { b.stop() }
        Thread.sleep(forTimeInterval: 1)
        // The lease value is "<node>:<fence>", the node "beat@host:<pid>:<random>".
        let holderValue = try redis.cli(["GET", "swiftq.beat.lock"])
        #expect(holderValue.contains(":\(a.pid):"), "holder \(holderValue)")
        let publishedByABeforeStop = Self.publishedRuns(
            try String(contentsOfFile: scratch.path + "/a.log", encoding: .utf8)
        ).count
        kill(a.pid, SIGSTOP)
        Thread.sleep(forTimeInterval: 5)
        let during = try redis.cli(["GET", "swiftq.beat.lock"])
        #expect(during.contains(":\(b.pid):"), "holder while A is stopped: \(during)")
        kill(a.pid, SIGCONT)
        Thread.sleep(forTimeInterval: 4)
        let logA = try String(contentsOfFile: scratch.path + "/a.log", encoding: .utf8)
        let logB = try String(contentsOfFile: scratch.path + "/b.log", encoding: .utf8)
        // A, resumed after losing the lease, published nothing more; no run went out twice; B kept publishing.
        #expect(Self.publishedRuns(logA).count == publishedByABeforeStop, "A published after losing its lease")
        Self.checkRuns([logA, logB], queueLength: nil)
        #expect(Self.publishedRuns(logB).count >= 3, "B published \(Self.publishedRuns(logB).count) runs")
        let after = try redis.cli(["GET", "swiftq.beat.lock"])
        #expect(after.contains(":\(b.pid):"), "holder after A resumed: \(after)")
    }

    /// SIGHUP adds and removes entries in place; a broken schedule is rejected with its position and the old one
    /// keeps running.
    @Test(.timeLimit(.minutes(2)))
    func reloadAddsRemovesAndRejects() throws {
        let redis = try RedisServer()
        let scratch = try TemporaryDirectory()
        let state = scratch.path + "/state.json"
        let first = """
                old:
                  task: swiftq.add
                  every: 1s
                  queue: qold
            """
        let daemon = try Daemon(concurrency: 1, extraYAML: Self.beatYAML(redis: redis, state: state, entries: first))
        #expect(eventually(timeout: 10) { Self.length(redis, "qold") >= 2 })
        let second = """
                new:
                  task: swiftq.add
                  every: 1s
                  queue: qnew
            """
        try daemon.rewriteConfiguration(
            concurrency: 1,
            extraYAML: Self.beatYAML(redis: redis, state: state, entries: second)
        )
        daemon.signal(SIGHUP)
        #expect(eventually(timeout: 10) { Self.length(redis, "qnew") >= 2 }, "\(daemon.log)")
        let oldCount = Self.length(redis, "qold")
        Thread.sleep(forTimeInterval: 2)
        #expect(Self.length(redis, "qold") == oldCount, "the removed entry still publishes")
        // A broken cron expression: rejected with file:line:column and the key path; "new" keeps running.
        let broken = """
                new:
                  task: swiftq.add
                  cron: "61 * * * *"
                  queue: qnew
            """
        try daemon.rewriteConfiguration(
            concurrency: 1,
            extraYAML: Self.beatYAML(redis: redis, state: state, entries: broken)
        )
        let text = try String(contentsOfFile: daemon.configPath, encoding: .utf8)
        let line =
            try #require(
                text.split(separator: "\n", omittingEmptySubsequences: false).firstIndex { $0.contains("61 * * * *") }
            ) + 1
        let reload = try daemon.ctl(["reload"])
        #expect(reload.status == 1)
        #expect(
            reload.stderr.contains(":\(line):13: beat.schedule.new.cron: invalid cron expression: minute field"),
            "\(reload.stderr)"
        )
        let newCount = Self.length(redis, "qnew")
        #expect(eventually(timeout: 5) { Self.length(redis, "qnew") >= newCount + 2 })
        daemon.signal(SIGTERM)
        #expect(daemon.waitForExit() == 0)
    }
}

/// The same singleton guarantee on RabbitMQ: the lease and the record of runs live in the Redis result backend,
/// and runs are published to RabbitMQ with confirms.
@Suite("Beat: system (RabbitMQ)", .serialized)
struct BeatRabbitMQTests {
    @Test(.timeLimit(.minutes(3)))
    func twoDaemonsOneLeaseAndTakeoverOnRabbitMQ() throws {
        let rabbit = try RabbitMQNode.shared()
        let redis = try RedisServer()
        let scratch = try TemporaryDirectory()
        let queue = uniqueQueueName("beat")
        func yaml(_ state: String) -> String {
            """
            broker:
              url: \(rabbit.url)
            result_backend:
              url: \(redis.url(db: 1))
            beat:
              enabled: true
              state: \(scratch.path)/\(state)
              lock_timeout: 3s
              schedule:
                tick:
                  task: swiftq.add
                  every: 1s
                  queue: \(queue)
            """
        }
        func count() -> Int { ((try? rabbit.queueCounts(queue)) ?? nil)?.ready ?? 0 }
        let first = try Daemon(concurrency: 1, extraYAML: yaml("a.json"))
        let second = try Daemon(concurrency: 1, extraYAML: yaml("b.json"))
        #expect(eventually(timeout: 15) { count() >= 1 }, "\(first.log)")
        Thread.sleep(forTimeInterval: 10)
        BeatSystemTests.checkRuns([first.log, second.log], queueLength: nil)
        #expect(count() >= 5, "beat published \(count()) runs in 10s")
        let holders = [first, second].filter { (try? $0.stats()["beat"]?["holder"]?.boolValue) == true }
        try #require(holders.count == 1, "holders: \(holders.count)")
        let other = holders[0] === first ? second : first
        kill(holders[0].pid, SIGKILL)
        _ = holders[0].waitForExit()
        let lastBeforeKill = [first.log, second.log].flatMap(BeatSystemTests.publishedRuns).max()
        #expect(eventually(timeout: 5) { (try? other.stats()["beat"]?["holder"]?.boolValue) == true })
        Thread.sleep(forTimeInterval: 6)
        other.signal(SIGTERM)
        #expect(other.waitForExit() == 0)
        BeatSystemTests.checkRuns([first.log, second.log], queueLength: count(), lastBeforeKill: lastBeforeKill)
        _ = try? rabbit.ctl(["delete_queue", queue])
    }
}
