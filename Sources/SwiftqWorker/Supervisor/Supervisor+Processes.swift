import Logging
import OrderedCollections
import SwiftqCore
import SwiftqPlatform

#if canImport(Glibc)
import Glibc
#endif

/// Spawning, reaping and respawning of the consumer and the pool children.
extension Supervisor {
    /// The environment children get: ``ChildEnvironment``'s allow-list (no secrets, no systemd notification
    /// variables: only the main process talks to systemd; `NotifyAccess=main`), with the supervisor's pid.
    var childEnvironment: [String] { ChildEnvironment.forChild }

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

    /// Spawns the child for a pool slot and hands the other end of its channel to the consumer (or keeps
    /// it until a consumer is there to take it).
    func spawnPoolChild(_ child: ManagedChild) throws(SystemError) {
        guard case .pool(let slot) = child.role else { return }
        guard let (pid, consumerEnd) = try spawnRole([InternalRole.poolChild, "--slot", "\(slot)"]) else { return }
        child.pid = pid
        child.state = .running
        child.startedAt = .now
        logger.debug("spawned pool child \(slot) (pid \(pid))")
        if let channel = consumerChannel, consumer.isAlive {
            channel.send(
                ChannelMessage.make("attach_slot", ["slot": .int(Int64(slot)), "pid": .int(Int64(pid))]),
                descriptors: [consumerEnd]
            )
        } else {
            if let stale = pendingSlotEnds[slot] { Descriptors.close(stale) }
            pendingSlotEnds[slot] = consumerEnd
        }
    }

    /// Spawns the consumer, sends it the configuration and every pool channel waiting for it.
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
            ChannelMessage.make(
                "configure",
                ["yaml": .string(configurationText), "file": .string(configurationPath)]
            )
        )
        for (slot, end) in pendingSlotEnds.sorted(by: { $0.key < $1.key }) {
            let child = pool.first { $0.role == .pool(slot: slot) }
            channel.send(
                ChannelMessage.make(
                    "attach_slot",
                    ["slot": .int(Int64(slot)), "pid": .int(Int64(child?.pid ?? 0))]
                ),
                descriptors: [end]
            )
        }
        pendingSlotEnds = [:]
    }

    /// Handles what the consumer says.
    func handleConsumer(_ frame: ReceivedFrame) {
        frame.descriptors.forEach(Descriptors.close)
        let message = frame.message
        switch ChannelMessage.type(of: message) {
        case "ready":
            consumerReady = true
            consumer.state = .running
            lastConsumerHeartbeat = .now
        case "heartbeat":
            lastConsumerHeartbeat = .now
        case "stats":
            if let request = message["request"]?.intValue,
                let reply = pendingConsumerQueries.removeValue(forKey: request)
            {
                reply(message["consumer"])
            }
        case "slot_retired":
            guard let slot = message["slot"]?.intValue else { return }
            if let child = pool.first(where: { $0.role == .pool(slot: Int(slot)) }), child.isAlive {
                // The child exits by itself now that its channel is closed; make sure of it.
                let pid = child.pid
                loop.schedule(after: .seconds(5)) { [weak child] in
                    if let child, child.pid == pid { ChildProcess.signal(pid, SIGKILL) }
                }
            }
        case "broker_state":
            brokerConnected = message["connected"]?.boolValue
            brokerDetail = message["detail"]?.stringValue
            refreshStatus()
        case "drained":
            logger.info("consumer drained its running tasks")
        case "failed":
            logger.error("consumer failed to start: \(message["message"]?.stringValue ?? "unknown reason")")
        default:
            logger.warning("ignoring a consumer message of unknown type: \(message["type"] ?? .null)")
        }
    }

    /// Asks the consumer a question and calls `reply` with its answer, or nil after `timeout`.
    func queryConsumer(_ type: String, timeout: Duration, reply: @escaping (JSONValue?) -> Void) {
        guard let channel = consumerChannel, consumer.isAlive else {
            reply(nil)
            return
        }
        let request = nextQuery
        nextQuery += 1
        pendingConsumerQueries[request] = reply
        channel.send(ChannelMessage.make(type, ["request": .int(request)]))
        loop.schedule(after: timeout) { [unowned self] in
            pendingConsumerQueries.removeValue(forKey: request)?(nil)
        }
    }

    /// Reaps every exited child and decides what happens to its role.
    func reapChildren() {
        // The consumer first: pool children that exit because its death closed their channels must be
        // seen as part of that death, not as crashes of their own.
        let reaped = ChildProcess.reapAll().sorted { lhs, _ in lhs.pid == consumer.pid }
        for (pid, status) in reaped {
            if consumer.pid == pid {
                childExited(consumer, status: status)
            } else if let broker = embeddedBroker, broker.pid == pid {
                childExited(broker, status: status)
            } else if let child = pool.first(where: { $0.pid == pid }) {
                childExited(child, status: status)
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
        if case .stopping = state {
            expected = true
        } else {
            expected =
                child.state == .retiring || child.state == .awaitingConsumer
                || (child.role != .consumer && status.isSuccess)
        }
        var metadata: Logger.Metadata = ["pid": "\(pid)", "status": "\(status)"]
        if case .pool(let slot) = child.role { metadata[DaemonLog.Key.slot] = "\(slot)" }
        if expected {
            logger.debug("\(child.role.name) exited", metadata: metadata)
        } else {
            logger.error("\(child.role.name) died unexpectedly", metadata: metadata)
        }

        switch child.role {
        case .broker:
            if expected {
                child.state = .stopped
                return
            }
            scheduleRespawn(child, uptime: uptime)
        case .consumer:
            consumerReady = false
            consumerChannel?.close()
            consumerChannel = nil
            for reply in pendingConsumerQueries.values { reply(nil) }
            pendingConsumerQueries = [:]
            if expected {
                child.state = .stopped
                return
            }
            // The pool children's channels ended with the consumer: they exit on their own; make sure
            // none keeps running a task whose message the broker will hand out again anyway. The slots
            // start afresh with the next consumer.
            for poolChild in pool where poolChild.state != .retiring && poolChild.state != .stopped {
                if let timer = poolChild.respawnTimer { loop.cancel(timer) }
                poolChild.respawnTimer = nil
                poolChild.state = .awaitingConsumer
                if poolChild.isAlive { ChildProcess.signal(poolChild.pid, SIGKILL) }
            }
            scheduleRespawn(child, uptime: uptime)
        case .pool(let slot):
            if let channel = consumerChannel {
                var fields: OrderedDictionary<String, JSONValue> = ["slot": .int(Int64(slot)), "pid": .int(Int64(pid))]
                fields["status"] = status.json
                channel.send(ChannelMessage.make("slot_exited", fields))
            }
            if child.state == .retiring {
                // A slot retired by a pool shrink leaves the table.
                pool.removeAll { $0 === child }
                return
            }
            if case .stopping = state {
                child.state = .stopped
                return
            }
            if child.state == .awaitingConsumer || !consumer.isAlive {
                child.state = .awaitingConsumer
                if consumer.isAlive { respawn(child) }
                return
            }
            if status.isSuccess {
                // A clean exit outside a retire means the consumer closed this slot's channel: usually
                // because it is dying (the kernel closes a dying process's descriptors before its parent
                // can reap it, so this exit may be seen first). Not the slot's crash: start it again with
                // whichever consumer serves next.
                child.state = .awaitingConsumer
                loop.schedule(after: .milliseconds(200)) { [unowned self, unowned child] in
                    if consumer.isAlive && consumerChannel?.isOpen == true { respawn(child) }
                }
                return
            }
            scheduleRespawn(child, uptime: uptime)
        }
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
        guard child.state == .backoff || child.state == .awaitingConsumer else { return }
        do {
            switch child.role {
            case .consumer:
                try spawnConsumer()
                // The pool children died with the old consumer; start the slots afresh for the new one.
                for poolChild in pool where !poolChild.isAlive && poolChild.state == .awaitingConsumer {
                    if let timer = poolChild.respawnTimer { loop.cancel(timer) }
                    poolChild.respawnTimer = nil
                    try spawnPoolChild(poolChild)
                }
            case .broker:
                try spawnEmbeddedBroker()
            case .pool:
                if !consumer.isAlive {
                    // Wait for the consumer; its respawn starts this slot.
                    return
                }
                try spawnPoolChild(child)
            }
            logger.info("respawned \(child.role.name) (pid \(child.pid)); restarts: \(child.restarts)")
        } catch {
            logger.error("cannot respawn \(child.role.name): \(error)")
            scheduleRespawn(child, uptime: .zero)
        }
    }

    /// Sends SIGKILL to every child (startup failure, cold shutdown) and waits briefly for them.
    func killEveryChild() {
        let pids = allChildren.filter(\.isAlive).map(\.pid)
        for pid in pids { ChildProcess.signal(pid, SIGKILL) }
        for pid in pids { _ = ChildProcess.wait(pid: pid, timeout: .seconds(2)) }
        consumer.pid = 0
        for child in pool { child.pid = 0 }
    }

    /// Grows or shrinks the pool to `count` slots (reload of `worker.concurrency`).
    func resizePool(to count: Int) {
        let current = pool.filter { $0.state != .retiring && $0.state != .stopped }.count
        if count > current {
            var slot = 0
            var added = 0
            while added < count - current {
                if let existing = pool.first(where: { $0.role == .pool(slot: slot) }) {
                    if existing.state == .stopped || (existing.state == .retiring && !existing.isAlive) {
                        existing.state = .backoff
                        respawn(existing)
                        added += 1
                    }
                } else {
                    let child = ManagedChild(role: .pool(slot: slot))
                    pool.append(child)
                    child.state = .backoff
                    respawn(child)
                    added += 1
                }
                slot += 1
            }
        } else if count < current {
            let active = pool.filter { $0.state != .retiring && $0.state != .stopped }
            let retiring = active.sorted { lhs, rhs in
                if case .pool(let a) = lhs.role, case .pool(let b) = rhs.role { return a > b }
                return false
            }.prefix(current - count)
            for child in retiring {
                guard case .pool(let slot) = child.role else { continue }
                if let timer = child.respawnTimer { loop.cancel(timer) }
                child.respawnTimer = nil
                if child.isAlive {
                    child.state = .retiring
                    if let channel = consumerChannel {
                        channel.send(ChannelMessage.make("retire_slot", ["slot": .int(Int64(slot))]))
                    } else {
                        ChildProcess.signal(child.pid, SIGKILL)
                    }
                } else {
                    child.state = .stopped
                }
            }
        }
        pool.sort { lhs, rhs in
            if case .pool(let a) = lhs.role, case .pool(let b) = rhs.role { return a < b }
            return false
        }
    }
}

/// Internal role arguments: `swiftqd` re-executes itself with one of these as its first argument.
/// They are not for people (leading underscore) and not documented in the man page.
public enum InternalRole {
    /// A consumer process.
    public static let consumer = "_consumer"
    /// A prefork pool child.
    public static let poolChild = "_pool-child"
    /// Arms the parent-death signal, then execs the rest of the command line (for helper programs such
    /// as the embedded broker's redis-server, which cannot arm it themselves).
    public static let exec = "_exec"
}
