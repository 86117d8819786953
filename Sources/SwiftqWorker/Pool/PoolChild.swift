import Logging
import OrderedCollections
import SwiftqCore
import SwiftqPlatform

#if canImport(Glibc)
import Glibc
#endif

/// A prefork pool child: executes one task at a time, sent by the consumer over its channel (fd 3).
///
/// It never touches a broker. Its parent is the consumer (``PreforkPool``). It exits when its channel closes
/// (the pool let it go, or the consumer died) or its lifeline (fd 4, a pipe whose write end only the consumer
/// holds) reaches end of file, and the kernel kills it (`PR_SET_PDEATHSIG`) if the consumer dies first. Single-threaded: the task runs inside the
/// loop's callback, which is fine because the child has nothing else to do meanwhile; sleeps go through
/// ``TaskEnvironment/sleep`` so they end early when the lifeline breaks.
final class PoolChild {
    static let channelDescriptor: CInt = 3
    static let lifelineDescriptor: CInt = 4

    private let slot: Int
    private let registry: TaskRegistry
    private let loop = EventLoop()
    private var logger: Logger
    private var channel: FramedChannel!
    private var exitCode: Int32 = 0

    init(slot: Int, registry: TaskRegistry) {
        self.slot = slot
        self.registry = registry
        var logger = DaemonLog.logger(role: "pool")
        logger[metadataKey: DaemonLog.Key.slot] = "\(slot)"
        self.logger = logger
    }

    /// Runs until the channel or the lifeline closes; returns the exit code.
    func run() -> Int32 {
        do {
            try ChildProcess.setParentDeathSignal(SIGKILL)
        } catch {
            logger.error("cannot arm the parent-death signal: \(error)")
        }
        if ChildProcess.parentIsGone { return 70 }  // The parent died before the death signal was armed.
        // A terminal's Ctrl-C and a reload are the supervisor's business, never a pool child's.
        UnixSignal.ignore(SIGINT)
        UnixSignal.ignore(SIGHUP)
        UnixSignal.ignore(SIGPIPE)

        channel = FramedChannel(descriptor: Self.channelDescriptor, loop: loop)
        channel.onFrame = { [unowned self] frame in self.handle(frame) }
        channel.onClose = { [unowned self] reason in
            if case .peerClosed = reason {
                logger.debug("channel closed; exiting")
            } else {
                logger.error("channel failed: \(reason)")
                exitCode = 1
            }
            loop.stop()
        }
        loop.watch(Self.lifelineDescriptor) { [unowned self] _ in
            logger.debug("lifeline closed: the supervisor is gone; exiting")
            loop.stop()
        }
        channel.send(ChannelMessage.make("hello", ["pid": .int(Int64(getpid())), "slot": .int(Int64(slot))]))
        loop.run()
        channel.flush(blockingFor: .seconds(1))
        return exitCode
    }

    private func handle(_ frame: ReceivedFrame) {
        frame.descriptors.forEach(Descriptors.close)
        let message = frame.message
        switch ChannelMessage.type(of: message) {
        case "execute":
            execute(message)
        case "log_level":
            if let name = message["level"]?.stringValue, let level = LogLevel(rawValue: name),
                Logger.Level(level) != DaemonLog.level
            {
                DaemonLog.level = Logger.Level(level)
                logger.info("log level is now \(name)")
            }
        default:
            logger.warning("ignoring a channel message of unknown type: \(message["type"] ?? .null)")
            channel.send(
                ChannelMessage.make(
                    "error",
                    [
                        "message": .string("unknown message type \(message["type"] ?? .null)"),
                        "id": message["id"] ?? .null,
                    ]
                )
            )
        }
    }

    private func execute(_ message: JSONValue) {
        guard let id = message["id"]?.stringValue, let name = message["task"]?.stringValue else {
            channel.send(
                ChannelMessage.make(
                    "error",
                    ["message": "execute needs string \"id\" and \"task\"", "id": message["id"] ?? .null]
                )
            )
            return
        }
        let args: [JSONValue]
        switch message["args"] {
        case nil, .null?: args = []
        case .array(let values)?: args = values
        case let other?:
            sendFailure(id: id, TaskFailure.typeError("args must be a list, got \(other.typeName)"), runtime: 0)
            return
        }
        let kwargs: OrderedDictionary<String, JSONValue>
        switch message["kwargs"] {
        case nil, .null?: kwargs = [:]
        case .object(let values)?: kwargs = values
        case let other?:
            sendFailure(id: id, TaskFailure.typeError("kwargs must be a dict, got \(other.typeName)"), runtime: 0)
            return
        }
        var taskLogger = logger
        taskLogger[metadataKey: DaemonLog.Key.taskID] = "\(id)"
        taskLogger[metadataKey: DaemonLog.Key.taskName] = "\(name)"
        taskLogger.debug("task started")
        let started = ContinuousClock.now
        let invocation = TaskInvocation(id: id, name: name, args: args, kwargs: kwargs)
        let outcome: Result<JSONValue, TaskFailure>
        if let exec = message["exec"], let argv = exec["argv"]?.arrayValue?.compactMap(\.stringValue), !argv.isEmpty {
            let timeout = exec["timeout"]?.doubleValue.map { Duration.milliseconds(Int64($0 * 1000)) }
            outcome = ExecTask.run(invocation, argv: argv, timeout: timeout, lifeline: Self.lifelineDescriptor)
        } else {
            outcome = registry.run(invocation, environment: environment)
        }
        let runtime = started.duration(to: .now).seconds
        switch outcome {
        case .success(let value):
            taskLogger.debug("task succeeded in \(runtime)s")
            channel.send(
                ChannelMessage.make(
                    "result",
                    ["id": .string(id), "state": "SUCCESS", "result": value, "runtime": .double(runtime)]
                )
            )
        case .failure(let failure):
            taskLogger.info("task failed: \(failure)")
            sendFailure(id: id, failure, runtime: runtime)
        }
    }

    private func sendFailure(id: String, _ failure: TaskFailure, runtime: Double) {
        channel.send(
            ChannelMessage.make(
                "result",
                [
                    "id": .string(id), "state": "FAILURE",
                    "exception": .object([
                        "exc_type": .string(failure.type), "exc_message": .string(failure.message),
                        "exc_module": .string(failure.module),
                    ]),
                    "traceback": failure.traceback.map { .string($0) } ?? .null,
                    "runtime": .double(runtime),
                ]
            )
        )
    }

    /// Sleeps wake up early when the lifeline breaks (the supervisor is gone).
    private var environment: TaskEnvironment {
        TaskEnvironment { duration in
            !Descriptors.waitReadable(PoolChild.lifelineDescriptor, timeout: duration)
        }
    }
}
