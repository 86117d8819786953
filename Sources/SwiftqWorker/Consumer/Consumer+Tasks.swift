import Logging
import OrderedCollections
import SwiftqAMQP
import SwiftqCore
import SwiftqPlatform
import SwiftqRedis

#if canImport(Glibc)
import Glibc
#endif

/// A reserved message on its way through the consumer: decoded, waiting for a pool slot, or running.
///
/// A class: it moves from the transport's batch to the ready queue to a slot, and a decoded task message is a
/// large value (every header) that would otherwise be copied, with all its references retained, at each step.
final class TaskDelivery {
    let message: TaskMessage
    var deliveryTag: String?
    let queue: String
    let receivedAt: ContinuousClock.Instant
    var startedAt: ContinuousClock.Instant?

    init(message: TaskMessage, deliveryTag: String?, queue: String, receivedAt: ContinuousClock.Instant) {
        self.message = message
        self.deliveryTag = deliveryTag
        self.queue = queue
        self.receivedAt = receivedAt
    }
}

/// Per task name counters and recent runtimes, for `stats`.
struct TaskStatistics {
    var succeeded = 0
    var failed = 0
    /// The most recent runtimes (seconds), a bounded window for percentiles: a ring of ``window`` entries.
    var runtimes: [Double] = []
    private var next = 0
    static let window = 1000

    mutating func record(runtime: Double, success: Bool) {
        if success { succeeded += 1 } else { failed += 1 }
        if runtimes.count < Self.window {
            runtimes.append(runtime)
        } else {
            runtimes[next] = runtime
            next = (next + 1) % Self.window
        }
    }

    func percentile(_ fraction: Double) -> Double? {
        guard !runtimes.isEmpty else { return nil }
        let sorted = runtimes.sorted()
        let index = min(sorted.count - 1, Int((Double(sorted.count) * fraction).rounded(.up)) - 1)
        return sorted[max(0, index)]
    }
}

/// Receiving, dispatching and completing tasks.
extension Consumer {
    /// The prefetch window: how many messages may be held (reserved and running) at once.
    var prefetchWindow: Int {
        let multiplier = configuration.worker.prefetchMultiplier
        // 0 means no limit, as in Celery; a bound still protects memory.
        return multiplier == 0 ? 100_000 : multiplier * configuration.worker.concurrency
    }

    /// Starts the broker transport (bootstep "Connection"): the URL's scheme picks Redis or RabbitMQ; nothing
    /// else in the consumer depends on the choice.
    func startConnection() throws {
        var url = configuration.broker.url
        if url == "embedded" { url = Configuration.EmbeddedBroker.url(for: configuration, database: 0) }
        var backend = configuration.resultBackend.url
        if backend == "embedded" { backend = Configuration.EmbeddedBroker.url(for: configuration, database: 1) }
        let expires = configuration.resultBackend.expires == .zero ? nil : configuration.resultBackend.expires
        let isAMQP = url.lowercased().hasPrefix("amqp://") || url.lowercased().hasPrefix("amqps://")
        let usesRPC = backend?.lowercased().hasPrefix("rpc://") == true
        let transport: any BrokerTransport
        if isAMQP {
            let brokerURL = try AMQPURL(parsing: url)
            let tls = configuration.broker.tls
            transport = try AMQPTransport(
                url: brokerURL,
                tls: brokerURL.usesTLS
                    ? AMQPTLSOptions(
                        caFile: tls.caFile,
                        certFile: tls.certFile,
                        keyFile: tls.keyFile,
                        verifyPeer: tls.verify,
                        verifyHostname: tls.verify
                    ) : nil,
                broker: configuration.broker,
                queues: configuration.worker.queues,
                window: configuration.worker.prefetchMultiplier == 0 ? 0 : prefetchWindow,
                nodeName: nodeName,
                rpcResults: usesRPC,
                redisResults: usesRPC ? nil : try backend.map { try RedisURL(parsing: $0) },
                resultExpires: expires
            )
        } else {
            if usesRPC {
                throw ConsumerStartError(
                    message: "result_backend.url rpc:// sends results as messages over a RabbitMQ broker; "
                        + "with a Redis broker use a redis:// result backend"
                )
            }
            transport = try RedisTransport(
                brokerURL: try RedisURL(parsing: url),
                backendURL: try backend.map { try RedisURL(parsing: $0) },
                queues: configuration.worker.queues,
                node: nodeName,
                daemonID: daemonID,
                resultExpires: expires,
                visibilityTimeout: configuration.broker.visibilityTimeout
            )
        }
        self.transport = transport
        loop.watch(transport.events.descriptor) { [unowned self] _ in
            for event in transport.events.drain() { handle(event) }
            dispatch()
            replenishCredit()
        }
        transport.start()
        logger.info(
            "consuming from \(transport.redactedURL)",
            metadata: [
                "queues": "\(configuration.worker.queues.joined(separator: ","))", "prefetch": "\(prefetchWindow)",
            ]
        )
    }

    /// Grants the transport as much credit as the window allows (bootstep "Tasks" and after each change).
    func replenishCredit() {
        guard let transport, !shuttingDown else { return }
        let wanted = prefetchWindow - held - outstandingCredit
        if wanted > 0 {
            outstandingCredit += wanted
            transport.grant(wanted)
        }
    }

    /// Messages reserved and not yet completed.
    var held: Int { ready.count + running.count }

    func handle(_ event: BrokerEvent) {
        switch event {
        case .delivered(let messages):
            outstandingCredit = max(0, outstandingCredit - messages.count)
            for inbound in messages { receive(inbound) }
        case .state(let connected, let detail):
            if connected != brokerConnected || (!connected && detail != brokerDetail) {
                if connected {
                    logger.info("broker: \(detail)")
                } else {
                    logger.error("broker unreachable: \(detail); reconnecting")
                }
                supervisor.send(ConsumerMessage.brokerState(connected: connected, detail: detail).json)
            }
            brokerConnected = connected
            brokerDetail = detail
        case .settled(let tags, let results):
            resultsStored += results
            messagesAcked += tags.count
            for tag in tags { unsettled.remove(tag) }
        case .reconnected(let held):
            let orphans = held.filter { !unsettled.contains($0) }
            if !orphans.isEmpty {
                logger.warning(
                    "re-queueing \(orphans.count) message(s) reserved in a call whose reply was lost with the connection"
                )
                transport?.settle(orphans.map { Settlement(deliveryTag: $0, disposition: .requeue) })
            }
        case .restored(let count):
            if count > 0 { logger.info("gave \(count) reserved message(s) back to the broker") }
        case .notice(let text):
            logger.warning("broker: \(text)")
        case .control(let deliveries):
            // Answered by the remote-control issue; for now only seen and counted.
            controlReceived += deliveries.count
            for delivery in deliveries {
                controlByMethod[delivery.body["method"]?.stringValue ?? "?", default: 0] += 1
                logger.debug(
                    "control message \(delivery.body["method"]?.stringValue ?? "?") from \(delivery.source)"
                )
            }
        }
    }

    /// Routes one delivered message; bad input is logged, counted, and settled so it never loops.
    func receive(_ inbound: InboundMessage) {
        received += 1
        let message: TaskMessage
        let delivery: TaskDelivery
        switch inbound {
        case .malformed(let payload, let queue):
            rejected["malformed_envelope", default: 0] += 1
            logger.error("dropping a message that is not a kombu envelope from \(queue): \(preview(payload))")
            return
        case .undecodable(let error, let deliveryTag, let queue):
            if let tag = deliveryTag { unsettled.insert(tag) }
            rejected[error.code.description, default: 0] += 1
            var metadata: Logger.Metadata = ["reason": "\(error.code.description)"]
            if let id = error.taskID { metadata[DaemonLog.Key.taskID] = "\(id)" }
            if let name = error.taskName { metadata[DaemonLog.Key.taskName] = "\(name)" }
            logger.error("rejecting message from \(queue): \(error.message)", metadata: metadata)
            var plan = Settlement(deliveryTag: deliveryTag, taskID: error.taskID)
            if let id = error.taskID {
                let meta = ResultMeta.failure(
                    taskID: id,
                    excType: "MessageDecodeError",
                    excMessage: [.string(error.message)],
                    excModule: "swiftq",
                    traceback: nil,
                    dateDone: .now,
                    request: nil,
                    extended: nil
                )
                plan.result = StoredResult(taskID: id, meta: meta.serialized())
            }
            transport?.settle(plan)
            return
        case .task(let task, let deliveryTag, let queue):
            if let tag = deliveryTag { unsettled.insert(tag) }
            message = task
            delivery = TaskDelivery(message: task, deliveryTag: deliveryTag, queue: queue, receivedAt: .now)
        }
        var taskLogger = logger
        taskLogger[metadataKey: DaemonLog.Key.taskID] = "\(message.id)"
        taskLogger[metadataKey: DaemonLog.Key.taskName] = "\(message.name)"
        guard registry.contains(message.name) || configuration.tasks[message.name] != nil else {
            rejected["not_registered", default: 0] += 1
            taskLogger.error("received unregistered task \(message.name); storing NotRegistered")
            finish(delivery, outcome: .failure(.notRegistered(message.name)), runtime: 0)
            return
        }
        if message.redelivered { taskLogger.info("redelivered task received") } else { taskLogger.debug("received") }
        if revokeIfExpired(delivery) { return }
        if let eta = message.eta, eta > CeleryTimestamp.now {
            // Held in memory, still unacked, until its ETA (its visibility deadline is kept fresh meanwhile);
            // ETA tasks do not count against the prefetch window, as Celery raises its QoS for them.
            waitingForETA += 1
            transport?.setHeldForETA(waitingForETA)
            if let tag = delivery.deliveryTag { transport?.setRunning(tag, true) }
            let delay = eta.secondsSince1970 - CeleryTimestamp.now.secondsSince1970
            taskLogger.debug("holding until its ETA \(eta.iso8601)")
            loop.schedule(after: .milliseconds(Int64(max(0, delay) * 1000))) { [unowned self] in
                waitingForETA -= 1
                transport?.setHeldForETA(waitingForETA)
                if let tag = delivery.deliveryTag { transport?.setRunning(tag, false) }
                guard !shuttingDown else { return }
                ready.append(delivery)
                dispatch()
            }
            return
        }
        ready.append(delivery)
    }

    /// A task whose `expires` has passed is not run: REVOKED with `TaskRevokedError('expired')` is stored and
    /// the message acked, as Celery does. Checked on receipt and again before it starts.
    func revokeIfExpired(_ delivery: TaskDelivery) -> Bool {
        guard let expires = delivery.message.expires, expires <= CeleryTimestamp.now else { return false }
        rejected["expired", default: 0] += 1
        logger.info(
            "task expired at \(expires.iso8601); not running it",
            metadata: [
                DaemonLog.Key.taskID: "\(delivery.message.id)", DaemonLog.Key.taskName: "\(delivery.message.name)",
            ]
        )
        let meta = ResultMeta.meta(
            status: "REVOKED",
            result: ResultMeta.exception(type: "TaskRevokedError", message: ["expired"], module: "celery.exceptions"),
            traceback: nil,
            children: .null,
            dateDone: .now,
            request: nil,
            extended: nil,
            taskID: delivery.message.id
        )
        transport?.settle(
            Settlement(
                result: StoredResult(
                    taskID: delivery.message.id,
                    meta: meta.serialized(),
                    replyTo: delivery.message.replyTo
                ),
                deliveryTag: delivery.deliveryTag,
                taskID: delivery.message.id
            )
        )
        return true
    }

    /// Hands ready tasks to idle pool slots.
    func dispatch() {
        guard !shuttingDown, let pool else { return }
        while !ready.isEmpty && pool.idleSlots > 0 {
            // Two copies of one task id never run at once (events are keyed by it): the second waits.
            if let id = ready.first?.message.id, running[id] != nil { return }
            let delivery = ready.removeFirst()
            if let tag = delivery.deliveryTag, transport?.isStale(tag) == true {
                // Delivered on a connection that has been lost: the broker delivers it again, and this copy
                // can no longer be acked, so it must not run.
                unsettled.remove(tag)
                logger.info(
                    "dropping a reserved task from a lost broker connection; the broker redelivers it",
                    metadata: [DaemonLog.Key.taskID: "\(delivery.message.id)"]
                )
                continue
            }
            if revokeIfExpired(delivery) { continue }
            // Exec tasks are configuration, which pool children do not read: the job carries the program.
            let exec = configuration.tasks[delivery.message.name].map {
                PoolJob.ExecSpec(argv: $0.argv, timeout: $0.timeout?.seconds)
            }
            let job = PoolJob(
                id: delivery.message.id,
                name: delivery.message.name,
                args: delivery.message.args,
                kwargs: delivery.message.kwargs,
                exec: exec,
                softTimeLimit: delivery.message.timeLimit.soft,
                hardTimeLimit: delivery.message.timeLimit.hard
            )
            guard let placed = pool.submit(job) else {
                ready.prepend(delivery)
                return
            }
            delivery.startedAt = .now
            running[job.id] = delivery
            // Early ack (worker.acks_late: false) is Celery's default: the message is settled as the task
            // starts, so a crash from here on loses it. STARTED is stored first when tracking is on.
            var atStart = Settlement(taskID: delivery.message.id, disposition: .none)
            if configuration.worker.trackStarted && delivery.message.ignoreResult != true {
                atStart.result = StoredResult(
                    taskID: delivery.message.id,
                    meta: ResultMeta.started(
                        taskID: delivery.message.id,
                        pid: Int(placed.pid),
                        hostname: nodeName,
                        request: delivery.message
                    ).serialized(),
                    replyTo: delivery.message.replyTo
                )
            }
            if !configuration.worker.acksLate {
                atStart.deliveryTag = delivery.deliveryTag
                atStart.disposition = .ack
                delivery.deliveryTag = nil
            }
            if atStart.result != nil || atStart.deliveryTag != nil { transport?.settle(atStart) }
            if let tag = delivery.deliveryTag { transport?.setRunning(tag, true) }
        }
    }

    /// The child running `delivery` exited before it returned. A hard time limit stores Celery's
    /// `TimeLimitExceeded(<seconds>)` (as billiard raises it: the limit is the exception's one argument); any
    /// other reason Celery's `WorkerLostError` (the message is acked, as Celery does without
    /// `reject_on_worker_lost`).
    func failLostTask(_ delivery: TaskDelivery, reason: ExitReason) {
        let failure: TaskFailure
        if case .timeLimit = reason, let limit = delivery.message.timeLimit.hard {
            failure = .timeLimitExceeded(seconds: limit)
        } else {
            let status: String
            switch reason {
            case .crash(let exit), .oomKilled(let exit): status = "\(exit)"
            default: status = "\(reason)"
            }
            failure = TaskFailure(
                type: "WorkerLostError",
                message: "Worker exited prematurely: \(status).",
                module: "billiard.exceptions"
            )
        }
        finish(delivery, outcome: .failure(failure), runtime: delivery.receivedAt.duration(to: .now).seconds)
    }

    /// Records the outcome, queues the result (unless ignored) and the ack, in that order.
    func finish(_ delivery: TaskDelivery, outcome: Result<JSONValue, TaskFailure>, runtime: Double) {
        let message = delivery.message
        var statistics = taskStatistics[message.name] ?? TaskStatistics()
        tasksCompleted += 1
        switch outcome {
        case .success: statistics.record(runtime: runtime, success: true)
        case .failure:
            tasksFailed += 1
            statistics.record(runtime: runtime, success: false)
        }
        taskStatistics[message.name] = statistics
        // The meta (with its date and request fields) is built only when it will be stored.
        var meta: JSONValue?
        if configuration.resultBackend.url != nil && message.ignoreResult != true {
            let extended =
                configuration.resultBackend.extended
                ? ResultMeta.ExtendedFields(
                    name: message.name,
                    args: message.args,
                    kwargs: message.kwargs,
                    worker: nodeName,
                    retries: message.retries,
                    queue: delivery.queue
                ) : nil
            switch outcome {
            case .success(let value):
                meta = ResultMeta.success(
                    taskID: message.id,
                    result: value,
                    dateDone: .now,
                    request: message,
                    extended: extended
                )
            case .failure(let failure):
                meta = ResultMeta.failure(
                    taskID: message.id,
                    excType: failure.type,
                    excMessage: failure.arguments ?? [.string(failure.message)],
                    excModule: failure.module,
                    traceback: failure.traceback,
                    dateDone: .now,
                    request: message,
                    extended: extended
                )
            }
        }
        if let tag = delivery.deliveryTag { transport?.setRunning(tag, false) }
        transport?.settle(
            Settlement(
                result: meta.map { StoredResult(taskID: message.id, meta: $0.serialized(), replyTo: message.replyTo) },
                deliveryTag: delivery.deliveryTag,
                taskID: message.id
            )
        )
    }

    /// The first bytes of a payload, printable, for a log line.
    func preview(_ bytes: [UInt8]) -> String {
        let text = String(decoding: bytes.prefix(120), as: UTF8.self)
        return text.debugDescription + (bytes.count > 120 ? "…" : "")
    }

    /// The `tasks` and `broker` parts of `stats`.
    var taskStats: JSONValue {
        var names: OrderedDictionary<String, JSONValue> = [:]
        for name in taskStatistics.keys.sorted() {
            let statistics = taskStatistics[name]!
            names[name] = .object([
                "succeeded": .int(Int64(statistics.succeeded)),
                "failed": .int(Int64(statistics.failed)),
                "runtime_p50": statistics.percentile(0.5).map { .double($0) } ?? .null,
                "runtime_p99": statistics.percentile(0.99).map { .double($0) } ?? .null,
            ])
        }
        var rejectedJSON: OrderedDictionary<String, JSONValue> = [:]
        for reason in rejected.keys.sorted() { rejectedJSON[reason] = .int(Int64(rejected[reason]!)) }
        return .object([
            "received": .int(Int64(received)),
            "reserved": .int(Int64(ready.count)),
            "active": .int(Int64(busyCount)),
            "rejected": .object(rejectedJSON),
            "results_stored": .int(Int64(resultsStored)),
            "acked": .int(Int64(messagesAcked)),
            "by_name": .object(names),
        ])
    }
}
