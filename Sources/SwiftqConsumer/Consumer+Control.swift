import Logging
import OrderedCollections
import SwiftqAMQP
import SwiftqCore
import SwiftqPlatform
import SwiftqPool
import SwiftqRedis

#if canImport(Glibc)
import Glibc
#endif

/// Remote control in the consumer: Celery's pidbox requests (from the transports, as ``BrokerEvent/control(_:)``)
/// and the control socket's consumer-owned commands (forwarded by the supervisor) go through one command table
/// (``ControlPanel``); replies to the pidbox are published as settlement plans with no delivery of their own.
package extension Consumer {
    /// Handles pidbox requests in arrival order. Each is answered at once from the loop's state (no broker round
    /// trip before the reply is queued), so a burst such as Flower's eight inspect calls is answered together.
    func handleControl(_ deliveries: [ControlDelivery]) {
        var replies: [OutboundMessage] = []
        for delivery in deliveries {
            controlReceived += 1
            controlByMethod[delivery.body["method"]?.stringValue ?? "?", default: 0] += 1
            let request: PidboxRequest
            do {
                request = try PidboxRequest(body: delivery.body)
            } catch {
                logger.warning(
                    "dropping a pidbox message from \(delivery.source) (\(error)): \(DeliveryMachine.preview(delivery.body.serialized()))"
                )
                continue
            }
            guard request.isAddressed(to: nodeName) else { continue }
            logger.debug("control message \(request.method) from \(delivery.source)")
            controlClock += 1
            let outcome = runControl(method: request.method, arguments: request.arguments, via: .broker)
            if let reply = outcome.reply, let message = request.reply(from: nodeName, reply, clock: controlClock) {
                replies.append(message)
            }
        }
        // One plan per reply: a client that gave up (its reply queue gone) stops only its own.
        if !replies.isEmpty { transport?.settle(replies.map { Settlement(publishes: [$0], disposition: .none) }) }
    }

    /// Where a command came from: the broker (pidbox, any host) or the control socket (this host).
    enum ControlOrigin: Equatable {
        case broker
        case socket
    }

    /// Parses, decides and carries out one command of the table; returns Celery's reply.
    func runControl(method: String, arguments: JSONValue?, via origin: ControlOrigin) -> ControlOutcome {
        let policy = configuration.control.broadcast
        if origin == .broker && policy == .disabled {
            logger.info(
                "pidbox request \(method) ignored (control.broadcast: false)",
                metadata: ["command": "\(method)"]
            )
            return ControlOutcome(reply: nil)
        }
        let command: ControlCommand
        do {
            command = try ControlCommand(method: method, arguments: arguments)
        } catch {
            logger.warning("control command \(method) refused: \(error.error)")
            return ControlOutcome(reply: error.reply)
        }
        if origin == .broker && policy == .readOnly && !command.isReadOnly {
            logger.warning(
                "pidbox request \(method) refused (control.broadcast: read-only)",
                metadata: ["command": "\(method)"]
            )
            return ControlOutcome(
                reply: ControlPanel.nok("control.broadcast is read-only on this worker: \(method) refused")
            )
        }
        let outcome = ControlPanel.handle(command, state: ConsumerControlState(consumer: self))
        for effect in outcome.effects { perform(effect) }
        return outcome
    }

    /// Carries out the commands held while the task path did not exist yet (see ``heldControlEffects``).
    func performHeldControlEffects() {
        let held = heldControlEffects
        heldControlEffects = []
        for effect in held { perform(effect) }
    }

    private func perform(_ effect: ControlEffect) {
        if core == nil && effect.needsTaskPath {
            logger.info("control: \(effect.name) held until the task path has started")
            heldControlEffects.append(effect)
            return
        }
        switch effect {
        case .revoke(let ids, let terminate, let signal):
            logger.info(
                terminate
                    ? "terminating (signal \(signal)) and revoking \(ids.joined(separator: ", "))"
                    : "tasks flagged as revoked: \(ids.joined(separator: ", "))"
            )
            core?.revoke(ids, terminate: terminate, signal: signal)
            revokesChanged(ids)
        case .revokeStamped(let headers, let terminate, let signal):
            logger.info(
                "stamped headers flagged as revoked: \(PythonRepr.repr(.object(headers.mapValues { .array($0) })))"
            )
            core?.revokeStamped(headers, terminate: terminate, signal: signal)
        case .mergeRevoked(let ids):
            core?.mergeRevoked(ids.map { ($0, CeleryTimestamp.now.secondsSince1970) })
            saveRevokes()
        case .growPool(let count):
            resizePool(by: count)
        case .setAutoscale(let maximum, let minimum):
            setAutoscale(maximum: maximum, minimum: minimum)
        case .shrinkPool(let count):
            resizePool(by: -count)
        case .addQueue(let queue):
            var queues = currentQueues
            guard !queues.contains(queue) else { return }
            queues.append(queue)
            logger.info("add consumer \(queue)")
            setQueues(queues)
        case .cancelQueue(let queue):
            var queues = currentQueues
            guard let index = queues.firstIndex(of: queue) else { return }
            queues.remove(at: index)
            logger.info("no longer consuming from \(queue)")
            setQueues(queues)
        case .setEvents(let enabled):
            eventsEnabled = enabled
            setTaskEvents(enabled)
        case .setRateLimit(let task, let perSecond):
            if let perSecond {
                logger.info("New rate limit for tasks of type \(task): \(perSecond)/s.")
            } else {
                logger.info("Rate limits disabled for tasks of type \(task)")
            }
            core?.setRateLimit(task: task, rate: perSecond)
        case .setTimeLimits(let task, let soft, let hard):
            let shown = (soft.map { "\($0)" } ?? "None", hard.map { "\($0)" } ?? "None")
            logger.info("New time limits for tasks of type \(task): soft=\(shown.0) hard=\(shown.1)")
            core?.setTimeLimits(task: task, soft: soft, hard: hard)
        case .shutdown(let message):
            logger.warning("\(message)")
            supervisor.send(ConsumerMessage.shutdownRequested(reason: message).json)
        }
    }

    /// The queues consumed now.
    var currentQueues: [String] { runtimeQueues ?? configuration.worker.queues }

    private func setQueues(_ queues: [String]) {
        runtimeQueues = queues
        transport?.setQueues(queues)
        depthSampler?.setQueues(queues)
    }

    /// `pool_grow`/`pool_shrink`: the pool's size by `delta` (at least one child), and the prefetch window with it
    /// (Celery's `_update_prefetch_count`). A reload applies the file's `worker.concurrency` again.
    private func resizePool(by delta: Int) {
        guard let pool else { return }
        let size = max(1, pool.targetSize + delta)
        guard size != pool.targetSize else { return }
        logger.info(
            "pool \(delta > 0 ? "grows" : "shrinks") from \(pool.targetSize) to \(size) children (remote control)"
        )
        pool.resize(to: size)
        applyWindow()
    }

    /// Turns autoscale on (or changes its bounds): checked every second, Celery's autoscaler tick.
    private func setAutoscale(maximum: Int, minimum: Int) {
        let now = CeleryTimestamp.now.secondsSince1970
        if var scaler = autoscaler {
            scaler.maximum = maximum
            scaler.minimum = minimum
            autoscaler = scaler
        } else {
            autoscaler = Autoscaler(maximum: maximum, minimum: minimum, now: now)
        }
        logger.info("autoscale now max=\(maximum) min=\(minimum)")
        if autoscaleTimer == nil {
            autoscaleTimer = loop.repeating(every: .seconds(1)) { [unowned self] in autoscale() }
        }
        autoscale()
    }

    /// One autoscaler tick: the pool follows the backlog (reserved tasks waiting for a child).
    func autoscale() {
        guard var scaler = autoscaler, let pool, !shuttingDown else { return }
        let machine = core?.machine
        let target = scaler.target(
            current: pool.targetSize,
            busy: machine?.running.count ?? 0,
            waiting: machine?.ready.count ?? 0,
            now: CeleryTimestamp.now.secondsSince1970
        )
        autoscaler = scaler
        guard target != pool.targetSize else { return }
        logger.info("autoscale: pool \(pool.targetSize) -> \(target) children")
        pool.resize(to: target)
        applyWindow()
    }

    /// Tells the machine and the transport the window the pool's size implies.
    func applyWindow() {
        core?.reconfigure(machineSettings)
        transport?.setWindow(configuration.worker.prefetchMultiplier == 0 ? 0 : prefetchWindow)
    }

    /// The delivery machine's settings: the configuration's, with the live pool size.
    var machineSettings: DeliveryMachine.Settings {
        var settings = DeliveryMachine.Settings(configuration: configuration, nodeName: nodeName)
        settings.window = prefetchWindow
        settings.childQueueAllowance = childQueueAllowance
        settings.poolSize = windowPoolSize
        return settings
    }

}

/// The consumer's state as the command table reads it.
struct ConsumerControlState: ControlState {
    let consumer: Consumer

    var machine: DeliveryMachine? { consumer.core?.machine }
    var nodeName: String { consumer.nodeName }
    var clock: Int64 { consumer.controlClock }

    func celeryStats() -> JSONValue {
        let accepted = machine?.counters.accepted ?? [:]
        let slots = consumer.pool?.snapshot ?? []
        let completed = slots.map(\.tasksCompleted)
        let total = completed.reduce(0, +)
        // billiard's `per`: each share of the writes as a fraction with two decimals (0 when nothing was written).
        func per(_ value: Double) -> String { String(format2: value == 0 || total == 0 ? 0 : value / Double(total)) }
        let shares = completed.map { per(Double($0)) }
        let average = per(slots.isEmpty || total == 0 ? 0 : Double(total) / Double(slots.count))
        return [
            "total": .object(
                OrderedDictionary(uniqueKeysWithValues: accepted.keys.sorted().map { ($0, .int(Int64(accepted[$0]!))) })
            ),
            "pid": .int(Int64(getpid())),
            "clock": .string(String(consumer.controlClock)),
            "uptime": .int(Int64(consumer.startedAt.duration(to: .now).seconds)),
            "pool": [
                "implementation": .string(
                    ["prefork": "swiftq:PreforkPool", "threads": "swiftq:ThreadPool", "solo": "swiftq:SoloPool"][
                        consumer.configuration.worker.pool.rawValue
                    ] ?? "swiftq:PreforkPool"
                ),
                "max-concurrency": .int(Int64(consumer.pool?.targetSize ?? 0)),
                "processes": .array(slots.filter { $0.pid > 0 }.map { .int(Int64($0.pid)) }),
                "max-tasks-per-child": "N/A",
                "put-guarded-by-semaphore": false,
                "timeouts": [0, 0],
                "writes": [
                    "total": .int(Int64(total)),
                    "avg": .string(average),
                    "all": .string(shares.joined(separator: ", ")),
                    "raw": .string(completed.map(String.init).joined(separator: ", ")),
                    "strategy": "fair",
                    "inqueues": ["total": .int(Int64(slots.count)), "active": .int(Int64(consumer.activeCount))],
                ],
            ],
            "broker": brokerInfo,
            "prefetch_count": .int(Int64(consumer.prefetchWindow)),
            "rusage": ResourceUsage.celeryFields(),
        ]
    }

    /// kombu's `Connection.info()` for the broker URL (password left out, as kombu does).
    var brokerInfo: JSONValue {
        let configuration = consumer.configuration
        var url = configuration.broker.url
        if url == "embedded" { url = Configuration.EmbeddedBroker.url(for: configuration, database: 0) }
        var info: OrderedDictionary<String, JSONValue> = [:]
        if let amqp = try? AMQPURL.failoverList(parsing: url).first {
            info["hostname"] = .string(amqp.host)
            info["userid"] = .string(amqp.user)
            info["virtual_host"] = .string(amqp.virtualHost)
            info["port"] = .int(Int64(amqp.port))
            info["insist"] = false
            info["ssl"] = .bool(amqp.usesTLS)
            info["transport"] = "amqp"
            info["connect_timeout"] = .double((amqp.connectTimeout ?? configuration.broker.connectTimeout).seconds)
            info["heartbeat"] = .double((amqp.heartbeat ?? configuration.broker.heartbeat).seconds)
            info["login_method"] = "PLAIN"
        } else if let redis = try? RedisURL(parsing: url) {
            switch redis.endpoint {
            case .tcp(let host, let port):
                info["hostname"] = .string(host)
                info["userid"] = redis.username.map(JSONValue.string) ?? .null
                info["virtual_host"] = .string(String(redis.database))
                info["port"] = .int(Int64(port))
            case .unix(let path):
                info["hostname"] = .string(path)
                info["userid"] = redis.username.map(JSONValue.string) ?? .null
                info["virtual_host"] = .string(String(redis.database))
                info["port"] = .null
            }
            info["insist"] = false
            info["ssl"] = .bool(url.lowercased().hasPrefix("rediss://"))
            info["transport"] = "redis"
            info["connect_timeout"] = .double(configuration.broker.connectTimeout.seconds)
            info["heartbeat"] = .double(configuration.broker.heartbeat.seconds)
        }
        info["transport_options"] = .object([:])
        if info["login_method"] == nil { info["login_method"] = .null }
        info["uri_prefix"] = .null
        info["failover_strategy"] = "round-robin"
        info["alternates"] = []
        info["credential_provider"] = .null
        return .object(info)
    }

    func activeRequests(safe: Bool) -> [JSONValue] { machine?.activeInfo(safe: safe) ?? [] }
    var reservedRequests: [JSONValue] { machine?.reservedInfo ?? [] }
    var scheduledRequests: [JSONValue] { machine?.scheduledInfo ?? [] }
    var revokedIDs: [String] {
        guard let core = consumer.core else { return consumer.revokesBeforeStart }
        core.purgeRevoked()
        return core.machine.revoked.ids
    }
    var heldTaskIDs: Set<String> { machine?.heldTaskIDs ?? [] }
    func queryTask(_ ids: [String]) -> JSONValue { machine?.queryTask(ids) ?? [:] }

    var registeredTasks: [String] {
        Array(Set(consumer.registry.names).union(consumer.configuration.tasks.keys)).sorted()
    }

    /// kombu's `Queue.as_dict(recurse=True)` of each queue as Celery declares it: a durable direct exchange named
    /// after the queue, bound with the queue's name.
    var activeQueues: [JSONValue] {
        consumer.currentQueues.map { queue in
            let maxPriority = consumer.configuration.broker.queueMaxPriority.map { JSONValue.int(Int64($0)) } ?? .null
            return [
                "name": .string(queue),
                "exchange": [
                    "name": .string(queue), "type": "direct", "arguments": nil, "durable": true, "passive": false,
                    "auto_delete": false, "delivery_mode": nil, "no_declare": false,
                ],
                "routing_key": .string(queue),
                "queue_arguments": nil,
                "binding_arguments": nil,
                "consumer_arguments": nil,
                "durable": true,
                "exclusive": false,
                "auto_delete": false,
                "no_ack": false,
                "alias": nil,
                "bindings": [],
                "no_declare": nil,
                "expires": nil,
                "message_ttl": nil,
                "max_length": nil,
                "max_length_bytes": nil,
                "max_priority": maxPriority,
            ]
        }
    }

    /// The settings swiftq has under Celery's names (`celery inspect conf`); secrets masked as Celery masks them.
    func conf(withDefaults: Bool) -> JSONValue {
        let configuration = consumer.configuration
        let worker = configuration.worker
        var settings: OrderedDictionary<String, JSONValue> = [
            "broker_url": .string(consumer.redactedBrokerURL),
            "result_backend": configuration.resultBackend.url.map { .string(Self.masked($0)) } ?? .null,
            "task_acks_late": .bool(worker.acksLate),
            "task_track_started": .bool(worker.trackStarted),
            "task_reject_on_worker_lost": .bool(worker.rejectOnWorkerLost),
            "worker_concurrency": .int(Int64(consumer.pool?.targetSize ?? worker.concurrency)),
            "worker_prefetch_multiplier": .int(Int64(worker.prefetchMultiplier)),
            "task_default_queue": .string(worker.queues.first ?? "celery"),
            "result_extended": .bool(configuration.resultBackend.extended),
            "worker_revokes_max": .int(Int64(worker.revokesMax)),
            // What swiftqd does where Celery has a setting for it: JSON only, UTC timestamps, the AMQP heartbeat
            // it asks for, its own logger (no Python root logger to hijack, no colours), no modules to import,
            // no deprecated setting names (tools such as Celery's own suite read these keys).
            "accept_content": ["json"],
            "enable_utc": true,
            "timezone": "UTC",
            "broker_heartbeat": .double(configuration.broker.heartbeat.seconds),
            "worker_hijack_root_logger": false,
            "worker_log_color": false,
            "include": [],
            "deprecated_settings": [],
        ]
        if withDefaults {
            settings["worker_revoke_expires"] = .double(worker.revokesExpire.seconds)
        }
        return .object(settings)
    }

    static func masked(_ url: String) -> String {
        if let redis = try? RedisURL(parsing: url) { return redis.redacted }
        if let amqp = try? AMQPURL.failoverList(parsing: url) { return amqp.map(\.redacted).joined(separator: ";") }
        return URLCredentials.masked(url)
    }

    /// Celery's `report` (`bugreport`), whose first line lists the software as `name:version` pairs starting with
    /// `celery:`: tools and Celery's own tests read it there. swiftqd gives the Celery release whose worker behaviour
    /// it follows, then its own name and version.
    var report: String {
        let configuration = consumer.configuration
        return """
            software -> celery:\(Self.celeryCompatibility) swiftqd:\(consumer.events.softwareVersion) (Celery protocol v2)
            platform -> \(Self.platform)
            node -> \(consumer.nodeName) pid \(getpid())
            broker -> \(consumer.redactedBrokerURL)
            results -> \(configuration.resultBackend.url.map(Self.masked) ?? "disabled")
            queues -> \(consumer.currentQueues.joined(separator: ", "))
            concurrency -> \(consumer.pool?.targetSize ?? configuration.worker.concurrency) (\(configuration.worker.pool.rawValue))

            """
    }

    /// The Celery release whose worker swiftqd answers as (its integration suite runs against swiftqd with
    /// `dev/celery-suite`; docs/celery-suite.md gives the current count).
    static let celeryCompatibility = "5.7"

    static var platform: String {
        var names = utsname()
        guard uname(&names) == 0 else { return "Linux" }
        func text<T>(_ field: T) -> String {
            withUnsafeBytes(of: field) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        }
        return "\(text(names.sysname)) \(text(names.release)) \(text(names.machine))"
    }

    var eventsEnabled: Bool { consumer.events.emitter?.taskEventsEnabled ?? consumer.eventsEnabled }
    var autoscale: (max: Int, min: Int)? { consumer.autoscaler.map { ($0.maximum, $0.minimum) } }
    var poolSize: Int { consumer.pool?.targetSize ?? 0 }

    func runningStampMatches(_ headers: OrderedDictionary<String, [JSONValue]>) -> OrderedDictionary<
        String, [JSONValue]
    > {
        guard let machine else { return [:] }
        var matches: OrderedDictionary<String, [JSONValue]> = [:]
        for key in machine.running.values.sorted() {
            guard let stamps = machine.deliveries[key]?.message.headers["stamps"]?.objectValue else { continue }
            for (header, values) in headers {
                guard let value = stamps[header] else { continue }
                for stamp in value.arrayValue ?? [value] where values.contains(stamp) {
                    if !(matches[header]?.contains(stamp) ?? false) { matches[header, default: []].append(stamp) }
                }
            }
        }
        return matches
    }
}

extension String {
    /// A number with two decimals, as Python's `'%.2f'`.
    init(format2 value: Double) {
        let scaled = (value * 100).rounded()
        let whole = Int(scaled) / 100
        let fraction = abs(Int(scaled) % 100)
        self = "\(whole)." + (fraction < 10 ? "0" : "") + String(fraction)
    }
}
