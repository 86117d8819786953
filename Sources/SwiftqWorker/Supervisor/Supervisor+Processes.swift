import Logging
import OrderedCollections
import SwiftqConsumer
import SwiftqCore
import SwiftqPlatform
import SwiftqPool

#if canImport(Glibc)
import Glibc
#endif

/// Spawning, reaping and respawning of the consumer (the embedded broker's are in EmbeddedBroker.swift).
extension Supervisor {
    /// The environment children get: ``ChildEnvironment``'s allow-list (no secrets, no systemd notification
    /// variables: only the main process talks to systemd; `NotifyAccess=main`), with the supervisor's pid, plus the
    /// variables `worker.pass_environment` names (the consumer passes them on to its pool children in turn).
    var childEnvironment: [String] {
        ChildEnvironment.filtered(ChildProcess.currentEnvironment, pass: configuration.worker.passEnvironment)
    }

    /// Re-executes this binary with an internal role: its channel (one end of a new socketpair) as fd 3,
    /// the lifeline as fd 4. Returns the pid and the other end of the channel, or nil before the lifeline
    /// exists.
    private func spawnRole(_ arguments: [String]) throws(SystemError) -> (pid: Int32, channel: CInt)? {
        guard let lifeline else { return nil }
        let (ours, theirs) = try Descriptors.socketPair()
        defer { Descriptors.close(theirs) }
        do {
            let pid = try ChildProcess.spawn(
                path: executable,
                arguments: [executable] + arguments,
                environment: childEnvironment,
                descriptors: [theirs, lifeline.read]
            )
            return (pid, ours)
        } catch {
            Descriptors.close(ours)
            throw error
        }
    }

    /// Spawns the consumer and sends it the configuration.
    func spawnConsumer() throws(SystemError) {
        guard let (pid, supervisorEnd) = try spawnRole([InternalRole.consumer]) else { return }
        consumer.pid = pid
        consumer.state = .spawning
        consumer.startedAt = .now
        consumerReady = false
        lastConsumerHeartbeat = .now
        let channel = FramedChannel(descriptor: supervisorEnd, loop: loop)
        channel.onFrame = { [unowned self] frame in handleConsumer(frame) }
        channel.onClose = { [unowned self] reason in
            logger.debug("consumer channel closed: \(reason)")
            consumerChannel = nil
        }
        consumerChannel = channel
        logger.debug("spawned consumer (pid \(pid))")
        channel.send(
            SupervisorMessage.configure(yaml: configurationText, file: configurationPath, daemonID: daemonID).json
        )
    }

    /// Handles what the consumer says.
    func handleConsumer(_ frame: ReceivedFrame) {
        frame.descriptors.forEach(Descriptors.close)
        let message: ConsumerMessage
        do {
            message = try ConsumerMessage(decoding: frame.message)
        } catch {
            logger.error("ignoring a malformed message from the consumer: \(error)")
            return
        }
        switch message {
        case .ready(_, let pool):
            updatePool(pool)
            consumerReady = true
            consumer.state = .running
            lastConsumerHeartbeat = .now
        case .heartbeat(_, let pool, let fetchIdle, let fetchStarved):
            updatePool(pool)
            lastConsumerHeartbeat = .now
            consumerFetch = fetchIdle.map { ($0, fetchStarved) }
        case .stats(let request, let consumerStats):
            if let reply = pendingConsumerQueries.removeValue(forKey: request) {
                if let rows = consumerStats["slots"]?.arrayValue { updatePool(rows) }
                reply(consumerStats)
            }
        case .pool(let rows):
            updatePool(rows)
        case .brokerState(let connected, let detail):
            brokerConnected = connected
            brokerDetail = detail
            noteBrokerState(connected: connected)
            refreshStatus()
        case .drained:
            logger.info("consumer drained its running tasks")
        case .failed(let text):
            logger.error("consumer failed to start: \(text)")
        case .controlReply(let request, let reply):
            // Wrapped so that "no reply" (shutdown) differs from "no answer in time" (nil).
            pendingConsumerQueries.removeValue(forKey: request)?(.object(reply.map { ["reply": $0] } ?? [:]))
        case .shutdownRequested(let reason):
            logger.warning("remote shutdown: \(reason); warm shutdown")
            if case .stopping = state { return }
            loop.schedule(after: .milliseconds(10)) { [unowned self] in beginShutdown(cold: false) }
        }
    }

    /// Takes the consumer's pool rows (with a heartbeat, a slot's exit or start, or a stats reply); a change
    /// of the crash-loop picture goes to `STATUS=` at once.
    func updatePool(_ rows: [JSONValue]) {
        let looping = { (rows: [JSONValue]) in rows.filter { $0["crash_loop"]?.boolValue == true }.count }
        let changed = looping(rows) != looping(poolRows)
        poolRows = rows
        if changed { refreshStatus() }
    }

    /// Asks the consumer for its stats and calls `reply` with its answer, or nil after `timeout`.
    func queryStats(timeout: Duration, reply: @escaping (JSONValue?) -> Void) {
        guard let channel = consumerChannel, consumer.isAlive else {
            reply(nil)
            return
        }
        let request = nextQuery
        nextQuery += 1
        pendingConsumerQueries[request] = reply
        channel.send(SupervisorMessage.stats(request: request).json)
        loop.schedule(after: timeout) { [unowned self] in
            pendingConsumerQueries.removeValue(forKey: request)?(nil)
        }
    }

    /// Forwards a consumer-owned command of the control table to the consumer; `reply` gets `{"reply": …}` (`{}`
    /// for a command that has no reply), or nil when the consumer did not answer within `timeout`.
    func queryControl(
        method: String,
        arguments: JSONValue,
        timeout: Duration,
        reply: @escaping (JSONValue?) -> Void
    ) {
        guard let channel = consumerChannel, consumer.isAlive else {
            reply(nil)
            return
        }
        let request = nextQuery
        nextQuery += 1
        pendingConsumerQueries[request] = reply
        channel.send(SupervisorMessage.control(request: request, method: method, arguments: arguments).json)
        loop.schedule(after: timeout) { [unowned self] in
            pendingConsumerQueries.removeValue(forKey: request)?(nil)
        }
    }

    /// Reaps every exited child and decides what happens to its role.
    func reapChildren() {
        for (pid, status, usage) in ChildProcess.reapAllWithUsage() {
            reapedUsage = reapedUsage + usage
            if consumer.pid == pid {
                childExited(consumer, status: status)
            } else if let broker = embeddedBroker, broker.pid == pid {
                childExited(broker, status: status)
            } else if beat.child.isAlive && beat.child.pid == pid {
                beatExited(status: status)  // Supervisor+Beat.swift
            } else {
                logger.debug("reaped an unknown child \(pid): \(status)")
            }
        }
    }

    private func childExited(_ child: ManagedChild, status: ExitStatus) {
        let pid = child.pid
        let uptime = child.startedAt.duration(to: .now)
        child.pid = 0
        child.lastExit = status
        child.lastExitWallClock = wallClockSeconds()
        let expected: Bool
        if case .stopping = state { expected = true } else { expected = false }
        let metadata: Logger.Metadata = ["pid": "\(pid)", "status": "\(status)"]
        if expected {
            logger.debug("\(child.role.name) exited", metadata: metadata)
        } else {
            logger.error("\(child.role.name) died unexpectedly", metadata: metadata)
        }
        // The beat child is reaped by beatExited (Supervisor+Beat.swift), never here.
        if child.role == .consumer {
            consumerReady = false
            consumerChannel?.close()
            consumerChannel = nil
            for reply in pendingConsumerQueries.values { reply(nil) }
            pendingConsumerQueries = [:]
            // The pool children died with their parent (PR_SET_PDEATHSIG); the next consumer starts its own.
            poolRows = []
            // A consumer that died (or was killed at the shutdown deadline) could not say worker-offline itself.
            if !expected || status != .exited(code: 0) { announceConsumerOffline(pid: pid) }
        }
        if expected {
            child.state = .stopped
            return
        }
        scheduleRespawn(child, uptime: uptime)
    }

    private func scheduleRespawn(_ child: ManagedChild, uptime: Duration) {
        let delay = policy.recordDeath(&child.history, uptime: uptime, at: .now)
        child.restarts += 1
        child.state = .backoff
        if policy.isCrashLooping(child.history, at: .now) {
            logger.critical(
                "\(child.role.name) is crash-looping: \(child.history.deaths.count) deaths within \(policy.crashLoopWindow)"
            )
        }
        if delay > .zero { logger.warning("respawning \(child.role.name) in \(delay)") }
        child.respawnTimer = loop.schedule(after: delay) { [unowned self, unowned child] in
            child.respawnTimer = nil
            respawn(child)
        }
    }

    /// Spawns a replacement, unless the supervisor is stopping; a failed spawn is retried with backoff.
    func respawn(_ child: ManagedChild) {
        if case .stopping = state { return }
        guard child.state == .backoff else { return }
        do {
            switch child.role {
            case .consumer: try spawnConsumer()
            case .broker: try spawnEmbeddedBroker()
            case .beat: try spawnBeat()  // Supervisor+Beat.swift
            }
            logger.info("respawned \(child.role.name) (pid \(child.pid)); restarts: \(child.restarts)")
        } catch {
            logger.error("cannot respawn \(child.role.name): \(error)")
            scheduleRespawn(child, uptime: .zero)
        }
    }

    /// Sends SIGKILL to every child (startup failure, cold shutdown) and waits briefly for them; the pool
    /// children die with the consumer.
    func killEveryChild() {
        let pids = allChildren.filter(\.isAlive).map(\.pid)
        for pid in pids { ChildProcess.signal(pid, SIGKILL) }
        for pid in pids { _ = ChildProcess.wait(pid: pid, timeout: .seconds(2)) }
        consumer.pid = 0
    }
}
