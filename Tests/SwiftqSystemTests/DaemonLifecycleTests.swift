import Foundation
import SwiftqCore
import Testing

/// Black-box tests of the built `swiftqd`: real processes, real sockets, real signals.
@Suite(.serialized) struct DaemonLifecycleTests {
    @Test func pingAndStatsListTheConsumerAndEveryPoolChild() throws {
        let daemon = try Daemon(concurrency: 3)
        daemon.waitUntilHealthy()
        let ping = try daemon.ctl(["ping"])
        #expect(ping.status == 0, "\(ping.stderr)")
        #expect(ping.stdout.contains("pong"))

        // The pool is up once every child said hello to the consumer.
        #expect(eventually { ((try? daemon.poolPIDs()) ?? [:]).count == 3 })
        let stats = try daemon.stats()
        #expect(stats["pid"]?.intValue == Int64(daemon.pid))
        #expect(stats["version"]?.stringValue == "0.1.0")
        #expect(stats["config"]?.stringValue == daemon.configPath)
        #expect(stats["hostname"]?.stringValue?.hasPrefix("celery@") == true)
        #expect((stats["uptime"]?.doubleValue ?? -1) >= 0)
        #expect(stats["rusage"]?["self"]?["utime"]?.doubleValue != nil)
        #expect(stats["load"]?.arrayValue?.count == 3)
        let children = stats["children"]?.arrayValue ?? []
        #expect(children.filter { $0["role"]?.stringValue == "consumer" }.count == 1)
        #expect(children.filter { $0["role"]?.stringValue == "pool" }.count == 3)
        for child in children {
            let pid = Int32(child["pid"]?.intValue ?? 0)
            #expect(pid > 0 && !processHasEnded(pid), "child \(child) is not alive")
            #expect(child["restarts"]?.intValue == 0)
            #expect(child["last_exit"]?.isNull == true)
        }
        #expect(
            eventually {
                let states = (try? daemon.stats())?["children"]?.arrayValue?.compactMap {
                    $0["task_state"]?.stringValue
                }
                return states == ["idle", "idle", "idle"]
            }
        )

        let table = try daemon.ctl(["stats"])
        #expect(table.status == 0)
        #expect(table.stdout.contains("ROLE"))
        #expect(table.stdout.contains("consumer"))
        #expect(table.stdout.components(separatedBy: "\npool ").count - 1 == 3, "\(table.stdout)")

        let json = try daemon.ctl(["stats", "--json"])
        #expect(json.status == 0)
        let parsed = try JSONValue(parsing: json.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
        #expect(parsed["pid"]?.intValue == Int64(daemon.pid))
    }

    @Test func killedPoolChildIsReplacedWithinASecondAndStatsShowsTheRestart() throws {
        let daemon = try Daemon(concurrency: 2)
        #expect(eventually { ((try? daemon.poolPIDs()) ?? [:]).count == 2 })
        let before = try daemon.poolPIDs()
        let victim = try #require(before[1])
        kill(victim, SIGKILL)
        let killedAt = Date()
        var replacement: Int32?
        #expect(
            eventually(timeout: 1) {
                replacement = (try? daemon.poolPIDs())?[1]
                return replacement != nil && replacement != victim
            },
            "no replacement within 1s"
        )
        #expect(Date().timeIntervalSince(killedAt) <= 1.2)
        let child = try #require(
            try daemon.stats()["children"]?.arrayValue?.first {
                $0["role"]?.stringValue == "pool" && $0["slot"]?.intValue == 1
            }
        )
        #expect(child["restarts"]?.intValue == 1)
        #expect(child["last_exit"]?["signal"]?.intValue == Int64(SIGKILL))
        #expect(child["last_exit"]?["description"]?.stringValue?.contains("SIGKILL") == true)
        // The other slot was left alone.
        #expect(try daemon.poolPIDs()[0] == before[0])
        // And the replacement is usable: the consumer sees it idle.
        #expect(
            eventually {
                let slot = (try? daemon.stats())?["children"]?.arrayValue?.first { $0["slot"]?.intValue == 1 }
                return slot?["task_state"]?.stringValue == "idle"
            }
        )
        let table = try daemon.ctl(["stats"])
        #expect(table.stdout.contains("killed by signal 9 (SIGKILL)"))
    }

    @Test func killedConsumerIsReplacedWithAFreshPool() throws {
        let daemon = try Daemon(concurrency: 2)
        #expect(eventually { ((try? daemon.poolPIDs()) ?? [:]).count == 2 })
        let consumer = try #require(try daemon.consumerPID())
        let pool = try daemon.poolPIDs()
        kill(consumer, SIGKILL)
        #expect(
            eventually {
                guard let now = try? daemon.consumerPID(), now != consumer else { return false }
                let states = (try? daemon.stats())?["children"]?.arrayValue?.compactMap {
                    $0["task_state"]?.stringValue
                }
                return states == ["idle", "idle"]
            }
        )
        for pid in pool.values { #expect(eventually(timeout: 2) { processHasEnded(pid) }) }
        #expect(daemon.log.contains("consumer died unexpectedly"))
        // The restart is the consumer's: the pool slots were started afresh, not counted as crashes.
        let stats = try daemon.stats()
        let children = stats["children"]?.arrayValue ?? []
        #expect(children.first { $0["role"]?.stringValue == "consumer" }?["restarts"]?.intValue == 1)
        #expect(children.filter { $0["role"]?.stringValue == "pool" }.allSatisfy { $0["restarts"]?.intValue == 0 })
        #expect(stats["crash_loop"]?.boolValue == false)
        #expect(!daemon.log.contains("pool died unexpectedly"))
    }

    @Test func killingTheSupervisorTakesEveryChildWithIt() throws {
        let daemon = try Daemon(concurrency: 3)
        #expect(eventually { ((try? daemon.poolPIDs()) ?? [:]).count == 3 })
        // Consumer, three pool children and the embedded broker (the default broker.url).
        let children = try daemon.childPIDs()
        #expect(children.count == 5)
        daemon.signal(SIGKILL)
        let killedAt = Date()
        for pid in children {
            #expect(eventually(timeout: 2) { processHasEnded(pid) }, "child \(pid) outlived the supervisor")
        }
        #expect(Date().timeIntervalSince(killedAt) <= 2.2)
    }

    @Test func sigtermIsAWarmShutdownThatExitsZeroAndLeavesNoChild() throws {
        let daemon = try Daemon(concurrency: 2, withNotify: true)
        let notify = try #require(daemon.notify)
        #expect(notify.waitFor { $0.contains("READY=1") } != nil)
        #expect(eventually { ((try? daemon.poolPIDs()) ?? [:]).count == 2 })
        let children = try daemon.childPIDs()
        daemon.signal(SIGTERM)
        #expect(daemon.waitForExit() == 0)
        #expect(notify.waitFor(timeout: 2) { $0.contains("STOPPING=1") } != nil)
        for pid in children { #expect(processHasEnded(pid), "child \(pid) left behind") }
        #expect(!FileManager.default.fileExists(atPath: daemon.socketPath), "socket file left behind")
        #expect(daemon.log.contains("warm shutdown"))
    }

    @Test func sigquitIsAColdShutdown() throws {
        let daemon = try Daemon(concurrency: 2)
        #expect(eventually { ((try? daemon.poolPIDs()) ?? [:]).count == 2 })
        let children = try daemon.childPIDs()
        daemon.signal(SIGQUIT)
        #expect(daemon.waitForExit(timeout: 10) == 0)
        #expect(daemon.log.contains("SIGQUIT: cold shutdown"))
        for pid in children { #expect(processHasEnded(pid)) }
    }

    /// A stopped pool child cannot finish, so the warm shutdown waits for it; a second SIGTERM (or SIGINT)
    /// must not wait any longer.
    @Test(arguments: [SIGTERM, SIGINT])
    func aSecondSignalDuringAWarmShutdownIsACold(signal: Int32) throws {
        let daemon = try Daemon(concurrency: 2)
        #expect(eventually { ((try? daemon.poolPIDs()) ?? [:]).count == 2 })
        let children = try daemon.childPIDs()
        let stuck = try #require(try daemon.poolPIDs()[0])
        kill(stuck, SIGSTOP)
        daemon.signal(signal)
        usleep(500_000)
        #expect(daemon.exitStatus() == nil, "the warm shutdown did not wait for the stuck child")
        let secondAt = Date()
        daemon.signal(signal)
        #expect(daemon.waitForExit(timeout: 10) == 0)
        #expect(Date().timeIntervalSince(secondAt) < 3, "the cold shutdown waited for the warm deadline")
        #expect(daemon.log.contains("again: cold shutdown"))
        for pid in children { #expect(eventually(timeout: 2) { processHasEnded(pid) }) }
    }

    @Test func aWarmShutdownEndsAtItsDeadlineEvenIfAChildHangs() throws {
        // shutdown_timeout is 5s in the test configuration.
        let daemon = try Daemon(concurrency: 1)
        #expect(eventually { ((try? daemon.poolPIDs()) ?? [:]).count == 1 })
        let stuck = try #require(try daemon.poolPIDs()[0])
        kill(stuck, SIGSTOP)
        let started = Date()
        daemon.signal(SIGTERM)
        #expect(daemon.waitForExit(timeout: 15) == 0)
        let elapsed = Date().timeIntervalSince(started)
        #expect(elapsed >= 5 && elapsed < 9, "took \(elapsed)s")
        #expect(daemon.log.contains("shutdown deadline passed"))
        #expect(eventually(timeout: 2) { processHasEnded(stuck) })
    }

    @Test func shutdownCommandStopsTheDaemon() throws {
        let daemon = try Daemon(concurrency: 1)
        let result = try daemon.ctl(["shutdown"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("stopping"))
        #expect(daemon.waitForExit() == 0)
    }

    @Test func readyArrivesOnlyAfterEveryStepStarted() throws {
        let daemon = try Daemon(concurrency: 2, withNotify: true, waitForReady: false)
        let notify = try #require(daemon.notify)
        let ready = try #require(notify.waitFor(timeout: 30) { $0.contains("READY=1") })
        // At READY=1 the control socket answers and every pool child is already serving.
        let stats = try daemon.stats()
        let pool = stats["children"]?.arrayValue?.filter { $0["role"]?.stringValue == "pool" } ?? []
        #expect(pool.count == 2)
        #expect(pool.allSatisfy { $0["task_state"]?.stringValue == "idle" })
        // Each step announced itself before READY, in blueprint order.
        let before = notify.messages[..<ready]
        var position = before.startIndex
        // The pool is the consumer's (its own "Pool" step runs before the consumer reports ready).
        for step in ["Signals", "Lifeline", "ControlSocket", "Consumer", "Notify"] {
            let index = before[position...].firstIndex { $0.contains("STATUS=starting: \(step)") }
            #expect(index != nil, "no STATUS for step \(step) before READY: \(Array(before))")
            if let index { position = index }
        }
        #expect(notify.messages[ready].contains("STATUS=running"))
    }

    @Test func watchdogPingsArriveWhenWatchdogUsecIsSet() throws {
        let daemon = try Daemon(concurrency: 1, environment: ["WATCHDOG_USEC": "400000"], withNotify: true)
        let notify = try #require(daemon.notify)
        #expect(notify.waitFor { $0.contains("READY=1") } != nil)
        #expect(
            eventually(timeout: 5) {
                notify.drain()
                return notify.messages.filter { $0 == "WATCHDOG=1" }.count >= 3
            }
        )
        #expect(daemon.log.contains("watchdog enabled"))
    }

    @Test func noWatchdogPingsWithoutWatchdogUsec() throws {
        let daemon = try Daemon(concurrency: 1, withNotify: true)
        let notify = try #require(daemon.notify)
        #expect(notify.waitFor { $0.contains("READY=1") } != nil)
        usleep(700_000)
        notify.drain()
        #expect(!notify.messages.contains("WATCHDOG=1"))
    }

    @Test func sighupAppliesConcurrencyInPlace() throws {
        let daemon = try Daemon(concurrency: 2, withNotify: true)
        let notify = try #require(daemon.notify)
        #expect(notify.waitFor { $0.contains("READY=1") } != nil)
        #expect(eventually { ((try? daemon.poolPIDs()) ?? [:]).count == 2 })
        let before = try daemon.poolPIDs()
        let consumer = try daemon.consumerPID()
        try daemon.rewriteConfiguration(concurrency: 3)
        let firstReady = notify.messages.count
        daemon.signal(SIGHUP)
        let reloading = try #require(notify.waitFor { $0.contains("RELOADING=1") })
        #expect(notify.messages[reloading].contains("MONOTONIC_USEC="))
        #expect(reloading >= firstReady)
        let readyAgain = notify.waitFor { message in
            message.contains("READY=1") && notify.messages.firstIndex(of: message).map { $0 > reloading } == true
        }
        #expect(readyAgain != nil, "\(notify.messages)")
        #expect(eventually { ((try? daemon.poolPIDs()) ?? [:]).count == 3 })
        let after = try daemon.poolPIDs()
        #expect(after[0] == before[0] && after[1] == before[1], "existing children were replaced")
        #expect(try daemon.consumerPID() == consumer)
        #expect(try daemon.stats()["reload"]?["succeeded"]?.intValue == 1)

        // And back down: the highest slot retires, the others stay.
        try daemon.rewriteConfiguration(concurrency: 1)
        daemon.signal(SIGHUP)
        #expect(eventually { ((try? daemon.poolPIDs()) ?? [:]).count == 1 })
        #expect(try daemon.poolPIDs()[0] == before[0])
        if let retired = after[2] { #expect(eventually(timeout: 5) { processHasEnded(retired) }) }
    }

    @Test func sighupAppliesTheLogLevelInEveryProcess() throws {
        let daemon = try Daemon(concurrency: 1)
        #expect(eventually { ((try? daemon.poolPIDs()) ?? [:]).count == 1 })
        // The harness runs at debug; drop to warning, then come back to debug.
        try daemon.rewriteConfiguration(concurrency: 1, logLevel: "warning")
        daemon.signal(SIGHUP)
        #expect(eventually { (try? daemon.stats())?["reload"]?["succeeded"]?.intValue == 1 })
        let quietFrom = daemon.log.count
        daemon.signal(SIGUSR1)  // the dump is logged at notice, which is below warning
        usleep(300_000)
        #expect(!String(daemon.log.dropFirst(quietFrom)).contains("state dump"))
        try daemon.rewriteConfiguration(concurrency: 1, logLevel: "debug")
        daemon.signal(SIGHUP)
        #expect(eventually { daemon.log.contains("pool info: log level is now debug") })
        #expect(daemon.log.contains("consumer info: configuration reloaded"))
    }

    @Test func sighupWithABrokenFileKeepsTheRunningConfiguration() throws {
        let daemon = try Daemon(concurrency: 2, withNotify: true)
        let notify = try #require(daemon.notify)
        #expect(notify.waitFor { $0.contains("READY=1") } != nil)
        #expect(eventually { ((try? daemon.poolPIDs()) ?? [:]).count == 2 })
        try "worker:\n  concurrency: four\n".write(toFile: daemon.configPath, atomically: true, encoding: .utf8)
        daemon.signal(SIGHUP)
        #expect(eventually { (try? daemon.stats())?["reload"]?["failed"]?.intValue == 1 })
        let stats = try daemon.stats()
        #expect(stats["reload"]?["last_ok"]?.boolValue == false)
        #expect(stats["reload"]?["last_error"]?.stringValue?.contains("worker.concurrency") == true)
        #expect(stats["status"]?.stringValue?.contains("last reload failed") == true)
        #expect(try daemon.poolPIDs().count == 2)
        #expect(daemon.log.contains("reload rejected"))
        #expect(daemon.log.contains("config.yaml:2:16"))
        // RELOADING=1 was still answered with READY=1: systemd must not think the reload hangs.
        let reloading = try #require(notify.waitFor { $0.contains("RELOADING=1") })
        #expect(
            notify.waitFor { _ in
                notify.messages.count > reloading + 1
                    && notify.messages[(reloading + 1)...].contains { $0.contains("READY=1") }
            } != nil
        )

        // The reload command reports the failure with exit code 1.
        let result = try daemon.ctl(["reload"])
        #expect(result.status == 1)
        #expect(result.stderr.contains("worker.concurrency"))
        #expect(try daemon.ctl(["ping"]).status == 0)
    }

    @Test func sigusr1DumpsTheProcessTable() throws {
        let daemon = try Daemon(concurrency: 2)
        #expect(eventually { ((try? daemon.poolPIDs()) ?? [:]).count == 2 })
        daemon.signal(SIGUSR1)
        #expect(eventually { daemon.log.contains("state dump") && daemon.log.contains("slot 1: pid") })
        #expect(daemon.log.contains("consumer: pid"))
    }
}

/// Crash loops are reported, not hidden, and starve systemd's watchdog.
@Suite(.serialized) struct CrashLoopTests {
    @Test func repeatedQuickDeathsAreReportedAsACrashLoopAndStopTheWatchdog() throws {
        let daemon = try Daemon(concurrency: 2, environment: ["WATCHDOG_USEC": "400000"], withNotify: true)
        let notify = try #require(daemon.notify)
        #expect(notify.waitFor { $0.contains("READY=1") } != nil)
        #expect(notify.waitFor { $0 == "WATCHDOG=1" } != nil)
        #expect(eventually { ((try? daemon.poolPIDs()) ?? [:]).count == 2 })
        for _ in 0..<5 {
            let victim = try #require(try daemon.poolPIDs()[0])
            kill(victim, SIGKILL)
            #expect(
                eventually(timeout: 5) {
                    guard let next = (try? daemon.poolPIDs())?[0] else { return false }
                    return next != victim
                }
            )
        }
        let stats = try daemon.stats()
        #expect(stats["crash_loop"]?.boolValue == true)
        #expect(stats["state"]?.stringValue == "degraded")
        #expect(stats["status"]?.stringValue?.contains("crash loop: pool 0") == true)
        let slot = stats["children"]?.arrayValue?.first { $0["slot"]?.intValue == 0 }
        #expect(slot?["crash_loop"]?.boolValue == true)
        #expect(slot?["restarts"]?.intValue == 5)
        #expect(notify.waitFor { $0.contains("STATUS=") && $0.contains("crash loop: pool 0") } != nil)
        #expect(daemon.log.contains("crash-looping"))
        let table = try daemon.ctl(["stats"])
        #expect(table.stdout.contains("[crash loop]"))

        // From now on the watchdog is starved, so systemd would restart the service.
        notify.drain()
        let seen = notify.messages.count
        usleep(1_000_000)
        notify.drain()
        #expect(!notify.messages[seen...].contains("WATCHDOG=1"))
    }
}
