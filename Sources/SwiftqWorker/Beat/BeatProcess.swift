import Logging
import OrderedCollections
import SwiftqConsumer
import SwiftqCore
import SwiftqPlatform
import SwiftqPool
import SwiftqRedis

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

#if canImport(Glibc)
import Glibc
#endif

/// The beat process: keeps the schedule, holds (or waits for) the cluster-wide lease, and publishes due runs.
///
/// Two ways to run: as a child of the supervisor (`_beat`, channel on fd 3, lifeline on fd 4; configuration,
/// reloads and `beat run` requests arrive as ``BeatMessage``s, and it reports its state once a second), or alone
/// (`swiftqd beat`: reads the file itself, SIGHUP reloads it, SIGTERM/SIGINT stop it).
///
/// Single-threaded: everything below belongs to the event loop's thread, including the blocking Redis calls (one
/// round trip each; the process has nothing else to do meanwhile). Decisions are made by the pure
/// ``BeatScheduler`` (which runs are due) and ``BeatLease`` (whether this node may publish); this type does the I/O
/// they ask for.
final class BeatProcess {
    static let supervisorDescriptor: CInt = 3
    static let lifelineDescriptor: CInt = 4
    static let tickInterval: Duration = .milliseconds(100)

    let loop = EventLoop()
    var logger = DaemonLog.logger(role: "beat")
    let standaloneConfigurationPath: String?
    var configuration = Configuration()
    var configured = false
    var supervisor: FramedChannel?
    var scheduler = BeatScheduler()
    var lease = BeatLease(ttl: 10)
    var lock: BeatRedisLock?
    /// The RabbitMQ publisher, when the broker is RabbitMQ (the lock is then in the Redis result backend).
    var amqp: BeatAMQPPublisher?
    let layout = KombuRedisLayout()
    let node: String
    var lockHolder: String?
    var reconnectAt = 0.0
    var lastReport = 0.0
    var exitCode: Int32 = 0
    var stopping = false
    var published = 0
    /// Runs this process published, by entry (scheduled and on request), for `swiftq_beat_runs_total{entry}`.
    var runs: [String: Int] = [:]
    var lastError: String?

    /// - Parameter configurationPath: the file to read, when running alone; nil as the supervisor's child.
    init(configurationPath: String?) {
        standaloneConfigurationPath = configurationPath
        node = "\(NodeName.expand("beat@%h")):\(getpid()):\(UUID().uuidString.prefix(8).lowercased())"
    }

    static func now() -> Double { wallClockSeconds() }

    func run() -> Int32 {
        UnixSignal.ignore(SIGPIPE)
        if let path = standaloneConfigurationPath {
            do {
                try apply(try Configuration.load(contentsOf: path), initial: true)
            } catch {
                logger.critical("\(error)")
                return SwiftqDaemon.ExitCode.configuration
            }
            let signals: SignalPipe
            do {
                signals = try SignalPipe(signals: [SIGTERM, SIGINT, SIGHUP])
            } catch {
                logger.critical("cannot handle signals: \(error)")
                return 1
            }
            loop.watch(signals.readDescriptor) { [unowned self] _ in
                for signal in signals.drain() {
                    if signal == SIGHUP { reloadStandalone(path) } else { stop() }
                }
            }
        } else {
            do {
                try ChildProcess.setParentDeathSignal(SIGKILL)
            } catch {
                logger.error("cannot arm the parent-death signal: \(error)")
            }
            // Not `getppid() == 1`: the supervisor may itself be PID 1 (a container's init).
            if ChildProcess.parentIsGone { return 70 }
            UnixSignal.ignore(SIGINT)
            UnixSignal.ignore(SIGHUP)
            let channel = FramedChannel(descriptor: Self.supervisorDescriptor, loop: loop)
            channel.onFrame = { [unowned self] frame in handleSupervisor(frame) }
            channel.onClose = { [unowned self] _ in stop() }
            supervisor = channel
            loop.watch(Self.lifelineDescriptor) { [unowned self] _ in stop() }
            let signals: SignalPipe
            do {
                signals = try SignalPipe(signals: [SIGTERM])
            } catch {
                logger.critical("cannot handle signals: \(error)")
                return 1
            }
            loop.watch(signals.readDescriptor) { [unowned self] _ in
                _ = signals.drain()
                stop()
            }
            guard loop.run(until: { self.configured || self.stopping }, timeout: .seconds(30)), configured else {
                logger.error("no configuration from the supervisor within 30s; exiting")
                return 1
            }
        }
        logger.info("beat started", metadata: ["node": "\(node)", "entries": "\(scheduler.entries.count)"])
        let ticker = loop.repeating(every: Self.tickInterval) { [unowned self] in tick() }
        while !stopping { loop.runOnce(timeout: .milliseconds(500)) }
        ticker.cancel()
        if lease.stop() == .release {
            do {
                try lock?.release(now: Self.now())
            } catch {
                // The lease then expires by itself within beat.lock_timeout.
                logger.warning("cannot release the beat lease: \(error)")
            }
        }
        saveState()
        supervisor?.flush(blockingFor: .seconds(1))
        logger.info("beat stopped")
        return exitCode
    }

    func stop() {
        stopping = true
    }

    // MARK: Configuration

    /// Takes a new configuration: the schedule is applied (new entries start, removed ones stop, changed ones
    /// recompute their next run); the lease settings apply on the next acquisition.
    func apply(_ new: Configuration, initial: Bool) throws(ConfigurationError) {
        var entries: OrderedDictionary<String, (entry: Configuration.BeatEntry, zone: TimeZoneInfo)> = [:]
        for entry in new.beat.schedule.values {
            let zoneName = entry.timezone ?? new.beat.timezone
            do {
                entries[entry.name] = (entry, try TimeZoneInfo.load(named: zoneName))
            } catch {
                throw ConfigurationError(diagnostics: [
                    ConfigurationDiagnostic(
                        file: "beat",
                        keyPath: "beat.schedule.\(entry.name).timezone",
                        message: error.message
                    )
                ])
            }
        }
        let brokerChanged =
            new.broker.url != configuration.broker.url || new.beat.lockName != configuration.beat.lockName
        configuration = new
        if initial || brokerChanged {
            lock = nil
            amqp = nil
        }
        if initial { lease = BeatLease(ttl: new.beat.lockTimeout.secondsValue) }
        var lastRuns: [String: (at: Double, fingerprint: String)] = [:]
        if initial {
            let (stored, problem) = BeatStateFile.load(new.beat.state)
            if let problem { logger.warning("beat.state not used, the schedule starts afresh: \(problem)") }
            lastRuns = stored
        }
        scheduler.apply(entries, lastRuns: lastRuns, now: Self.now())
        configured = true
        if !initial {
            logger.info("schedule reloaded", metadata: ["entries": "\(scheduler.entries.count)"])
        }
    }

    private func reloadStandalone(_ path: String) {
        do {
            try apply(try Configuration.load(contentsOf: path), initial: false)
        } catch {
            logger.error("reload rejected, keeping the current schedule:\n\(error)")
        }
    }

    func handleSupervisor(_ frame: ReceivedFrame) {
        frame.descriptors.forEach(Descriptors.close)
        let message = frame.message
        switch ChannelMessage.type(of: message) {
        case BeatMessage.configure:
            guard let yaml = message["yaml"]?.stringValue else { return }
            do {
                try apply(
                    try Configuration.parse(yaml, file: message["file"]?.stringValue ?? "config"),
                    initial: !configured
                )
            } catch {
                logger.error("configuration rejected:\n\(error)")
                if !configured { stop() }
            }
        case BeatMessage.runNow:
            let request = message["request"] ?? .null
            let name = message["entry"]?.stringValue ?? ""
            var reply: OrderedDictionary<String, JSONValue> = ["request": request, "entry": .string(name)]
            if let error = runNow(name) {
                reply["error"] = .string(error)
            } else {
                reply["published"] = true
            }
            supervisor?.send(ChannelMessage.make(BeatMessage.runResult, reply))
        case BeatMessage.shutdown:
            stop()
        default:
            logger.warning("ignoring a supervisor message of unknown type: \(message["type"] ?? .null)")
        }
    }

    // MARK: The tick

    func tick() {
        let now = Self.now()
        guard connect(now: now) else { return }
        do {
            switch lease.tick(now: now) {
            case .none: break
            case .acquire:
                if let fence = try lock?.acquire(ttl: lease.ttl, now: now) {
                    lease.acquired(fence: fence, at: now)
                    logger.info("took the beat lease", metadata: ["fence": "\(fence)"])
                    try takeOver(now: now)
                } else {
                    lease.acquireFailed(at: now)
                }
            case .renew:
                if try lock?.renew(ttl: lease.ttl, now: now) == true {
                    lease.renewed(at: now)
                } else {
                    logger.warning("lost the beat lease")
                    lease.lost(at: now)
                }
            case .release:
                try lock?.release(now: now)
            }
            if lease.mayPublish(at: now) {
                for run in scheduler.due(now: now) { try publish(run, now: now) }
            } else {
                // Follow the schedule without publishing: the holder does; a takeover re-reads its record.
                for run in scheduler.due(now: now) { scheduler.published(run, now: now) }
            }
            if now - lastReport >= 1 {
                lastReport = now
                lockHolder = try lock?.holder()
                report()
            }
            lastError = nil
        } catch {
            brokerFailed(error, now: now)
        }
    }

    /// Connects to Redis (the broker, or the result backend on RabbitMQ) when not connected; false while waiting to
    /// retry.
    private func connect(now: Double) -> Bool {
        if lock != nil { return true }
        guard now >= reconnectAt else { return false }
        guard let url = lockURL else {
            if lastError == nil {
                lastError =
                    "beat needs Redis for its lease: a Redis broker, or with RabbitMQ a Redis result_backend.url"
                logger.error("\(lastError ?? "")")
            }
            reconnectAt = now + 60
            return false
        }
        do {
            // Through sentinels, each reconnect asks them for the master again.
            let masterName = isAMQPBroker ? configuration.resultBackend.masterName : configuration.broker.masterName
            let connection = try RedisTarget(parsing: url, masterName: masterName).connect(
                connectTimeout: .seconds(2),
                commandTimeout: .seconds(2),
                clientName: "swiftq:beat"
            )
            if isAMQPBroker && amqp == nil { amqp = try BeatAMQPPublisher(configuration: configuration) }
            lock = BeatRedisLock(connection: connection, name: configuration.beat.lockName, node: node)
            logger.info("beat connected", metadata: ["redis": "\(connection.url.redacted)"])
            return true
        } catch {
            brokerFailed(error, now: now)
            return false
        }
    }

    private var isAMQPBroker: Bool {
        let scheme = configuration.broker.url.split(separator: ":").first.map { $0.lowercased() } ?? ""
        return scheme == "amqp" || scheme == "amqps"
    }

    /// Where the lease lives: the Redis broker, or on RabbitMQ the Redis result backend.
    private var lockURL: String? {
        var url = isAMQPBroker ? (configuration.resultBackend.url ?? "") : configuration.broker.url
        if url == "embedded" {
            url = Configuration.EmbeddedBroker.url(for: configuration, database: isAMQPBroker ? 1 : 0)
        }
        let scheme = url.split(separator: ":").first.map { $0.lowercased() } ?? ""
        return ["redis", "rediss", "redis+socket", "unix", "sentinel"].contains(scheme) ? url : nil
    }

    private func brokerFailed(_ error: any Error, now: Double) {
        let text = "\(error)"
        if text != lastError { logger.error("beat broker error: \(text)") }
        lastError = text
        lock = nil
        lease.lost(at: now)
        reconnectAt = now + 1
    }

    /// After taking the lease: adopt what the previous holder recorded, and publish the runs it missed, so a
    /// takeover neither repeats nor loses a run.
    ///
    /// Which runs were "missed in a takeover" and which "missed in downtime" is told by when a holder was last
    /// alive (its last renewal or release, recorded with the runs): a takeover that follows within two lease times
    /// and a retry replays every run since then; after a longer gap nobody was scheduling, and each entry's
    /// `catch_up` applies instead.
    private func takeOver(now: Double) throws(RedisError) {
        guard let lock else { return }
        let (recorded, alive) = try lock.recordedRuns()
        var window = 0.0
        // The holder renews every third of the lease; a follower sees it expire within one retry.
        if let alive, now - alive <= 2 * lease.ttl + lease.retryInterval { window = now - alive + 1 }
        for (name, at) in recorded where scheduler.entries[name] != nil {
            for run in scheduler.adopt(lastRun: at, for: name, now: now, window: window) {
                try publish(run, now: now)
            }
        }
    }

    /// Publishes one run through the fenced script; the scheduler moves on when it is published (or was already).
    private func publish(_ run: BeatScheduler.Run, now: Double) throws(RedisError) {
        guard let lock, let fence = lease.fence, let state = scheduler.entries[run.entry] else { return }
        let entry = state.entry
        let message = Self.message(for: entry, scheduledAt: run.scheduledAt, now: now)
        let priority = entry.priority ?? 0
        let queue = entry.routingKey ?? entry.queue
        // On RabbitMQ the run is recorded under the lease first, then published; on Redis both in one script.
        let envelope =
            isAMQPBroker
            ? nil : (message.redisEnvelope(queue: queue, priority: priority, replyTo: nil), queue, priority)
        switch try lock.publish(run, fence: fence, envelope: envelope, layout: layout) {
        case .published:
            if isAMQPBroker {
                do {
                    if amqp == nil { amqp = try BeatAMQPPublisher(configuration: configuration) }
                    try amqp?.publish(message, queue: queue, priority: entry.priority)
                } catch {
                    logger.error("run of \(entry.name) recorded but not published to RabbitMQ: \(error)")
                    self.amqp = nil
                    reconnectAt = now + 1
                }
            }
            published += 1
            runs[entry.name, default: 0] += 1
            logger.info(
                "published \(entry.name)",
                metadata: ["task": "\(entry.task)", "id": "\(message.id)", "scheduled": "\(run.scheduledAt)"]
            )
            scheduler.published(run, now: now)
            saveState()
        case .alreadyPublished:
            scheduler.published(run, now: now)
        case .fenced:
            logger.warning("publish of \(entry.name) refused: the lease is no longer ours")
            lease.lost(at: now)
        }
    }

    /// A Celery protocol 2 message, as Python beat's `send_task` builds it: no headers of its own beyond the
    /// entry's; `expires` counted from the scheduled time.
    static func message(for entry: Configuration.BeatEntry, scheduledAt: Double, now: Double) -> TaskMessage {
        let id = UUID().uuidString.lowercased()
        var message = TaskMessage(id: id, name: entry.task, args: entry.args, kwargs: entry.kwargs)
        message.argsRepr = PythonRepr.repr(.array(entry.args))
        message.kwargsRepr = PythonRepr.repr(.object(entry.kwargs))
        message.origin = "gen\(getpid())@\(NodeName.currentHostname())"
        message.correlationID = id
        if let expires = entry.expires {
            message.expires = CeleryTimestamp(secondsSince1970: scheduledAt + expires.secondsValue)
        }
        for (key, value) in entry.headers { message.headers[key] = value }
        return message
    }

    /// `swiftqctl beat run <entry>`: one run now, outside the schedule (not recorded as a scheduled run).
    func runNow(_ name: String) -> String? {
        guard let state = scheduler.entries[name] else { return "no beat entry named \(name.debugDescription)" }
        guard let lock = lock else { return lastError ?? "not connected to the broker" }
        let entry = state.entry
        let now = Self.now()
        let message = Self.message(for: entry, scheduledAt: now, now: now)
        let queue = entry.routingKey ?? entry.queue
        if isAMQPBroker {
            do {
                if amqp == nil { amqp = try BeatAMQPPublisher(configuration: configuration) }
                try amqp?.publish(message, queue: queue, priority: entry.priority)
                runs[entry.name, default: 0] += 1
                return nil
            } catch {
                amqp = nil
                return "\(error)"
            }
        }
        let envelope = message.redisEnvelope(queue: queue, priority: entry.priority ?? 0, replyTo: nil)
        do {
            let member = RedisArgument(KombuRedisLayout.bindingMember(routingKey: queue, queue: queue))
            let replies = try lock.connection.pipeline([
                ["SADD", RedisArgument(layout.bindingKey(exchange: queue)), member],
                ["SADD", RedisArgument(layout.permanentBindingKey(exchange: queue)), member],
                [
                    "LPUSH", RedisArgument(layout.queueKey(queue: queue, priority: entry.priority ?? 0)),
                    RedisArgument(envelope),
                ],
            ])
            for case .error(let text) in replies { return text }
            runs[entry.name, default: 0] += 1
            logger.info("published \(entry.name) on request", metadata: ["id": "\(message.id)"])
            return nil
        } catch {
            return "\(error)"
        }
    }

    // MARK: State

    func saveState() {
        var entries: [String: (at: Double, fingerprint: String)] = [:]
        for state in scheduler.entries.values {
            if let last = state.lastRun {
                entries[state.entry.name] = (last, BeatScheduler.fingerprint(state.entry, zone: state.zone))
            }
        }
        if let error = BeatStateFile.save(entries, to: configuration.beat.state) {
            if error != lastError { logger.error("cannot save beat state: \(error)") }
        }
    }

    /// What `swiftqctl beat`, `stats` and the status line show.
    var info: JSONValue {
        var entries: [JSONValue] = []
        for state in scheduler.entries.values {
            var object: OrderedDictionary<String, JSONValue> = [
                "name": .string(state.entry.name),
                "task": .string(state.entry.task),
                "schedule": .string(state.entry.schedule.description),
                "timezone": .string(state.zone.name),
            ]
            object["last_run"] = state.lastRun.map { .double($0) } ?? .null
            object["runs"] = .int(Int64(runs[state.entry.name] ?? 0))
            object["next_run"] = state.nextRun.map { .double($0) } ?? .null
            object["next_run_local"] =
                state.nextRun.map { .string(state.zone.civilTime(at: Int64($0.rounded(.down))).description) } ?? .null
            object["next_run_utc"] =
                state.nextRun.map { .string(CivilTime(secondsSinceEpoch: Int64($0.rounded(.down))).description + "Z") }
                ?? .null
            entries.append(.object(object))
        }
        var result: OrderedDictionary<String, JSONValue> = [
            "node": .string(node),
            "holder": .bool(lease.isHolder),
            "lock_holder": lockHolder.map { .string($0) } ?? .null,
            "published": .int(Int64(published)),
            "entries": .array(entries),
        ]
        result["fence"] = lease.fence.map { .int($0) } ?? .null
        if let next = scheduler.nextDue {
            result["next_due"] = .object(["entry": .string(next.entry), "at": .double(next.at)])
        } else {
            result["next_due"] = .null
        }
        result["error"] = lastError.map { .string($0) } ?? .null
        return .object(result)
    }

    private func report() {
        supervisor?.send(ChannelMessage.make(BeatMessage.state, ["beat": info]))
    }
}

/// The messages between the supervisor and the beat process (one JSON object per frame, as ``ChannelMessage``).
///
/// Supervisor → beat: `configure` (`yaml`, `file`; sent at start and on every accepted reload), `beat_run`
/// (`request`, `entry`), `shutdown`. Beat → supervisor: `beat_state` (`beat`: the ``BeatProcess/info`` object, once a
/// second), `beat_run_result` (`request`, `entry`, `published` or `error`).
enum BeatMessage {
    static let configure = "configure"
    static let runNow = "beat_run"
    static let shutdown = "shutdown"
    static let state = "beat_state"
    static let runResult = "beat_run_result"
}
