import DequeModule
import Logging
import OrderedCollections
import SwiftqBootsteps
import SwiftqCore
import SwiftqPlatform
import SwiftqRedis

#if canImport(Glibc)
import Glibc
#endif

/// The consumer process: owns the pool channels (and, with the broker transports, the broker
/// connection, the prefetch window, acks and results), and runs its own blueprint of bootsteps.
///
/// Talks to the supervisor over fd 3 and holds a lifeline on fd 4. The supervisor hands it one channel
/// per pool slot (`attach_slot`, descriptor passed with `SCM_RIGHTS`) and tells it when a slot's child
/// died (`slot_exited`), so the task that child was running can be failed or redelivered.
/// Single-threaded: all state below belongs to the event loop's thread.
final class Consumer {
    static let supervisorDescriptor: CInt = 3
    static let lifelineDescriptor: CInt = 4
    static let heartbeatInterval: Duration = .seconds(1)

    let loop = EventLoop()
    var logger = DaemonLog.logger(role: "consumer")
    var supervisor: FramedChannel!
    var configuration = Configuration()
    var configured = false
    var slots: [Int: ConsumerSlot] = [:]
    var shuttingDown = false
    var exitCode: Int32 = 0
    var heartbeat: RepeatingTimer?
    var tasksCompleted = 0
    var tasksFailed = 0
    var workerLost = 0

    // Tasks (see Consumer+Tasks.swift).
    let registry: TaskRegistry
    var transport: (any BrokerTransport)?
    /// Decoded deliveries waiting for a free pool child, oldest first (a deque: taking the first is O(1)
    /// however large the prefetch window).
    var ready: Deque<TaskDelivery> = []
    var outstandingCredit = 0
    var waitingForETA = 0
    var brokerConnected = false
    var brokerDetail = "not connected"
    var resultsStored = 0
    var messagesAcked = 0
    var received = 0
    var rejected: [String: Int] = [:]
    /// Delivery tags received and not yet confirmed acked or requeued by the transport's writer.
    var unsettled: Set<String> = []
    var taskStatistics: [String: TaskStatistics] = [:]
    var cachedNodeName: (pattern: String, name: String)?

    init(registry: TaskRegistry) {
        self.registry = registry
    }

    /// This worker's Celery node name (`worker.hostname` expanded).
    /// Expanded once per configuration: `%h` costs a `gethostname` call, and results name the worker.
    var nodeName: String {
        if let cachedNodeName, cachedNodeName.pattern == configuration.worker.hostname { return cachedNodeName.name }
        let name = NodeName.expand(configuration.worker.hostname)
        cachedNodeName = (configuration.worker.hostname, name)
        return name
    }

    /// The consumer's blueprint; later issues add Connection, Tasks/QoS, Control (pidbox), Events.
    static func blueprint() -> Blueprint<Consumer> {
        // The steps are fixed and acyclic; a failure here is a programming error.
        // swift-format-ignore: NeverUseForceTry
        try! Blueprint(
            name: "consumer",
            steps: [
                Bootstep(name: "Pool", start: { try $0.waitForPool() }),
                Bootstep(name: "Connection", requires: ["Pool"], start: { try $0.startConnection() }),
                Bootstep(name: "Tasks", requires: ["Connection"], start: { $0.replenishCredit() }),
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
    func run() -> Int32 {
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
            supervisor.send(ChannelMessage.make("failed", ["message": .string(error.message)]))
            supervisor.flush(blockingFor: .seconds(1))
            return 1
        }
        if !shuttingDown {
            supervisor.send(ChannelMessage.make("ready", ["slots": .int(Int64(slots.count))]))
            logger.info("consumer ready with \(slots.count) pool children")
            loop.run()
        }
        started.stop(self)
        for slot in slots.values { slot.channel?.close() }
        supervisor.flush(blockingFor: .seconds(2))
        return exitCode
    }

    func finish(code: Int32) {
        exitCode = code
        loop.stop()
    }

    // MARK: Steps

    func waitForPool() throws {
        let expected = configuration.worker.concurrency
        let ready = loop.run(
            until: { self.shuttingDown || self.slots.values.filter { $0.state == .idle }.count >= expected },
            timeout: .seconds(30)
        )
        if !ready {
            let count = slots.values.filter { $0.state == .idle }.count
            throw ConsumerStartError(message: "only \(count) of \(expected) pool children said hello within 30s")
        }
    }

    func startHeartbeat() {
        heartbeat = loop.repeating(every: Self.heartbeatInterval) { [unowned self] in
            supervisor.send(ChannelMessage.make("heartbeat", ["busy": .int(Int64(busyCount))]))
        }
    }

    var busyCount: Int { slots.values.filter { $0.currentTaskID != nil }.count }

    /// The broker URL with its password masked, for stats and logs.
    var redactedBrokerURL: String {
        transport?.redactedURL ?? (try? RedisURL(parsing: configuration.broker.url))?.redacted ?? "(not connected)"
    }

    // MARK: Supervisor messages

    func handleSupervisor(_ frame: ReceivedFrame) {
        let message = frame.message
        switch ChannelMessage.type(of: message) {
        case "configure":
            configure(message)
        case "attach_slot":
            guard let slot = message["slot"]?.intValue, let pid = message["pid"]?.intValue,
                let descriptor = frame.descriptors.first
            else {
                frame.descriptors.forEach(Descriptors.close)
                logger.error("malformed attach_slot from the supervisor: \(message)")
                return
            }
            frame.descriptors.dropFirst().forEach(Descriptors.close)
            attach(slot: Int(slot), pid: Int32(pid), descriptor: descriptor)
        case "slot_exited":
            frame.descriptors.forEach(Descriptors.close)
            guard let slot = message["slot"]?.intValue, let pid = message["pid"]?.intValue else { return }
            slotExited(Int(slot), pid: Int32(pid), status: message["status"]?["description"]?.stringValue ?? "exited")
        case "retire_slot":
            frame.descriptors.forEach(Descriptors.close)
            guard let slot = message["slot"]?.intValue else { return }
            retire(Int(slot))
        case "stats":
            frame.descriptors.forEach(Descriptors.close)
            supervisor.send(ChannelMessage.make("stats", ["request": message["request"] ?? .null, "consumer": stats]))
        case "dump":
            dumpState()
        case "shutdown":
            frame.descriptors.forEach(Descriptors.close)
            shutdown(cold: message["mode"]?.stringValue == "cold")
        default:
            frame.descriptors.forEach(Descriptors.close)
            logger.warning("ignoring a supervisor message of unknown type: \(message["type"] ?? .null)")
        }
    }

    func configure(_ message: JSONValue) {
        guard let yaml = message["yaml"]?.stringValue else {
            logger.error("configure without yaml")
            return
        }
        let file = message["file"]?.stringValue ?? "config"
        do {
            configuration = try Configuration.parse(yaml, file: file)
            DaemonLog.level = Logger.Level(configuration.logging.level)
            for slot in slots.values { sendLogLevel(to: slot) }
            if configured { logger.info("configuration reloaded") }
            configured = true
        } catch {
            // The supervisor validated this text; reaching this is a bug, not bad input.
            logger.error("configuration from the supervisor does not parse: \(error)")
        }
    }

    func attach(slot index: Int, pid: Int32, descriptor: CInt) {
        if let old = slots[index] { old.channel?.close() }
        let channel = FramedChannel(descriptor: descriptor, loop: loop)
        let slot = ConsumerSlot(index: index, pid: pid, channel: channel)
        slots[index] = slot
        channel.onFrame = { [unowned self, unowned slot] frame in self.handlePool(slot, frame) }
        channel.onClose = { [unowned self, unowned slot] reason in
            logger.debug("pool channel \(slot.index) closed: \(reason)")
            slot.channel = nil
        }
        logger.debug("pool slot \(index) attached (pid \(pid))")
    }

    /// Pool children log at the consumer's level; a reload changes it in place.
    func sendLogLevel(to slot: ConsumerSlot) {
        slot.channel?.send(ChannelMessage.make("log_level", ["level": .string(configuration.logging.level.rawValue)]))
    }

    func handlePool(_ slot: ConsumerSlot, _ frame: ReceivedFrame) {
        frame.descriptors.forEach(Descriptors.close)
        let message = frame.message
        switch ChannelMessage.type(of: message) {
        case "hello":
            if slot.state == .starting { slot.state = .idle }
            sendLogLevel(to: slot)
            dispatch()
        case "result":
            slot.tasksCompleted += 1
            completeRunningTask(in: slot, result: message)
            if slot.state == .retiring {
                releaseRetired(slot)
            } else {
                slot.state = .idle
            }
            dispatch()
            replenishCredit()
        case "error":
            logger.error("pool child \(slot.index) reported: \(message["message"] ?? .null)")
        default:
            logger.warning("ignoring a pool message of unknown type: \(message["type"] ?? .null)")
        }
    }

    func slotExited(_ index: Int, pid: Int32, status: String) {
        guard let slot = slots[index], slot.pid == pid else { return }
        if let task = slot.currentTaskID {
            workerLost += 1
            logger.error(
                "pool child \(index) (pid \(pid)) \(status) while running a task (WorkerLostError)",
                metadata: [DaemonLog.Key.taskID: "\(task)"]
            )
            failLostTask(in: slot, status: status)
        }
        slot.channel?.close()
        slot.channel = nil
        slot.state = .gone
        slots[index] = nil
    }

    func retire(_ index: Int) {
        guard let slot = slots[index] else {
            supervisor.send(ChannelMessage.make("slot_retired", ["slot": .int(Int64(index))]))
            return
        }
        slot.state = .retiring
        if slot.currentTaskID == nil { releaseRetired(slot) }
    }

    /// Lets a retired slot's child go: closing its channel makes it exit on its own.
    func releaseRetired(_ slot: ConsumerSlot) {
        slot.channel?.close()
        slot.channel = nil
        slot.state = .gone
        slots[slot.index] = nil
        supervisor.send(ChannelMessage.make("slot_retired", ["slot": .int(Int64(slot.index))]))
    }

    /// Warm: stop taking work, let running tasks finish (the supervisor enforces the deadline), then
    /// report `drained` and exit. Cold: exit now.
    func shutdown(cold: Bool) {
        shuttingDown = true
        if cold {
            logger.info("cold shutdown")
            // Nothing more is acked; every held message, running ones included, goes back to the broker.
            transport?.stop(restoreHeld: true, timeout: .seconds(1))
            finish(code: 0)
            return
        }
        logger.info("warm shutdown: waiting for \(busyCount) running task(s)")
        checkDrained()
    }

    func checkDrained() {
        guard shuttingDown else { return }
        if busyCount == 0 {
            // Results and acks of the finished tasks are written first, then every message still held
            // (reserved, never started) goes back to the broker.
            let released = ready.count
            ready.removeAll()
            transport?.stop(restoreHeld: true, timeout: configuration.worker.shutdownTimeout)
            if released > 0 { logger.info("returned \(released) reserved task(s) to the broker") }
            supervisor.send(ChannelMessage.make("drained"))
            finish(code: 0)
        } else {
            loop.schedule(after: .milliseconds(20)) { [unowned self] in checkDrained() }
        }
    }

    var stats: JSONValue {
        let slotList = slots.keys.sorted().map { index -> JSONValue in
            let slot = slots[index]!
            return .object([
                "slot": .int(Int64(index)), "pid": .int(Int64(slot.pid)), "state": .string(slot.stateName),
                "task_id": slot.currentTaskID.map { .string($0) } ?? .null,
                "tasks_completed": .int(Int64(slot.tasksCompleted)),
            ])
        }
        return .object([
            "pid": .int(Int64(getpid())),
            "slots": .array(slotList),
            "busy": .int(Int64(busyCount)),
            "tasks_completed": .int(Int64(tasksCompleted)),
            "tasks_failed": .int(Int64(tasksFailed)),
            "worker_lost": .int(Int64(workerLost)),
            "prefetch": .int(Int64(prefetchWindow)),
            "queues": .array(configuration.worker.queues.map { .string($0) }),
            "broker": .object([
                "url": .string(redactedBrokerURL), "connected": .bool(brokerConnected),
                "detail": .string(brokerDetail),
            ]),
            "tasks": taskStats,
        ])
    }

    func dumpState() {
        logger.notice("state dump: \(slots.count) pool slot(s), \(busyCount) busy, shutting down: \(shuttingDown)")
        for index in slots.keys.sorted() {
            let slot = slots[index]!
            let task = slot.currentTaskID ?? "-"
            logger.notice(
                "slot \(index): pid \(slot.pid), \(slot.stateName), task \(task), \(slot.tasksCompleted) completed"
            )
        }
    }
}

struct ConsumerStartError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

extension Logger.Level {
    /// Maps the configuration's level (Core does not import swift-log).
    init(_ level: LogLevel) {
        switch level {
        case .trace: self = .trace
        case .debug: self = .debug
        case .info: self = .info
        case .notice: self = .notice
        case .warning: self = .warning
        case .error: self = .error
        case .critical: self = .critical
        }
    }
}
