import DequeModule
import Logging
import OrderedCollections
import SwiftqBootsteps
import SwiftqCore
import SwiftqPlatform
import SwiftqPool
import SwiftqRedis
import SwiftqTasks

#if canImport(Glibc)
import Glibc
#endif

/// The consumer process: owns the pool (it is the parent of the pool children: ``PreforkPool``) and, with the
/// broker transports, the broker connection, the prefetch window, acks and results; runs its own blueprint of
/// bootsteps.
///
/// Talks to the supervisor over fd 3 and holds a lifeline on fd 4. It tells the supervisor how its pool is
/// doing (the slots' rows, with every exit's reason and crash loops) with each heartbeat and whenever a slot's
/// child exits or comes up. Single-threaded: all state below belongs to the event loop's thread.
package final class Consumer {
    package static let supervisorDescriptor: CInt = 3
    package static let lifelineDescriptor: CInt = 4
    package static let heartbeatInterval: Duration = .seconds(1)

    package let loop = EventLoop()
    package var logger = DaemonLog.logger(role: "consumer")
    package var supervisor: FramedChannel!
    package var configuration = Configuration()
    package var configured = false
    /// The pool (started by the "Pool" step).
    package var pool: (any WorkPool)?
    package var shuttingDown = false
    /// Whether the warm shutdown has told the pool to stop.
    package var poolStopped = false
    /// Whether ``finish(code:)`` was called (the loop is to end).
    package var finished = false
    package var exitCode: Int32 = 0
    package var heartbeat: RepeatingTimer?
    /// Celery's monitoring events (see Consumer+Events.swift).
    package let events = ConsumerEvents()
    /// Prometheus metrics (`/metrics`, rendered into `stats` for the supervisor's listener).
    package let metrics = ConsumerMetrics()
    /// Samples the consumed queues' depths for `/metrics` (Consumer+QueueDepth.swift); nil when off.
    package var depthSampler: QueueDepthSampler?

    // Tasks (see Consumer+Tasks.swift).
    package let registry: TaskRegistry
    package var transport: (any BrokerTransport)?
    /// The task path: deliveries, timers, settlement (started by the "Connection" step, with the transport).
    package var core: ConsumerCore?
    /// Each broker connection's last report, and the state derived from them.
    package var brokerConnectivity = BrokerConnectivity()
    package var brokerConnected: Bool { brokerConnectivity.isConnected }
    package var brokerDetail: String { brokerConnectivity.detail }
    package var brokerConnectionsJSON: JSONValue { brokerConnectivity.json }
    /// Control (pidbox) messages seen; see ``BrokerEvent/control(_:)``.
    package var controlReceived = 0
    package var controlByMethod: [String: Int] = [:]
    /// The supervisor's id for this daemon start (see ``Supervisor/daemonID``); nil from an older supervisor.
    package var daemonID: String?
    package var cachedNodeName: (pattern: String, name: String)?

    // Remote control (see Consumer+Control.swift).
    /// The Lamport clock of pidbox requests and replies (Celery's `app.clock`).
    package var controlClock: Int64 = 0
    /// Whether task events were asked for (`enable_events`); sending them is the monitoring issue's.
    package var eventsEnabled = false
    /// The queues consumed now, when `add_consumer`/`cancel_consumer` changed them (nil: the configuration's).
    package var runtimeQueues: [String]?
    /// The autoscaler set by `autoscale` (remote control), and its periodic check.
    package var autoscaler: Autoscaler?
    package var autoscaleTimer: RepeatingTimer?
    /// Commands that change the task path (revokes, rate and time limits) accepted before it exists: the
    /// supervisor answers control requests as soon as the daemon is up, while the consumer may still be starting
    /// its pool or mingling. They are carried out when the "Connection" step creates the core.
    package var heldControlEffects: [ControlEffect] = []
    /// Whether a write of `worker.state_db` is scheduled (revokes are saved once per burst).
    package var revokeSavePending = false
    /// When this consumer started, for `stats.uptime`.
    package let startedAt = ContinuousClock.now

    /// Builds the broker transport for the "Connection" step; injected so that the transport is not decided inside
    /// a bootstep (tests and embedders can pass their own).
    package let makeTransport: (Configuration, String, String?) throws -> any BrokerTransport

    package init(
        registry: TaskRegistry,
        makeTransport: @escaping (Configuration, String, String?) throws -> any BrokerTransport = Consumer.transport
    ) {
        self.registry = registry
        self.makeTransport = makeTransport
    }

    /// This worker's Celery node name (`worker.hostname` expanded).
    /// Expanded once per configuration: `%h` costs a `gethostname` call, and results name the worker.
    package var nodeName: String {
        if let cachedNodeName, cachedNodeName.pattern == configuration.worker.hostname { return cachedNodeName.name }
        let name = NodeName.expand(configuration.worker.hostname)
        cachedNodeName = (configuration.worker.hostname, name)
        return name
    }

    /// The consumer's blueprint; later issues add Connection, Tasks/QoS, Control (pidbox), Events.
    package static func blueprint() -> Blueprint<Consumer> {
        // The steps are fixed and acyclic; a failure here is a programming error.
        // swift-format-ignore: NeverUseForceTry
        try! Blueprint(
            name: "consumer",
            steps: [
                Bootstep(name: "Pool", start: { try $0.startPool() }, stop: { $0.pool?.stop(cold: true) }),
                Bootstep(name: "Connection", requires: ["Pool"], start: { try $0.startConnection() }),
                Bootstep(name: "Tasks", requires: ["Connection"], start: { $0.replenishCredit() }),
                Bootstep(name: "Events", requires: ["Connection"], start: { $0.startEvents() }),
                Bootstep(
                    name: "Heart",
                    requires: ["Pool"],
                    start: { $0.startHeartbeat() },
                    stop: { $0.heartbeat?.cancel() }
                ),
            ]
        )
    }

    /// Runs the consumer until the supervisor tells it to stop or goes away; returns the exit code.
    package func run() -> Int32 {
        do {
            try ChildProcess.setParentDeathSignal(SIGKILL)
        } catch {
            logger.error("cannot arm the parent-death signal: \(error)")
        }
        if ChildProcess.parentIsGone { return 70 }
        UnixSignal.ignore(SIGINT)
        UnixSignal.ignore(SIGHUP)
        UnixSignal.ignore(SIGPIPE)

        supervisor = FramedChannel(descriptor: Self.supervisorDescriptor, loop: loop)
        supervisor.onFrame = { [unowned self] frame in self.handleSupervisor(frame) }
        supervisor.onClose = { [unowned self] reason in
            logger.warning("supervisor channel closed (\(reason)); exiting")
            finish(code: 1)
        }
        loop.watch(Self.lifelineDescriptor) { [unowned self] _ in
            logger.warning("lifeline closed: the supervisor is gone; exiting")
            finish(code: 1)
        }
        guard loop.run(until: { self.configured }, timeout: .seconds(30)) else {
            logger.error("no configuration from the supervisor within 30s; exiting")
            return 1
        }
        let started: StartedBlueprint<Consumer>
        do {
            started = try Self.blueprint().start(self) { step in
                self.logger.debug("starting step", metadata: [DaemonLog.Key.step: "\(step.name)"])
            }
        } catch {
            logger.error("consumer failed to start: \(error)")
            supervisor.send(ConsumerMessage.failed(message: error.message).json)
            supervisor.flush(blockingFor: .seconds(1))
            return 1
        }
        if !shuttingDown {
            let size = pool?.targetSize ?? 0
            supervisor.send(ConsumerMessage.ready(slots: size, pool: poolRows).json)
            logger.info("consumer ready with \(size) pool children")
            loop.run()
        } else if !finished {
            // A warm shutdown began during startup: it still waits for the pool to go.
            loop.run()
        }
        started.stop(self)
        supervisor.flush(blockingFor: .seconds(2))
        return exitCode
    }

    package func finish(code: Int32) {
        finished = true
        exitCode = code
        loop.stop()
    }

    // MARK: Steps

    /// Starts the pool children and waits until every one said hello; or, with `worker.pool: threads|solo`, the
    /// in-process pool (see ``ThreadPool``).
    package func startPool() throws {
        if configuration.worker.pool.isInProcess {
            let pool = ThreadPool(
                mode: configuration.worker.pool == .solo ? .solo : .threads,
                size: configuration.worker.concurrency,
                loop: loop,
                registry: registry,
                lifeline: Self.lifelineDescriptor
            )
            applyPoolSettings(pool)
            pool.onEvent = { [unowned self] event in poolEvent(event) }
            self.pool = pool
            try pool.start()
            return
        }
        let expected = configuration.worker.concurrency
        var policy = RestartPolicy()
        policy.maximumDelay = configuration.worker.restartBackoffMax
        let pool = PreforkPool(
            size: expected,
            loop: loop,
            policy: policy,
            logLevel: configuration.logging.level,
            executable: ChildProcess.currentExecutable
        )
        applyPoolSettings(pool)
        // Until the transport and the core exist (the "Connection" step), only slots come and go.
        pool.onEvent = { [unowned self] event in poolEvent(event) }
        self.pool = pool
        try pool.start()
        let ready = loop.run(until: { self.shuttingDown || pool.readySlots >= expected }, timeout: .seconds(30))
        if !ready {
            throw ConsumerStartError(
                message: "only \(pool.readySlots) of \(expected) pool children said hello within 30s"
            )
        }
    }

    /// What the configuration says of the pool's slots: child limits and child prefetch (at start and at every
    /// reload; the pools that have no use for them ignore them).
    private func applyPoolSettings(_ pool: any WorkPool) {
        pool.setChildLimits(
            maxTasks: configuration.worker.maxTasksPerChild,
            maxMemoryKiB: configuration.worker.maxMemoryPerChild
        )
        pool.setChildPrefetch(
            configuration.worker.childPrefetch,
            maxRuntime: configuration.worker.childPrefetchMaxRuntime
        )
    }

    /// The pool's rows for the supervisor's `stats` and `STATUS=`.
    package var poolRows: [JSONValue] { (pool?.snapshot ?? []).map(\.json) }

    /// What the pool says, beyond jobs (which the ``ConsumerCore`` settles): a slot's exit or start goes to the
    /// supervisor at once, so a crash loop reaches `STATUS=` promptly.
    package func poolEvent(_ event: PoolEvent) {
        switch event {
        case .slotReady, .slotExited:
            supervisor.send(ConsumerMessage.pool(poolRows).json)
        case .started, .finished, .lost, .returned:
            break
        }
    }

    package func startHeartbeat() {
        heartbeat = loop.repeating(every: Self.heartbeatInterval) { [unowned self] in
            let stall = fetchStall
            supervisor.send(
                ConsumerMessage.heartbeat(
                    busy: busyCount,
                    pool: poolRows,
                    fetchIdle: stall?.idle,
                    fetchStarved: stall?.starved ?? false
                ).json
            )
        }
    }

    /// Seconds since the transport's fetch path last made progress, and whether it is starved (room in the
    /// window, messages waiting at the broker) while the pool has an idle child: what the supervisor's stall
    /// check reads from the heartbeat.
    package var fetchStall: (idle: Double, starved: Bool)? {
        guard let progress = transport?.fetchProgress else { return nil }
        let poolHasRoom = (core?.machine.ready.isEmpty ?? true) && (pool?.idleSlots ?? 0) > 0
        return (progress.lastProgress.duration(to: .now).seconds, progress.starved && poolHasRoom && brokerConnected)
    }

    /// The `fetch` part of `stats`.
    package var fetchStats: JSONValue {
        guard let progress = transport?.fetchProgress, let stall = fetchStall else { return .null }
        return .object([
            "last_progress_ago": .double(stall.idle),
            "last_delivery_ago": progress.lastDelivery.map { .double($0.duration(to: .now).seconds) } ?? .null,
            "starved": .bool(stall.starved),
        ])
    }

    package var busyCount: Int { core?.machine.running.count ?? 0 }
    /// Tasks started and not ended (jobs waiting in a child's queue excepted): Celery's `active`.
    package var activeCount: Int { core?.machine.activeCount ?? 0 }

    /// The broker URL with its password masked, for stats and logs.
    package var redactedBrokerURL: String {
        transport?.redactedURL ?? (try? RedisURL(parsing: configuration.broker.url))?.redacted ?? "(not connected)"
    }

    // MARK: Supervisor messages

    package func handleSupervisor(_ frame: ReceivedFrame) {
        frame.descriptors.forEach(Descriptors.close)
        let message: SupervisorMessage
        do {
            message = try SupervisorMessage(decoding: frame.message)
        } catch {
            logger.error("ignoring a malformed message from the supervisor: \(error)")
            return
        }
        switch message {
        case .configure(let yaml, let file, let daemonID):
            configure(yaml: yaml, file: file, daemonID: daemonID)
        case .stats(let request):
            supervisor.send(ConsumerMessage.stats(request: request, consumer: stats).json)
        case .dump:
            dumpState()
        case .shutdown(let cold, _):
            shutdown(cold: cold)
        case .control(let request, let method, let arguments):
            let outcome = runControl(method: method, arguments: arguments, via: .socket)
            supervisor.send(ConsumerMessage.controlReply(request: request, reply: outcome.reply).json)
        }
    }

    package func configure(yaml: String, file: String, daemonID id: String) {
        daemonID = id
        do {
            let previousWindow = configured ? prefetchWindow : nil
            let previousEvents = configuration.events
            configuration = try Configuration.parse(yaml, file: file)
            metrics.countsTasks = configuration.metrics.listen != nil
            DaemonLog.level = Logger.Level(configuration.logging.level)
            pool?.setLogLevel(configuration.logging.level)
            if let pool { applyPoolSettings(pool) }
            if let pool, autoscaler == nil, configuration.worker.effectiveConcurrency != pool.targetSize {
                logger.info("worker.concurrency \(pool.targetSize) -> \(configuration.worker.concurrency)")
                pool.resize(to: configuration.worker.concurrency)
            }
            eventsReconfigured(previous: previousEvents)
            // D1: the broker's prefetch follows a reload of concurrency or prefetch_multiplier.
            if let previousWindow, previousWindow != prefetchWindow {
                transport?.setWindow(configuration.worker.prefetchMultiplier == 0 ? 0 : prefetchWindow)
            }
            core?.reconfigure(machineSettings)
            core?.setRevokeLimits(
                maximum: configuration.worker.revokesMax,
                expiry: configuration.worker.revokesExpire.seconds
            )
            if configured { logger.info("configuration reloaded") }
            configured = true
        } catch {
            // The supervisor validated this text; reaching this is a bug, not bad input.
            logger.error("configuration from the supervisor does not parse: \(error)")
        }
    }

    /// Warm: stop taking work, let running tasks finish (the supervisor enforces the deadline), then
    /// report `drained` and exit. Cold: exit now.
    package func shutdown(cold: Bool) {
        shuttingDown = true
        if cold {
            logger.info("cold shutdown")
            pool?.stop(cold: true)
            stopWorkerEvents()
            // Nothing more is acked; every held message, running ones included, goes back to the broker.
            depthSampler?.stop()
            transport?.stop(restoreHeld: true, timeout: .seconds(1))
            finish(code: 0)
            return
        }
        logger.info("warm shutdown: waiting for \(busyCount) running task(s)")
        // Reserved messages that have not started go back to the broker now, not after the running ones.
        core?.shutdown()
        checkDrained()
    }

    package func checkDrained() {
        guard shuttingDown else { return }
        if busyCount == 0 {
            if !poolStopped {
                // Results and acks of the finished tasks are written first, then anything still held goes back.
                stopWorkerEvents()
                depthSampler?.stop()
                transport?.stop(restoreHeld: true, timeout: configuration.worker.shutdownTimeout)
                pool?.stop(cold: false)
                poolStopped = true
            }
            // The children exit on their own; one that cannot (stopped, hung) holds the shutdown until the
            // supervisor's deadline kills this process, and the child with it.
            if pool?.isStopped ?? true {
                supervisor.send(ConsumerMessage.drained.json)
                finish(code: 0)
            } else {
                loop.schedule(after: .milliseconds(20)) { [unowned self] in checkDrained() }
            }
        } else {
            loop.schedule(after: .milliseconds(20)) { [unowned self] in checkDrained() }
        }
    }

    package var stats: JSONValue {
        let counters = core?.machine.counters ?? DeliveryMachine.Counters()
        return .object([
            "pid": .int(Int64(getpid())),
            "slots": .array(poolRows),
            "busy": .int(Int64(busyCount)),
            "tasks_completed": .int(Int64(counters.succeeded + counters.failed)),
            "tasks_failed": .int(Int64(counters.failed)),
            "worker_lost": .int(Int64(counters.workerLost)),
            "prefetch": .int(Int64(prefetchWindow)),
            "queues": .array(configuration.worker.queues.map { .string($0) }),
            "broker": .object([
                "url": .string(redactedBrokerURL), "connected": .bool(brokerConnected),
                "detail": .string(brokerDetail),
                "connections": brokerConnectionsJSON,
                // Under `broker`, which the supervisor's `stats` passes through whole.
                "control_received": .int(Int64(controlReceived)),
                "control_methods": .object(
                    OrderedDictionary(
                        uniqueKeysWithValues: controlByMethod.keys.sorted().map {
                            ($0, .int(Int64(controlByMethod[$0]!)))
                        }
                    )
                ),
                "fetch": fetchStats,
            ]),
            "tasks": core?.machine.tasksJSON ?? .null,
            "throughput": ThroughputCounters.shared.snapshot.json(tasks: counters.succeeded + counters.failed),
            "metrics": .string(metrics.render(machine: core?.machine, pool: pool)),
            "events": [
                "enabled": .bool(events.emitter?.taskEventsEnabled ?? configuration.events.enabled),
                "worker_online": .bool(events.workerOnline),
                "sent": .int(Int64(events.emitter?.sent ?? 0)),
                "dropped": .int(Int64(events.emitter?.dropped ?? 0)),
            ],
        ])
    }

    package func dumpState() {
        let slots = pool?.snapshot ?? []
        logger.notice("state dump: \(slots.count) pool slot(s), \(busyCount) busy, shutting down: \(shuttingDown)")
        for slot in slots {
            let reason = slot.lastExitReason.map { ", last exit: \($0)" } ?? ""
            let task = slot.jobID ?? "-"
            logger.notice(
                "slot \(slot.slot): pid \(slot.pid), \(slot.state), task \(task), \(slot.tasksCompleted) completed, \(slot.restarts) restart(s)\(reason)"
            )
        }
    }
}

package struct ConsumerStartError: Error, CustomStringConvertible {
    package var message: String
    package var description: String { message }
}
