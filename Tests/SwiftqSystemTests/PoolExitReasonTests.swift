import Foundation
import SwiftqCore
import Testing

/// The consumer is the parent of its pool children and knows why each one exited: only crashes count.
@Suite(.serialized) struct PoolExitReasonTests {
    /// Ten reloads 4 → 1 → 4 within a minute retire thirty children: none of that is a crash, so no crash loop,
    /// and the watchdog keeps being fed. A `kill -9` after that is a crash, and stats tell the two apart.
    @Test func reloadsThatShrinkAndGrowThePoolAreNotCrashes() throws {
        let daemon = try Daemon(concurrency: 4, environment: ["WATCHDOG_USEC": "400000"], withNotify: true)
        let notify = try #require(daemon.notify)
        #expect(notify.waitFor { $0.contains("READY=1") } != nil)
        #expect(eventually { ((try? daemon.poolPIDs()) ?? [:]).count == 4 })
        let started = Date()
        for round in 1...10 {
            // The listener's queue holds only a few datagrams and the supervisor's sd_notify blocks when it is
            // full (as with a stalled systemd): keep reading it.
            notify.drain()
            try daemon.rewriteConfiguration(concurrency: 1)
            daemon.signal(SIGHUP)
            let shrunk = eventually {
                notify.drain()
                return ((try? daemon.poolPIDs()) ?? [:]).count == 1
            }
            #expect(shrunk, "round \(round): the pool did not shrink to 1\n\(daemon.log.suffix(4000))")
            try daemon.rewriteConfiguration(concurrency: 4)
            daemon.signal(SIGHUP)
            let grown = eventually {
                notify.drain()
                let rows = (try? daemon.stats())?["children"]?.arrayValue ?? []
                let pool = rows.filter { $0["role"]?.stringValue == "pool" }
                return pool.count == 4 && pool.allSatisfy { $0["task_state"]?.stringValue == "idle" }
            }
            #expect(grown, "round \(round): the pool did not grow back to 4\n\(daemon.log.suffix(4000))")
            if !shrunk || !grown { return }
        }
        #expect(Date().timeIntervalSince(started) < 60)
        let victim = try #require(try daemon.poolPIDs()[0])
        kill(victim, SIGKILL)
        #expect(eventually { ((try? daemon.poolPIDs())?[0]).map { $0 != victim } == true })

        let stats = try daemon.stats()
        #expect(stats["crash_loop"]?.boolValue == false)
        #expect(stats["status"]?.stringValue?.contains("crash loop") == false, "\(stats["status"] ?? .null)")
        let pool = (stats["children"]?.arrayValue ?? []).filter { $0["role"]?.stringValue == "pool" }
        let bySlot = Dictionary(uniqueKeysWithValues: pool.map { (Int($0["slot"]?.intValue ?? -1), $0) })
        // Slot 0 stayed through the reloads and was killed once: a crash, counted.
        #expect(bySlot[0]?["exit_reason"] == "crash")
        #expect(bySlot[0]?["last_exit"]?["signal"]?.intValue == Int64(SIGKILL))
        #expect(bySlot[0]?["restarts"]?.intValue == 1)
        // Slots 1-3 were retired by the shrinks (exit 0, reason shrink), not counted.
        for slot in 1...3 {
            #expect(bySlot[slot]?["exit_reason"] == "shrink", "\(bySlot[slot] ?? .null)")
            #expect(bySlot[slot]?["last_exit"]?["code"]?.intValue == 0)
            #expect(bySlot[slot]?["restarts"]?.intValue == 0)
            #expect(bySlot[slot]?["crash_loop"]?.boolValue == false)
        }
        let table = try daemon.ctl(["stats"])
        #expect(table.stdout.contains("killed by signal 9 (SIGKILL) (crash)"), "\(table.stdout)")
        #expect(table.stdout.contains("exited with code 0 (shrink)"), "\(table.stdout)")
        #expect(!table.stdout.contains("[crash loop]"))

        // The watchdog is still fed.
        notify.drain()
        let seen = notify.messages.count
        #expect(
            eventually(timeout: 3) {
                notify.drain()
                return notify.messages[seen...].contains("WATCHDOG=1")
            },
            "the watchdog is starved"
        )
    }

    /// `time_limit=1` from a Python Celery client: the pool kills the child at its hard limit, Python sees
    /// billiard's `TimeLimitExceeded`, and the slot's replacement is not counted as a crash.
    @Test func aHardTimeLimitFromPythonKillsTheTaskAndIsNotACrash() throws {
        let redis = try RedisServer()
        let daemon = try RedisInteropTests.daemon(broker: redis, concurrency: 1, prefetch: 1)
        #expect(eventually { ((try? daemon.poolPIDs()) ?? [:]).count == 1 })
        let before = try #require(try daemon.poolPIDs()[0])
        let results = try Python.celeryClient(
            TaskSemanticsTests.withDates(
                RedisInteropTests.request(
                    redis,
                    calls: [
                        ["task": "swiftq.sleep", "args": [3], "options": ["time_limit": 1]],
                        ["task": "swiftq.add", "args": [2, 2]],
                    ],
                    timeout: 20
                )
            )
        )
        #expect(results.count == 2)
        let failed = results.first
        #expect(failed?["state"] == "FAILURE")
        #expect(failed?["exception"]?["type"] == "TimeLimitExceeded", "\(failed ?? .null)")
        #expect(failed?["exception"]?["args"] == ["1"], "\(failed ?? .null)")
        // The second task ran on the replacement child once the first was killed at 1s (not at 3s).
        #expect(results.last?["result"] == 4)
        // From sending the first to the second's stored result, on the backend's clock: the Python client's own
        // start-up (a second or more under load) is not the worker's time.
        let elapsed =
            try #require(results.last.flatMap { TaskSemanticsTests.seconds($0, "date_done") })
            - (try #require(results.first.flatMap { TaskSemanticsTests.seconds($0, "sent_at") }))
        #expect(elapsed < 2.5, "took \(elapsed)s: the limit was not enforced")
        let meta = try JSONValue(
            parsing: try redis.cli(["-n", "1", "GET", "celery-task-meta-\(failed?["id"]?.stringValue ?? "")"])
        )
        #expect(meta["result"]?["exc_type"] == "TimeLimitExceeded")
        #expect(meta["result"]?["exc_message"] == [1])

        #expect(eventually { ((try? daemon.poolPIDs())?[0]).map { $0 != before } == true })
        let stats = try daemon.stats()
        let slot = try #require(stats["children"]?.arrayValue?.first { $0["role"]?.stringValue == "pool" })
        #expect(slot["exit_reason"] == "time_limit")
        #expect(slot["restarts"]?.intValue == 0)
        #expect(slot["crash_loop"]?.boolValue == false)
        // A time limit is counted as such, not as a lost worker.
        #expect(stats["tasks"]?["time_limited"]?.intValue == 1)
        #expect(stats["tasks"]?["worker_lost"]?.intValue == 0)
        #expect(daemon.log.contains("hard time limit (1.0s) exceeded"))
    }
}

/// A memory cgroup of its own with a hard limit, made under this machine's cgroup tree (v1 memory controller or
/// v2), for a daemon started inside it through ``wrapper(for:)``. Removed when released.
final class MemoryCgroup {
    let directory: String
    private let limitFile: String

    /// Nil when this host gives no writable memory controller (not root, no controller in the container).
    init?(limitMiB: Int) {
        let name = "swiftq-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let candidates = [
            ("/sys/fs/cgroup/memory", "memory.limit_in_bytes"),  // v1 or hybrid
            ("/sys/fs/cgroup", "memory.max"),  // v2, with memory in the root's subtree_control
        ]
        for (root, file) in candidates where FileManager.default.fileExists(atPath: root + "/cgroup.procs") {
            let path = root + "/" + name
            guard mkdir(path, 0o755) == 0 else { continue }
            guard FileManager.default.fileExists(atPath: path + "/" + file),
                (try? "\(limitMiB << 20)".write(toFile: path + "/" + file, atomically: false, encoding: .utf8)) != nil
            else {
                rmdir(path)
                continue
            }
            directory = path
            limitFile = file
            return
        }
        return nil
    }

    /// A shell script that moves itself into the cgroup and then runs `binary` with its arguments (same pid).
    func wrapper(for binary: String, in temporary: TemporaryDirectory) throws -> String {
        let script = try temporary.write(
            "in-cgroup.sh",
            "#!/bin/sh\necho $$ > \(directory)/cgroup.procs || exit 1\nexec \(binary) \"$@\"\n"
        )
        chmod(script, 0o755)
        return script
    }

    deinit {
        // The daemon is gone by now (its own deinit ran first); retry briefly while the kernel empties the group.
        _ = eventually(timeout: 5) { rmdir(self.directory) == 0 || errno == ENOENT }
    }
}

@Suite(.serialized) struct OOMKillTests {
    /// The kernel's OOM killer ends the pool child running a task that outgrows the daemon's cgroup: the task ends
    /// as WorkerLostError saying so, `stats` shows the exit reason `oom` (counted, as a crash is), and the next task
    /// runs on the replacement child.
    @Test func anOOMKilledChildIsReportedAsSuch() throws {
        let scratch = try TemporaryDirectory()
        guard let cgroup = MemoryCgroup(limitMiB: 200) else {
            Issue.record("no writable memory cgroup on this host (root with a memory controller is needed)")
            return
        }
        // The daemon (and so its children) must be gone before the cgroup is removed.
        try withExtendedLifetime(cgroup) { try runOutOfMemory(in: cgroup, scratch: scratch) }
    }

    private func runOutOfMemory(in cgroup: MemoryCgroup, scratch: TemporaryDirectory) throws {
        let redis = try RedisServer()
        let daemon = try RedisInteropTests.daemon(
            broker: redis,
            concurrency: 1,
            prefetch: 1,
            binary: try cgroup.wrapper(for: Binaries.exampleWorker, in: scratch)
        )
        #expect(eventually { ((try? daemon.poolPIDs()) ?? [:]).count == 1 })
        let before = try #require(try daemon.poolPIDs()[0])
        let results = try Python.celeryClient(
            RedisInteropTests.request(
                redis,
                calls: [
                    ["task": "example.allocate", "args": [1024]],
                    ["task": "example.allocate", "args": [8]],
                ],
                timeout: 30
            )
        )
        #expect(results.count == 2)
        let killed = results.first
        #expect(killed?["state"] == "FAILURE", "\(killed ?? .null)\n\(daemon.log.suffix(3000))")
        #expect(killed?["exception"]?["type"] == "WorkerLostError", "\(killed ?? .null)")
        #expect(
            killed?["exception"]?["args"]?[0]?.stringValue?.contains("killed by the OOM killer") == true,
            "\(killed ?? .null)"
        )
        #expect(results.last?["result"] == .int(8 << 20))

        #expect(eventually { ((try? daemon.poolPIDs())?[0]).map { $0 != before } == true })
        let stats = try daemon.stats()
        let slot = try #require(stats["children"]?.arrayValue?.first { $0["role"]?.stringValue == "pool" })
        #expect(slot["exit_reason"] == "oom", "\(slot)")
        #expect(slot["last_exit"]?["signal"]?.intValue == Int64(SIGKILL))
        #expect(slot["restarts"]?.intValue == 1, "an OOM kill counts, as a crash does")
        #expect(stats["tasks"]?["worker_lost"]?.intValue == 1)
        let table = try daemon.ctl(["stats"])
        #expect(table.stdout.contains("(oom)"), "\(table.stdout)")
        daemon.signal(SIGKILL)
        _ = daemon.waitForExit()
    }
}
