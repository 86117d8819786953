import OrderedCollections
import SwiftqAMQP
import SwiftqCore
import SwiftqPlatform
import SwiftqRedis
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The RabbitMQ transport as the consumer uses it: one thread owns the AMQP connection (librabbitmq is not
/// thread-safe) and does everything on it: consuming, acks, publishing `rpc://` results with publisher confirms,
/// and heartbeats, which therefore keep flowing however busy the pool is and during a warm shutdown.
///
/// - Deliveries are decoded on that thread and posted to the consumer in batches. `basic.qos` bounds them:
///   prefetch = `worker.prefetch_multiplier` × concurrency, raised by the number of tasks held for their ETA
///   (as Celery does), so that those never starve the window.
/// - Delivery tags are only valid on the connection that delivered them, so each connection gets a generation
///   and a tag is `"<generation>:<tag>"`. After a reconnect, acks for older tags are not sent (the broker has
///   already put those messages back, marked redelivered); a task that *finished* meanwhile is remembered, and
///   its redelivered copy is acked without running it again.
/// - With a Redis result backend, a ``ResultWriter`` thread stores results first and hands the acks back here.
final class AMQPTransport: BrokerTransport {
    let events: Mailbox<BrokerEvent>
    private let url: AMQPURL
    private let tls: AMQPTLSOptions?
    private let heartbeat: Duration
    private let connectTimeout: Duration
    private let queues: [String]
    private let queueArguments: OrderedDictionary<String, JSONValue>
    /// `worker.prefetch_multiplier` × concurrency; 0 means unlimited.
    private let window: Int
    /// A channel-wide `basic.qos`, as Celery sets it on RabbitMQ: one window shared by the consumers of every queue,
    /// which can be raised for ETA tasks at once (a per-consumer limit changes only for consumers started later).
    /// Quorum queues refuse it; with them the window is per queue and is not raised for ETA tasks.
    private let globalPrefetch: Bool
    private let publishesResults: Bool
    private let resultWriter: ResultWriter?
    /// Completions for this thread to settle (from the consumer, or from the result writer once stored).
    private let inbox: Mailbox<Completion>
    private let generation = Atomic<Int>(0)
    private let heldForETA = Mutex(0)
    private let stopRequest = Mutex<ContinuousClock.Instant?>(nil)
    private let wake = Semaphore()
    private let finished = Semaphore()
    /// Channel 1 consumes and acks; channel 2 publishes results in confirm mode.
    private let consumeChannel: UInt16 = 1
    private let publishChannel: UInt16 = 2

    var redactedURL: String { url.redacted }

    init(
        url: AMQPURL,
        tls: AMQPTLSOptions?,
        broker: Configuration.Broker,
        queues: [String],
        window: Int,
        rpcResults: Bool,
        redisResults: RedisURL?,
        resultExpires: Duration?
    ) throws {
        self.url = url
        self.tls = tls
        self.heartbeat = url.heartbeat ?? broker.heartbeat
        self.connectTimeout = url.connectTimeout ?? broker.connectTimeout
        self.queues = queues
        var arguments: OrderedDictionary<String, JSONValue> = [:]
        if let priority = broker.queueMaxPriority { arguments["x-max-priority"] = .int(Int64(priority)) }
        if broker.queueType == .quorum { arguments["x-queue-type"] = .string("quorum") }
        self.queueArguments = arguments
        self.window = window
        self.globalPrefetch = broker.queueType == .classic
        self.publishesResults = rpcResults
        let events = try Mailbox<BrokerEvent>()
        let inbox = try Mailbox<Completion>()
        self.events = events
        self.inbox = inbox
        if let redisResults {
            resultWriter = ResultWriter(
                url: redisResults,
                expires: resultExpires,
                forward: { completions, stored in
                    inbox.post(completions)
                    if stored > 0 { events.post(.settled(tags: [], results: stored)) }
                },
                report: { problem in
                    if let problem { events.post(.notice(problem)) }
                }
            )
        } else {
            resultWriter = nil
        }
    }

    func start() {
        resultWriter?.start()
        PlatformThread.startOrExit(name: "swiftq-amqp") { [self] in run() }
    }

    /// The broker's `basic.qos` bounds deliveries; credit is not needed.
    func grant(_ count: Int) {}

    func setHeldForETA(_ count: Int) {
        heldForETA.withLock { $0 = count }
        inbox.post(Completion())
    }

    /// Nothing to refresh: RabbitMQ keeps an unacked delivery with its consumer for as long as the connection
    /// lives (up to its `consumer_timeout`).
    func setRunning(_ tag: String, _ isRunning: Bool) {}

    func isStale(_ tag: String) -> Bool {
        guard let generationText = tag.split(separator: ":", maxSplits: 1).first,
            let tagGeneration = Int(generationText)
        else { return true }
        return tagGeneration != generation.load(ordering: .acquiring)
    }

    /// Completions with a result to store go through the result writer (Redis backend); bare acks skip it, as
    /// nothing has to happen before them.
    func complete(_ completions: [Completion]) {
        guard let resultWriter else {
            inbox.post(completions)
            return
        }
        var stored: [Completion] = []
        var bare: [Completion] = []
        for completion in completions {
            if completion.meta == nil { bare.append(completion) } else { stored.append(completion) }
        }
        if !bare.isEmpty { inbox.post(bare) }
        if !stored.isEmpty { resultWriter.post(stored) }
    }

    func stop(restoreHeld: Bool, timeout: Duration) {
        let deadline = ContinuousClock.now + timeout
        resultWriter?.stop(timeout: timeout)
        stopRequest.withLock { $0 = deadline }
        inbox.post(Completion())
        wake.post()
        finished.wait(timeout: max(.zero, deadline - .now) + .milliseconds(200))
    }

    // MARK: The connection thread

    /// One connection's state, gone with it.
    private struct Session {
        let connection: AMQPConnection
        let generation: Int
        /// Consumer tag → queue name.
        var queueByConsumer: [String: String] = [:]
        /// Published results waiting for the broker's confirm, by publish sequence number, with what to ack then.
        var unconfirmed: [UInt64: Completion] = [:]
        /// Delivery tags received and neither acked nor rejected yet.
        var outstanding = Set<UInt64>()
        /// Acks decided in this turn, sent together by ``flushAcks(_:)``.
        var pendingAcks: [UInt64] = []
        var prefetch: Int
    }

    private var stopDeadline: ContinuousClock.Instant? { stopRequest.withLock { $0 } }

    private func run() {
        var backoff = Backoff()
        var session: Session?
        /// Tasks that finished while their delivery's connection was lost: their redelivered copies are acked
        /// without running them again. Bounded; the oldest are forgotten first.
        var finishedWithLostAck = OrderedSet<String>()
        while true {
            if let deadline = stopDeadline {
                if let current = session {
                    drainForStop(current, deadline: deadline, lost: &finishedWithLostAck)
                    current.connection.close()
                }
                break
            }
            guard var current = session else {
                do {
                    session = try connect()
                    backoff.reset()
                } catch {
                    events.post(.state(connected: false, detail: Self.describe(error)))
                    wake.wait(timeout: backoff.next())
                }
                continue
            }
            do {
                try step(&current, lost: &finishedWithLostAck)
                session = current
            } catch {
                events.post(.state(connected: false, detail: Self.describe(error)))
                // Unconfirmed results are lost with the connection; their tasks' messages come back redelivered
                // (they were not acked), so the results are published again when the tasks run again.
                current.connection.close()
                session = nil
                generation.add(1, ordering: .releasing)
                wake.wait(timeout: backoff.next())
            }
        }
        finished.post()
    }

    private static func describe(_ error: any Error) -> String {
        guard let error = error as? AMQPError else { return "\(error)" }
        return error.remedy.map { "\(error.message): \($0)" } ?? error.message
    }

    private var wantedPrefetch: Int {
        guard window > 0 else { return 0 }
        return min(Int(UInt16.max), window + heldForETA.withLock { $0 })
    }

    private func connect() throws -> Session {
        let connection = try AMQPConnection(
            url: url,
            tls: tls,
            heartbeat: heartbeat,
            connectTimeout: connectTimeout,
            connectionName: "swiftqd consumer \(getpid())"
        )
        try connection.openChannel(consumeChannel)
        for queue in queues {
            // What Celery declares for a queue: a durable direct exchange of the same name, bound by the name.
            try connection.declareExchange(channel: consumeChannel, name: queue, type: "direct", durable: true)
            _ = try connection.declareQueue(
                channel: consumeChannel,
                name: queue,
                durable: true,
                arguments: queueArguments
            )
            try connection.bindQueue(channel: consumeChannel, queue: queue, exchange: queue, routingKey: queue)
        }
        let prefetch = wantedPrefetch
        try connection.qos(channel: consumeChannel, prefetchCount: UInt16(prefetch), global: globalPrefetch)
        var queueByConsumer: [String: String] = [:]
        for queue in queues {
            queueByConsumer[try connection.consume(channel: consumeChannel, queue: queue)] = queue
        }
        if publishesResults {
            try connection.openChannel(publishChannel)
            try connection.confirmSelect(channel: publishChannel)
        }
        let current = generation.add(1, ordering: .releasing).newValue
        events.post(.state(connected: true, detail: "connected to \(url.redacted)"))
        return Session(
            connection: connection,
            generation: current,
            queueByConsumer: queueByConsumer,
            prefetch: prefetch
        )
    }

    /// One turn: settle what the consumer finished, follow prefetch changes, wait for the socket or the inbox
    /// (at most a second, so heartbeats and stops are never late), and read what arrived.
    private func step(_ session: inout Session, lost: inout OrderedSet<String>) throws {
        var settled: [String] = []
        for completion in inbox.drain() {
            try settle(completion, in: &session, settled: &settled, lost: &lost)
        }
        try flushAcks(&session)
        let prefetch = wantedPrefetch
        if prefetch != session.prefetch {
            try session.connection.qos(channel: consumeChannel, prefetchCount: UInt16(prefetch), global: globalPrefetch)
            session.prefetch = prefetch
        }
        if !session.connection.hasBufferedFrames {
            var descriptors = [
                pollfd(fd: session.connection.descriptor, events: Int16(POLLIN), revents: 0),
                pollfd(fd: inbox.descriptor, events: Int16(POLLIN), revents: 0),
            ]
            _ = poll(&descriptors, 2, 1000)
        }
        var delivered: [InboundMessage] = []
        while delivered.count < 256, let event = try session.connection.nextEvent(timeout: .zero) {
            try handle(event, in: &session, delivered: &delivered, settled: &settled, lost: &lost)
        }
        try flushAcks(&session)
        if !delivered.isEmpty { events.post(.delivered(delivered)) }
        if !settled.isEmpty { events.post(.settled(tags: settled, results: 0)) }
    }

    /// Publishes a result (`rpc://`) or acks/requeues a delivery.
    private func settle(
        _ completion: Completion,
        in session: inout Session,
        settled: inout [String],
        lost: inout OrderedSet<String>
    ) throws {
        if publishesResults, let taskID = completion.taskID, let meta = completion.meta {
            guard let replyTo = completion.replyTo, !replyTo.isEmpty else {
                // Celery publishes nothing for a task sent without a reply queue.
                try acknowledge(completion, in: &session, settled: &settled, lost: &lost)
                return
            }
            var properties = AMQPProperties()
            properties.contentType = "application/json"
            properties.contentEncoding = "utf-8"
            properties.correlationID = taskID
            properties.deliveryMode = 1
            properties.priority = 0
            let sequence = try session.connection.publish(
                channel: publishChannel,
                exchange: "",
                routingKey: replyTo,
                properties: properties,
                body: meta
            )
            var rest = completion
            rest.meta = nil
            session.unconfirmed[sequence] = rest
            return
        }
        try acknowledge(completion, in: &session, settled: &settled, lost: &lost)
    }

    /// Sends the acks decided this turn: one `multiple` ack for the longest run of them that starts at the oldest
    /// outstanding delivery (a `multiple` ack covers every lower tag, so only a run with no gap qualifies), then
    /// the others one by one. Fewer frames for the broker to handle, the same acks.
    private func flushAcks(_ session: inout Session) throws {
        guard !session.pendingAcks.isEmpty else { return }
        var rest = Set(session.pendingAcks)
        session.pendingAcks.removeAll(keepingCapacity: true)
        var runEnd: UInt64?
        var runLength = 0
        for tag in session.outstanding.sorted() {
            guard rest.contains(tag) else { break }
            runEnd = tag
            runLength += 1
        }
        if let runEnd, runLength > 1 {
            try session.connection.ack(channel: consumeChannel, deliveryTag: runEnd, multiple: true)
            rest = rest.filter { $0 > runEnd }
            session.outstanding = session.outstanding.filter { $0 > runEnd }
        }
        for tag in rest.sorted() {
            try session.connection.ack(channel: consumeChannel, deliveryTag: tag)
            session.outstanding.remove(tag)
        }
    }

    private func acknowledge(
        _ completion: Completion,
        in session: inout Session,
        settled: inout [String],
        lost: inout OrderedSet<String>
    ) throws {
        guard let tag = completion.deliveryTag else { return }
        guard let (tagGeneration, deliveryTag) = Self.split(tag), tagGeneration == session.generation else {
            // Delivered on a lost connection: the broker has put the message back already.
            if !completion.requeue, let taskID = completion.taskID {
                lost.append(taskID)
                if lost.count > 10_000 { lost.removeFirst(lost.count - 10_000) }
            }
            settled.append(tag)
            events.post(
                .notice(
                    "ack of \(completion.taskID ?? "a message") skipped: its connection was lost and the broker "
                        + "delivers it again"
                )
            )
            return
        }
        if completion.requeue {
            try session.connection.reject(channel: consumeChannel, deliveryTag: deliveryTag, requeue: true)
            session.outstanding.remove(deliveryTag)
        } else {
            session.pendingAcks.append(deliveryTag)
        }
        settled.append(tag)
    }

    private static func split(_ tag: String) -> (Int, UInt64)? {
        let parts = tag.split(separator: ":", maxSplits: 1)
        guard parts.count == 2, let generation = Int(parts[0]), let deliveryTag = UInt64(parts[1]) else { return nil }
        return (generation, deliveryTag)
    }

    private func handle(
        _ event: AMQPEvent,
        in session: inout Session,
        delivered: inout [InboundMessage],
        settled: inout [String],
        lost: inout OrderedSet<String>
    ) throws {
        switch event {
        case .delivery(let delivery):
            let tag = "\(session.generation):\(delivery.deliveryTag)"
            session.outstanding.insert(delivery.deliveryTag)
            let queue = session.queueByConsumer[delivery.consumerTag] ?? delivery.routingKey
            let message: TaskMessage
            do {
                message = try delivery.taskMessage()
            } catch {
                delivered.append(.undecodable(error, deliveryTag: tag, queue: queue))
                return
            }
            if delivery.redelivered, lost.contains(message.id) {
                lost.remove(message.id)
                session.pendingAcks.append(delivery.deliveryTag)
                events.post(
                    .notice(
                        "redelivered task \(message.id) already ran here (its ack was lost with the "
                            + "connection): acked without running it again"
                    )
                )
                return
            }
            delivered.append(.task(message, deliveryTag: tag, queue: queue))
        case .confirm(_, let ack, let sequence, let multiple):
            let confirmed =
                multiple ? session.unconfirmed.keys.filter { $0 <= sequence } : [sequence]
            for number in confirmed.sorted() {
                guard let completion = session.unconfirmed.removeValue(forKey: number) else { continue }
                if !ack {
                    events.post(
                        .notice("the broker refused the result of task \(completion.taskID ?? "?") (basic.nack)")
                    )
                }
                try acknowledge(completion, in: &session, settled: &settled, lost: &lost)
            }
        case .returned(_, let code, let text, _, let routingKey, _, _):
            events.post(.notice("a result was returned by the broker (\(code) \(text), routing key \(routingKey))"))
        case .cancelled(_, let consumerTag):
            // The server cancelled a consumer (its queue was deleted): reconnecting declares it again.
            throw AMQPTransportError(
                message: "the broker cancelled consumer \(consumerTag) of queue "
                    + "\(session.queueByConsumer[consumerTag] ?? "?") (was the queue deleted?)"
            )
        }
    }

    /// Warm or cold stop: settle what is queued, wait (until the deadline) for pending result confirms, then
    /// return. Deliveries that arrive meanwhile are not passed on: closing the connection returns them.
    private func drainForStop(_ session: Session, deadline: ContinuousClock.Instant, lost: inout OrderedSet<String>) {
        var current = session
        var settled: [String] = []
        do {
            for completion in inbox.drain() {
                try settle(completion, in: &current, settled: &settled, lost: &lost)
            }
            try flushAcks(&current)
            while !current.unconfirmed.isEmpty, ContinuousClock.now < deadline {
                guard let event = try current.connection.nextEvent(timeout: .milliseconds(100)) else { continue }
                // Deliveries that arrive now are not passed on (closing the connection returns them); their tags
                // are above every outstanding one, so no `multiple` ack can cover them.
                if case .delivery = event { continue }
                var ignored: [InboundMessage] = []
                try handle(event, in: &current, delivered: &ignored, settled: &settled, lost: &lost)
                try flushAcks(&current)
            }
        } catch {
            events.post(.state(connected: false, detail: Self.describe(error)))
        }
        if !settled.isEmpty { events.post(.settled(tags: settled, results: 0)) }
    }
}

/// A transport-level problem that is not a library error.
struct AMQPTransportError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}
