import Logging
import SwiftqBootsteps
import SwiftqConsumer
import SwiftqCore
import SwiftqPlatform
import SwiftqPool
import SwiftqTasks

#if canImport(Glibc)
import Glibc
#endif

/// The `swiftqd` main process: one process table, signals, sd_notify, the control socket.
///
/// It starts its parts through its blueprint (Signals → Lifeline → ControlSocket → EmbeddedBroker? →
/// Consumer → Watchdog → Notify), then runs one event loop on the main thread until shutdown. Its children
/// are the consumer and the embedded broker: spawned from this thread (so `PR_SET_PDEATHSIG` stays armed as
/// long as the supervisor lives), reaped here with a `waitpid(-1, WNOHANG)` loop on SIGCHLD, and respawned
/// with the backoff of ``RestartPolicy``. The pool children are the consumer's (``PreforkPool``): the
/// supervisor only shows the rows the consumer reports (``poolRows``) and counts their crash loops. All
/// state below belongs to the loop's thread; signals only queue a byte in the ``SignalPipe`` and are handled
/// by the loop.
final class Supervisor {
    /// Lifecycle of the supervisor as a whole.
    enum State: Equatable {
        case starting
        case running
        case reloading
        case stopping(cold: Bool)
    }

    let loop = EventLoop()
    let notifier = SystemdNotifier()
    let registry: TaskRegistry
    let configurationPath: String
    let executable: String
    var configuration: Configuration
    var configurationText: String
    var logger = DaemonLog.logger(role: "supervisor")
    var state: State = .starting
    let startedAt = ContinuousClock.now
    let startedAtWallClock = wallClockSeconds()
    var policy = RestartPolicy()

    // Parts brought up by the bootsteps.
    var signalPipe: SignalPipe?
    var lifeline: (read: CInt, write: CInt)?
    var controlServer: ControlServer?
    var consumer = ManagedChild(role: .consumer)
    var consumerChannel: FramedChannel?
    var consumerReady = false
    var lastConsumerHeartbeat: ContinuousClock.Instant?
    /// The fetch progress of the consumer's last heartbeat (seconds idle, starved), for ``checkConsumerStall()``.
    var consumerFetch: (idle: Double, starved: Bool)?
    /// Random per daemon start, given to each consumer: on Redis a consumer's reservations are owned by
    /// `<node>#<daemonID>.<random>`, so a respawned consumer knows its predecessors (same daemon, one consumer at a
    /// time) are dead and gives their messages back at once.
    let daemonID = randomHex()
    /// The pool's rows as the consumer last reported them (`stats` `children` rows of role `pool`).
    var poolRows: [JSONValue] = []
    /// The embedded dev broker's process, when enabled.
    var embeddedBroker: ManagedChild?
    /// The embedded beat scheduler's child and what it reported (Supervisor+Beat.swift).
    let beat = BeatSupervision()

    /// Every entry of the process table.
    var allChildren: [ManagedChild] {
        [consumer] + (embeddedBroker.map { [$0] } ?? []) + (beat.child.isAlive ? [beat.child] : [])
    }
    var startedBlueprint: StartedBlueprint<Supervisor>?
    var watchdog: RepeatingTimer?
    /// The consumer's last word on the broker connection (nil until it reports).
    var brokerConnected: Bool?
    var brokerDetail: String?
    /// When the consumer last reported the broker unreachable, until it reports it connected (health).
    var brokerDownSince: ContinuousClock.Instant?
    /// The `/metrics` and `/healthz` listener (Supervisor+Monitoring.swift).
    var monitoring: MonitoringServer?
    var statusTimer: RepeatingTimer?
    /// What the children this supervisor reaped used (with their own reaped children), for `stats`.
    var reapedUsage = ResourceUsage.zero
    var lastStatus = ""

    // Shutdown and reload bookkeeping.
    var exitCode: Int32 = 0
    var shutdownDeadline: ContinuousClock.Instant?
    var reloads = ReloadHistory()
    var pendingConsumerQueries: [Int64: (JSONValue?) -> Void] = [:]
    var nextQuery: Int64 = 1

    init(configuration: Configuration, text: String, path: String, registry: TaskRegistry) {
        self.configuration = configuration
        self.configurationText = text
        self.configurationPath = path
        self.registry = registry
        self.executable = ChildProcess.currentExecutable
        self.policy.maximumDelay = configuration.worker.restartBackoffMax
    }

    /// The supervisor's blueprint. Later issues add EmbeddedBroker (before Consumer) and Beat (after it).
    static func blueprint() -> Blueprint<Supervisor> {
        // The steps are fixed and acyclic; a failure here is a programming error.
        // swift-format-ignore: NeverUseForceTry
        try! Blueprint(
            name: "supervisor",
            steps: [
                Bootstep(name: "Signals", start: { try $0.startSignals() }),
                Bootstep(name: "Lifeline", start: { try $0.startLifeline() }, stop: { $0.stopLifeline() }),
                Bootstep(
                    name: "ControlSocket",
                    requires: ["Signals"],
                    start: { try $0.startControlSocket() },
                    stop: { $0.stopControlSocket() }
                ),
                Bootstep(
                    name: "EmbeddedBroker",
                    requires: ["Signals"],
                    isEnabled: { Configuration.EmbeddedBroker.isUsed(by: $0.configuration) },
                    start: { try $0.startEmbeddedBroker() },
                    stop: { $0.stopEmbeddedBroker() }
                ),
                Bootstep(
                    name: "Consumer",
                    requires: ["Lifeline", "Signals", "EmbeddedBroker"],
                    start: { try $0.startConsumer() },
                    stop: { $0.stopConsumer() }
                ),
                Bootstep(
                    name: "Beat",
                    requires: ["Consumer"],
                    isEnabled: { $0.isBeatEnabled },
                    start: { try $0.startBeat() },
                    stop: { $0.stopBeat() }
                ),
                Bootstep(
                    name: "Monitoring",
                    requires: ["Consumer"],
                    isEnabled: { $0.configuration.metrics.listen != nil },
                    start: { try $0.startMonitoring() },
                    stop: { $0.stopMonitoring() }
                ),
                Bootstep(
                    name: "Watchdog",
                    requires: ["Consumer"],
                    isEnabled: { $0.notifier.watchdogInterval != nil },
                    start: { $0.startWatchdog() },
                    stop: { $0.watchdog?.cancel() }
                ),
                Bootstep(
                    name: "Notify",
                    requires: ["Consumer", "ControlSocket", "Watchdog"],
                    start: { $0.notifyReady() }
                ),
            ]
        )
    }

    /// Starts every step, runs until shutdown, stops every step; returns the process exit code.
    func run() -> Int32 {
        logger.info(
            "swiftqd \(SwiftqVersion.current) starting",
            metadata: ["config": "\(configurationPath)", "concurrency": "\(configuration.worker.concurrency)"]
        )
        do {
            startedBlueprint = try Self.blueprint().start(self) { step in
                self.setStatus("starting: \(step.name)")
                self.logger.debug("starting step", metadata: [DaemonLog.Key.step: "\(step.name)"])
            }
        } catch {
            logger.critical("startup failed: \(error.message)")
            notifier.notify("STATUS=startup failed: \(error.message)\nERRNO=1")
            killEveryChild()
            return 1
        }
        if case .stopping = state {
            // A signal arrived during startup: the shutdown already began.
        } else {
            state = .running
        }
        statusTimer = loop.repeating(every: .seconds(1)) { [unowned self] in refreshStatus() }
        while !isShutdownComplete {
            loop.runOnce(timeout: .milliseconds(500))
            enforceShutdownDeadline()
        }
        statusTimer?.cancel()
        startedBlueprint?.stop(self) { step in
            self.logger.debug("stopping step", metadata: [DaemonLog.Key.step: "\(step.name)"])
        }
        logger.info("swiftqd stopped")
        return exitCode
    }

    /// Whether a shutdown was requested and every child is gone.
    var isShutdownComplete: Bool {
        guard case .stopping = state else { return false }
        // The embedded broker is not waited for here: its bootstep stops it last, after the consumer has
        // finished acking and handing messages back.
        return !consumer.isAlive
    }

    // MARK: Steps

    func startSignals() throws {
        UnixSignal.ignore(SIGPIPE)
        let pipe = try SignalPipe(signals: [SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGCHLD])
        signalPipe = pipe
        loop.watch(pipe.readDescriptor) { [unowned self] _ in
            for signal in pipe.drain() { handle(signal: signal) }
        }
    }

    func startLifeline() throws {
        lifeline = try Descriptors.pipe()
    }

    func stopLifeline() {
        if let lifeline {
            Descriptors.close(lifeline.read)
            Descriptors.close(lifeline.write)
        }
        lifeline = nil
    }

    func startControlSocket() throws {
        let server = try ControlServer(
            configuration: configuration.control,
            loop: loop,
            logger: DaemonLog.logger(role: "supervisor")
        )
        server.handler = { [unowned self] request, reply in handleControl(request, reply: reply) }
        controlServer = server
        logger.info("control socket listening", metadata: ["socket": "\(configuration.control.socket)"])
    }

    func stopControlSocket() {
        controlServer?.close()
        controlServer = nil
    }

    func startConsumer() throws {
        try spawnConsumer()
        let ready = loop.run(
            until: { self.consumerReady || self.state != .starting },
            timeout: .seconds(60)
        )
        if !ready {
            throw SupervisorError(message: "the consumer did not report ready within 60s")
        }
    }

    func stopConsumer() {
        if consumer.isAlive { ChildProcess.signal(consumer.pid, SIGKILL) }
        consumerChannel?.close()
        consumerChannel = nil
    }

    func startWatchdog() {
        guard let interval = notifier.watchdogInterval else { return }
        let period = interval / 2
        logger.info("systemd watchdog enabled: pinging every \(period)")
        watchdog = loop.repeating(every: period) { [unowned self] in
            if isHealthy { notifier.watchdog() } else { logger.warning("unhealthy: withholding the watchdog ping") }
        }
        if isHealthy { notifier.watchdog() }
    }

    func notifyReady() {
        guard state == .starting else { return }
        state = .running
        let status = statusLine
        lastStatus = status
        notifier.ready(status: status)
        logger.info("ready: \(status)")
    }
}

/// A startup failure of the supervisor itself.
struct SupervisorError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

/// Reload outcomes, for `stats`.
struct ReloadHistory {
    var succeeded = 0
    var failed = 0
    var lastOK: Bool?
    var lastError: String?
    var lastAt: Double?
}
