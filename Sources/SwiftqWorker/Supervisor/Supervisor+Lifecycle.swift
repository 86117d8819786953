import Logging
import SwiftqConsumer
import SwiftqCore
import SwiftqPlatform
import SwiftqPool

#if canImport(Glibc)
import Glibc
#endif

/// Signals, shutdown, reload, and what the supervisor tells systemd.
extension Supervisor {
    /// Handles one signal on the loop (never inside a signal handler).
    func handle(signal: Int32) {
        switch signal {
        case SIGCHLD:
            reapChildren()
        case SIGTERM, SIGINT:
            if case .stopping = state {
                logger.warning("\(UnixSignal.name(of: signal)) again: cold shutdown")
                beginShutdown(cold: true)
            } else {
                logger.info("\(UnixSignal.name(of: signal)): warm shutdown")
                beginShutdown(cold: false)
            }
        case SIGQUIT:
            logger.warning("SIGQUIT: cold shutdown")
            beginShutdown(cold: true)
        case SIGHUP:
            logger.info("SIGHUP: reloading \(configurationPath)")
            _ = reload()
        case SIGUSR1:
            dumpState()
        default:
            logger.debug("ignoring \(UnixSignal.name(of: signal))")
        }
    }

    /// Warm shutdown: stop fetching, let running tasks finish within `worker.shutdown_timeout`, then let
    /// the children go. Cold: kill every child now. Either way `STOPPING=1` goes out first.
    ///
    /// Order (written down, as shutdown order matters): 1. STOPPING=1; 2. tell the consumer (it stops
    /// fetching, lets its pool finish the running tasks and stops it, reports `drained` and exits; cold, it
    /// kills its pool at once); 3. past the deadline, SIGKILL the consumer, whose pool children die with it
    /// (`PR_SET_PDEATHSIG`); 4. the blueprint's stop closes the control socket and the lifeline.
    func beginShutdown(cold: Bool) {
        if case .stopping(let alreadyCold) = state, alreadyCold || !cold { return }
        state = .stopping(cold: cold)
        for child in allChildren {
            if let timer = child.respawnTimer { loop.cancel(timer) }
            child.respawnTimer = nil
        }
        let timeout = configuration.worker.shutdownTimeout
        if cold {
            notifier.stopping(status: "stopping (cold)")
            consumerChannel?.send(SupervisorMessage.shutdown(cold: true, timeout: nil).json)
            // The consumer gets a moment to hand unacknowledged messages back, then it is killed too.
            shutdownDeadline = .now + .seconds(2)
        } else {
            notifier.stopping(
                status: "stopping (warm): waiting up to \(timeout.configurationString) for running tasks"
            )
            if let channel = consumerChannel, consumer.isAlive {
                channel.send(SupervisorMessage.shutdown(cold: false, timeout: timeout.seconds).json)
            }
            shutdownDeadline = .now + timeout + .seconds(1)
        }
    }

    /// Past the shutdown deadline, kills what is left.
    func enforceShutdownDeadline() {
        guard case .stopping = state, let deadline = shutdownDeadline, ContinuousClock.now >= deadline else { return }
        let left = [consumer].filter(\.isAlive)
        if !left.isEmpty {
            logger.warning("shutdown deadline passed: killing \(left.count) child process(es)")
            for child in left { ChildProcess.signal(child.pid, SIGKILL) }
        }
        shutdownDeadline = .now + .seconds(2)
    }

    /// Re-reads and validates the configuration file and applies what can change in place. An invalid
    /// file is rejected and the running configuration kept. Returns the error text on failure.
    func reload() -> String? {
        if case .stopping = state { return "shutting down" }
        let previousState = state
        state = .reloading
        notifier.reloading()
        defer {
            state = previousState
            let status = statusLine
            lastStatus = status
            notifier.ready(status: status)
        }
        let updated: Configuration
        do {
            // The same loading as at startup: the environment and password files are applied again.
            updated = try Configuration.load(contentsOf: configurationPath)
        } catch {
            let message = "\(error)"
            logger.error("reload rejected; keeping the running configuration:\n\(message)")
            reloads.failed += 1
            reloads.lastOK = false
            reloads.lastError = message
            reloads.lastAt = wallClockSeconds()
            return message
        }
        apply(updated)
        reloads.succeeded += 1
        reloads.lastOK = true
        reloads.lastError = nil
        reloads.lastAt = wallClockSeconds()
        logger.info("reload applied")
        return nil
    }

    private func apply(_ updated: Configuration) {
        let previous = configuration
        var effective = updated
        // The control socket is bound before anything else and shared by every client: moving it
        // in place would strand clients. It changes on restart only.
        if updated.control != previous.control {
            logger.warning("control.* changes take effect on restart; keeping the current socket settings")
            effective.control = previous.control
        }
        if updated.worker.passEnvironment != previous.worker.passEnvironment {
            // The consumer got its environment when it was spawned; its pool children inherit from it.
            logger.warning("worker.pass_environment changes take effect when the consumer next starts (restart)")
        }
        // The pool's kind decides what the consumer process is made of: it changes when the consumer restarts.
        if updated.worker.pool != previous.worker.pool {
            logger.warning("worker.pool changes take effect on restart; keeping \(previous.worker.pool.rawValue)")
            effective.worker.pool = previous.worker.pool
        }
        // The monitoring listener is bound at startup; the consumer counts task metrics only while one serves them,
        // so it must see the address in use, not the new one.
        if updated.metrics.listen != previous.metrics.listen {
            logger.warning("metrics.listen changes take effect on restart; keeping the current listener")
            effective.metrics.listen = previous.metrics.listen
        }
        if updated.logging.level != previous.logging.level {
            DaemonLog.level = Logger.Level(updated.logging.level)
            // Children spawned from now on inherit the level through the environment.
            setenv("SWIFTQ_LOG_LEVEL", updated.logging.level.rawValue, 1)
            logger.info("logging.level is now \(updated.logging.level.rawValue)")
        }
        configuration = effective
        // The consumer parses this text: the resolved values, and the control settings actually in use.
        let text = effective.yaml(maskingSecrets: false)
        configurationText = text
        policy.maximumDelay = effective.worker.restartBackoffMax
        consumerChannel?.send(
            SupervisorMessage.configure(yaml: text, file: configurationPath, daemonID: daemonID).json
        )
        reloadBeat()  // Supervisor+Beat.swift
        if updated.worker.concurrency != previous.worker.concurrency {
            // The consumer resizes its pool when it applies the configuration just sent.
            logger.info("worker.concurrency \(previous.worker.concurrency) -> \(updated.worker.concurrency)")
        }
    }

    /// SIGUSR1: the process table and state, to the log.
    func dumpState() {
        logger.notice("state dump: \(stateName); \(statusLine)")
        for child in allChildren {
            var line = "\(child.role.name)"
            line += ": pid \(child.pid), \(child.state.rawValue), \(child.restarts) restart(s)"
            if let exit = child.lastExit { line += ", last exit: \(exit)" }
            logger.notice("\(line)")
        }
        consumerChannel?.send(SupervisorMessage.dump.json)
    }

    // MARK: Health and status

    /// Healthy: ``healthProblems`` is empty (the consumer is up and heartbeating, a pool child lives, the broker is
    /// reachable or has not been away longer than `health.broker_grace`, no crash loop). Only then does the
    /// supervisor feed systemd's watchdog; `/healthz` and `swiftqctl ping` say the same.
    var isHealthy: Bool { consumerReady && healthProblems.isEmpty }

    /// A crash loop of the supervisor's own children, or of a pool slot as the consumer reports it.
    var crashLooping: Bool {
        allChildren.contains { policy.isCrashLooping($0.history, at: .now) } || !loopingPoolSlots.isEmpty
    }

    /// Pool slots the consumer reports as crash-looping.
    var loopingPoolSlots: [Int64] {
        poolRows.filter { $0["crash_loop"]?.boolValue == true }.compactMap { $0["slot"]?.intValue }
    }

    var stateName: String {
        switch state {
        case .starting: "starting"
        case .running: crashLooping ? "degraded" : "running"
        case .reloading: "reloading"
        case .stopping(let cold): cold ? "stopping (cold)" : "stopping (warm)"
        }
    }

    /// The one-line summary for `STATUS=` and logs.
    var statusLine: String {
        let wanted = configuration.worker.effectiveConcurrency
        let alive = poolRows.filter { $0["pid"]?.intValue != nil }.count
        var parts = ["\(stateName)", "consumer \(consumer.isAlive ? (consumerReady ? "up" : "starting") : "down")"]
        parts.append("pool \(alive)/\(wanted)")
        switch brokerConnected {
        case true?: parts.append("broker connected")
        case false?: parts.append("broker unreachable")
        case nil: break
        }
        let restarts =
            allChildren.reduce(0) { $0 + $1.restarts } + poolRows.reduce(0) { $0 + Int($1["restarts"]?.intValue ?? 0) }
        if restarts > 0 { parts.append("\(restarts) restart(s)") }
        let looping = allChildren.filter { policy.isCrashLooping($0.history, at: .now) }
        if !looping.isEmpty || !loopingPoolSlots.isEmpty {
            let names = looping.map(\.role.name) + loopingPoolSlots.map { "pool \($0)" }
            parts.append("crash loop: \(names.joined(separator: ", "))")
        }
        if let beat = beatStatusFragment { parts.append(beat) }
        if reloads.lastOK == false { parts.append("last reload failed") }
        return parts.joined(separator: ", ")
    }

    /// Sends `STATUS=` when the summary changed.
    /// A consumer whose heartbeat is older than this is wedged (stopped, or its loop stuck): killed and replaced.
    static let consumerHeartbeatLimit: Duration = .seconds(10)
    /// A consumer whose fetch made no progress for this long while messages waited at the broker, its window had
    /// room and the pool had an idle child has silently stopped consuming: killed and replaced.
    static let consumerFetchStallLimit: Duration = .seconds(60)

    /// Kills a consumer that is alive but no longer working (REVIEW D18; Celery's "stops consuming after a broker
    /// reset"), so that the usual restart replaces it. Checked every second with the status.
    func checkConsumerStall() {
        guard state == .running, consumerReady, consumer.isAlive, consumer.state == .running,
            let beat = lastConsumerHeartbeat
        else { return }
        let reason: String
        if beat.duration(to: .now) > Self.consumerHeartbeatLimit {
            reason = "no heartbeat for \(beat.duration(to: .now)) (limit \(Self.consumerHeartbeatLimit))"
        } else if let fetch = consumerFetch, fetch.starved,
            fetch.idle > Double(Self.consumerFetchStallLimit.components.seconds)
        {
            reason =
                "its fetch made no progress for \(Int(fetch.idle))s while messages waited and the pool had room "
                + "(limit \(Self.consumerFetchStallLimit))"
        } else {
            return
        }
        logger.error("killing the consumer (pid \(consumer.pid)): \(reason); it is replaced")
        lastConsumerHeartbeat = nil
        consumerFetch = nil
        ChildProcess.signal(consumer.pid, SIGKILL)
    }

    func refreshStatus() {
        checkConsumerStall()
        guard state == .running || state == .reloading else { return }
        let status = statusLine
        if status != lastStatus {
            lastStatus = status
            notifier.status(status)
        }
    }

    func setStatus(_ text: String) {
        lastStatus = text
        notifier.status(text)
    }
}
