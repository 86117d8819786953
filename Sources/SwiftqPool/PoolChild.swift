import DequeModule
import Logging
import OrderedCollections
import SwiftqCore
import SwiftqPlatform
import SwiftqTasks

#if canImport(Glibc)
import Glibc
#endif

/// A prefork pool child: executes one task at a time, sent by the consumer over its channel (fd 3).
///
/// The consumer may hand it more jobs than one (child prefetch, ``PreforkPool``): they wait in ``queue`` and run
/// in order; before each job starts, everything the consumer has written is read and handled
/// (``FramedChannel/readPending()``), so a ``PoolRequest/cancel(id:)`` sent before a job starts always finds it still
/// queued. A job's result is written before the next job starts: the consumer knows which job runs from the
/// results it has read. A task that reads its request context, which its `execute` did not carry, makes the child
/// ask the consumer for it and wait (``askForRequest(_:)``).
///
/// It never touches a broker. Its parent is the consumer (``PreforkPool``). It exits when its channel closes
/// (the pool let it go, or the consumer died) or its lifeline (fd 4, a pipe whose write end only the consumer
/// holds) reaches end of file, and the kernel kills it (`PR_SET_PDEATHSIG`) if the consumer dies first. Single-threaded: the task runs inside the
/// loop's callback, which is fine because the child has nothing else to do meanwhile; sleeps go through
/// ``TaskEnvironment/sleep`` so they end early when the lifeline breaks.
package final class PoolChild {
    package static let channelDescriptor: CInt = 3
    package static let lifelineDescriptor: CInt = 4

    private let slot: Int
    private let registry: TaskRegistry
    private let loop = EventLoop()
    private var logger: Logger
    private var channel: FramedChannel!
    private var exitCode: Int32 = 0
    /// Jobs received and not started yet, oldest first: to run, or refused for arguments a Python call would refuse
    /// (answered in their turn, so that results keep the order of the jobs).
    private var queue = Deque<Queued>()
    private enum Queued {
        case job(PoolJob)
        case refused(id: String, TaskFailure)

        var id: String {
            switch self {
            case .job(let job): job.id
            case .refused(let id, _): id
            }
        }
    }
    /// Whether ``runQueue()`` is running (a frame handler it calls only queues).
    private var running = false
    /// The request context the running task asked the consumer for (``askForRequest(_:)``).
    private var awaitedRequest: AwaitedRequest?
    private enum AwaitedRequest {
        case waiting(id: String)
        case answered(TaskRequest?)
    }

    package init(slot: Int, registry: TaskRegistry) {
        self.slot = slot
        self.registry = registry
        var logger = DaemonLog.logger(role: "pool")
        logger[metadataKey: DaemonLog.Key.slot] = "\(slot)"
        self.logger = logger
    }

    /// Runs until the channel or the lifeline closes; returns the exit code.
    package func run() -> Int32 {
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
        channel.onPayload = { [unowned self] payload, descriptors in self.handle(payload, descriptors) }
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
        channel.send(PoolReply.hello(pid: getpid(), slot: slot).json)
        loop.run()
        channel.flush(blockingFor: .seconds(1))
        return exitCode
    }

    private func handle(_ payload: [UInt8], _ descriptors: [CInt]) {
        descriptors.forEach(Descriptors.close)
        let parsed: (value: JSONValue, raw: JSONDeferredMembers)
        do {
            parsed = try JSONValue.parsing(payload, deferring: ["request"])
        } catch {
            // As the channel itself treats a frame that is not JSON: the stream cannot be trusted any more.
            logger.error("channel failed: undecodable frame: \(error)")
            exitCode = 1
            loop.stop()
            return
        }
        let request: PoolRequest
        do {
            request = try PoolRequest(decoding: parsed.value, requestText: parsed.raw["request"])
        } catch {
            switch error {
            case .badArguments(let id, let failure):
                queue.append(.refused(id: id, failure))
                runQueue()
            case .malformed(let problem, .string(let id)) where parsed.value["type"] == "execute":
                // The consumer waits for one answer per job it sent, in order: a job whose request cannot be read
                // still gets one (a failure naming the problem), else its slot would wait for it forever.
                logger.error("refusing a task request that cannot be read: \(problem)")
                let failure = TaskFailure(
                    type: "InternalError",
                    message: "the pool child could not read the task's request: \(problem)",
                    module: "swiftq"
                )
                queue.append(.refused(id: id, failure))
                runQueue()
            case .malformed(let problem, let id):
                logger.warning("ignoring a malformed channel message: \(problem)")
                channel.send(PoolReply.error(message: problem.description, id: id).json)
            }
            return
        }
        switch request {
        case .execute(let job):
            queue.append(.job(job))
            runQueue()
        case .cancel(let id):
            // Not found: the job already ran and its result was written before this frame was read.
            if let index = queue.firstIndex(where: { $0.id == id }) {
                queue.remove(at: index)
                channel.send(PoolReply.cancelled(id: id).json)
            }
        case .requestContext(let id, let request):
            // An answer nobody waits for any more (its task ended as the consumer wrote it) is dropped.
            guard case .waiting(id)? = awaitedRequest else { return }
            awaitedRequest = .answered(request)
        case .logLevel(let level):
            if Logger.Level(level) != DaemonLog.level {
                DaemonLog.level = Logger.Level(level)
                logger.info("log level is now \(level.rawValue)")
            }
        }
    }

    /// Runs the queued jobs in order. Before each one, the previous result is written out whole (the consumer
    /// learns that a job started from the result before it) and the channel is read (the frames that read hands
    /// on, called from here, only queue jobs or drop them).
    private func runQueue() {
        guard !running else { return }
        running = true
        defer { running = false }
        while channel.isOpen {
            guard writeOut() else { return }
            channel.readPending()
            guard channel.isOpen, let next = queue.popFirst() else { return }
            switch next {
            case .job(let job):
                execute(job)
            case .refused(let id, let failure):
                channel.send(PoolReply.result(id: id, outcome: .failure(failure), runtime: 0).json)
            }
        }
    }

    /// Waits until everything sent is written (the consumer reads whenever it can, so this ends), or returns false
    /// when the channel or the lifeline closed meanwhile.
    private func writeOut() -> Bool {
        while channel.isOpen && channel.pendingOutputBytes > 0 {
            if Descriptors.waitReadable(Self.lifelineDescriptor, timeout: .zero) {
                loop.stop()
                return false
            }
            channel.flush(blockingFor: .milliseconds(100))
        }
        return channel.isOpen
    }

    private func execute(_ job: PoolJob) {
        // Built only when a line is logged (the metadata argument is an autoclosure), not for every task.
        let taskLogger = logger
        func task() -> Logger.Metadata {
            [DaemonLog.Key.taskID: "\(job.id)", DaemonLog.Key.taskName: "\(job.name)"]
        }
        taskLogger.debug("task started", metadata: task())
        let started = ContinuousClock.now
        var invocation = TaskInvocation(
            id: job.id,
            name: job.name,
            args: job.args,
            kwargs: job.kwargs,
            retries: job.retries
        )
        // Sent with the job (exec tasks, tasks known to read it), or asked for when the task reads it (most never do).
        var remote: TaskRequest.Remote?
        if let source = job.requestSource {
            invocation.requestSource = source
        } else {
            let asking = TaskRequest.Remote { [unowned self] in askForRequest(job.id) }
            invocation.requestSource = .remote(asking)
            remote = asking
        }
        let outcome: TaskResult
        if let exec = job.exec {
            let timeout = exec.timeout.map { Duration.milliseconds(Int64($0 * 1000)) }
            // The program's own timeout and the task's hard limit: whichever comes first kills it.
            outcome = ExecTask.run(
                invocation,
                argv: exec.argv,
                timeout: timeout,
                softTimeout: job.softTimeLimit.map { Duration.milliseconds(Int64($0 * 1000)) },
                lifeline: Self.lifelineDescriptor
            )
        } else {
            let softDeadline = job.softTimeLimit.map { started + Duration.milliseconds(Int64($0 * 1000)) }
            outcome = registry.execute(invocation, environment: environment(softDeadline: softDeadline))
        }
        remote?.close()
        let runtime = started.duration(to: .now).seconds
        switch outcome {
        case .success:
            taskLogger.debug("task succeeded in \(runtime)s", metadata: task())
        case .failure(let failure):
            taskLogger.info("task failed: \(failure)", metadata: task())
        case .retry(let retry):
            taskLogger.info("task asked to be retried: \(retry)", metadata: task())
        case .reject(let reject):
            taskLogger.info(
                "task rejected its message (requeue: \(reject.requeue)): \(reject.reason)",
                metadata: task()
            )
        case .ignore:
            taskLogger.debug("task ended with Ignore", metadata: task())
        case .replace(let signature):
            taskLogger.debug(
                "task replaced by \(signature["task"]?.stringValue ?? "a signature")",
                metadata: task()
            )
        }
        channel.send(
            serialized: PoolReply.result(
                id: job.id,
                outcome: PoolOutcome(outcome),
                runtime: runtime,
                effects: invocation.effects.recorded
            ).serialized
        )
    }

    /// Asks the consumer for the running job's request context and waits for the answer (nil when the channel or
    /// the lifeline closes first). Frames that arrive meanwhile are handled as always: jobs queue, cancels drop
    /// queued ones.
    private func askForRequest(_ id: String) -> TaskRequest? {
        guard channel.isOpen else { return nil }
        awaitedRequest = .waiting(id: id)
        defer { awaitedRequest = nil }
        channel.send(PoolReply.requestContext(id: id).json)
        while writeOut() {
            if case .answered(let answer)? = awaitedRequest { return answer }
            if Descriptors.waitReadable(Self.lifelineDescriptor, timeout: .zero) {
                loop.stop()
                return nil
            }
            _ = Descriptors.waitReadable(Self.channelDescriptor, timeout: .milliseconds(100))
            channel.readPending()
        }
        return nil
    }

    /// Sleeps wake up early when the lifeline breaks (the supervisor is gone) or the soft time limit passes.
    private func environment(softDeadline: ContinuousClock.Instant?) -> TaskEnvironment {
        var environment = TaskEnvironment { duration in
            var wait = duration
            if let softDeadline {
                let left = ContinuousClock.now.duration(to: softDeadline)
                if left <= .zero { return false }
                if left < wait { wait = left }
            }
            return !Descriptors.waitReadable(PoolChild.lifelineDescriptor, timeout: wait) && wait == duration
        }
        environment.softDeadline = softDeadline
        return environment
    }
}
