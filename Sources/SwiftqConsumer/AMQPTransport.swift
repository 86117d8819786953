import OrderedCollections
import SwiftqAMQP
import SwiftqCore
import SwiftqPlatform
import SwiftqPool
import SwiftqRedis
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The RabbitMQ transport as the consumer uses it: one thread owns the AMQP connection (librabbitmq is not
/// thread-safe) and does everything on it: consuming, acks, publishing `rpc://` results with publisher confirms,
/// and heartbeats, which therefore keep flowing however busy the pool is and during a warm shutdown.
///
/// - Deliveries are decoded on that thread and posted to the consumer in batches. A per-consumer `basic.qos`
///   bounds them: prefetch = `worker.prefetch_multiplier` × concurrency (changed by reloads, ``setWindow(_:)``),
///   raised by the number of tasks held for their ETA (as Celery does), so that those never starve the window, and
///   by the allowance for short tasks while they come in (``setWindowAllowance(_:)``,
///   ``DeliveryMachine/currentWindow``).
///   On classic queues the limit is channel-wide (`global`, as Celery sets it): one window shared by every queue,
///   changed in place at once, never exceeded. Quorum queues refuse a channel-wide limit, and RabbitMQ ≥ 4.3
///   refuses it by default (the deprecated feature `global_qos`), so there it is per consumer: with
///   `broker.global_qos: false`, on quorum queues, and from the first refusal on (the broker closes the channel
///   or connection in reply to the channel-wide `basic.qos`; the transport logs it, reconnects and stays per
///   consumer). RabbitMQ applies a changed per-consumer limit only to consumers started after it, so a change
///   cancels the task consumers and starts them again (deliveries of the cancelled consumers stay unacked until
///   settled, so right after a change the total can exceed the new window by what was outstanding).
/// - With a node name, the node's pidbox queue `<node>.celery.pidbox` (bound to the fanout exchange
///   `celery.pidbox`, declared as kombu's Mailbox does) is consumed without acks on a channel of its own, and its
///   messages are posted as ``BrokerEvent/control(_:)``, never decoded as tasks.
/// - Delivery tags are only valid on the connection that delivered them, so each connection gets a generation
///   and a tag is `"<generation>:<tag>"`. After a reconnect, acks for older tags are not sent (the broker has
///   already put those messages back, marked redelivered); a task that *finished* meanwhile is remembered, and
///   its redelivered copy is acked without running it again. So is one whose ack was sent (or decided) shortly
///   before the connection failed: AMQP never confirms an ack, so it may have died in a socket buffer
///   (`Session.sentAcks`, matched on id, retries and child kills so that a retry or worker-lost copy still runs).
/// - With a Redis result backend, a ``ResultWriter`` thread stores results first and hands the acks back here.
package final class AMQPTransport: BrokerTransport {
    package let events: Mailbox<BrokerEvent>
    /// The broker's hosts (kombu's `;`-separated failover list; one for a plain URL), tried in turn from
    /// ``hostIndex``: a failed connect moves to the next at once, a lost connection moves on too (kombu's
    /// round robin), and the backoff waits only after every host failed once.
    private let urls: [AMQPURL]
    /// The host of ``urls`` connected to (or tried) now. Owned by the connection thread; atomic for the log.
    private let hostIndex = Atomic<Int>(0)
    private let tls: AMQPTLSOptions?
    private let heartbeat: Duration
    private let connectTimeout: Duration
    /// Where poison messages go (`worker.dead_letter_queue`): declared so a publish to them is never dropped.
    private let deadLetterQueues: [String]
    /// The queues to consume (the configuration's, then what ``setQueues(_:)`` asks for).
    private let queueList: Mutex<[String]>
    /// The ids sent with mingle's `hello` (set before ``start()``; nil: no mingle), and whether mingle ran (once, at the
    /// first connect).
    private let mingleRevokes = Mutex<[String]?>([])
    private let mingled = Mutex(false)
    private var queues: [String] { queueList.withLock { $0 } }
    private let queueArguments: OrderedDictionary<String, JSONValue>
    /// `worker.prefetch_multiplier` × concurrency; 0 means unlimited.
    /// Whether `basic.qos` is channel-wide (classic queues) or per consumer (quorum queues and RabbitMQ ≥ 4.3
    /// refuse channel-wide). Set at start; turned off for good when the broker refuses a channel-wide limit.
    private let channelWideQoS: Mutex<Bool>
    private let window: Mutex<Int>
    private let nodeName: String?
    private let publishesResults: Bool
    private let resultWriter: ResultWriter?
    /// Plans for this thread to carry on (from the consumer, or from the result writer once stored).
    private let inbox: Mailbox<Settlement>
    /// Celery events for the connection thread, bounded; taken whole at each step (``EventBuffer``).
    private let eventOutbox = EventOutbox()
    private let generation = Atomic<Int>(0)
    private let heldForETA = Mutex(0)
    /// How much larger than ``window`` the window is while short tasks come in (``setWindowAllowance(_:)``).
    private let allowance = Mutex(0)
    private let stopRequest = Mutex<ContinuousClock.Instant?>(nil)
    private let wake = Semaphore()
    private let finished = Semaphore()
    private let progress: Mutex<FetchProgress>
    /// Channel 1 consumes and acks; channel 2 publishes in confirm mode; channel 3 consumes the pidbox.
    private let consumeChannel: UInt16 = 1
    private let publishChannel: UInt16 = 2
    private let controlChannel: UInt16 = 3
    /// `basic.consume`'s arguments for the task queues (``AMQPConsumerTimeout``).
    private let consumeArguments: OrderedDictionary<String, JSONValue>
    /// How often, while nothing is delivered and the window has room, the queues' message counts are checked.
    package static let starvationCheckInterval: Duration = .seconds(5)
    /// The longest buffered events wait for more to join their `task.multi` message (a full one, 24 events, leaves
    /// at once): far below what a monitor notices, and at a few thousand tasks a second one message per 24 events
    /// instead of one per writer turn.
    package static let eventDelay: Duration = .milliseconds(20)

    package var redactedURL: String { urls.map(\.redacted).joined(separator: ";") }

    package init(
        urls: [AMQPURL],
        tls: AMQPTLSOptions?,
        broker: Configuration.Broker,
        queues: [String],
        deadLetterQueues: [String] = [],
        window: Int,
        nodeName: String?,
        rpcResults: Bool,
        redisResults: RedisTarget?,
        resultExpires: Duration?,
        consumeArguments: OrderedDictionary<String, JSONValue> = [:]
    ) throws {
        precondition(!urls.isEmpty, "a broker needs at least one host")
        self.consumeArguments = consumeArguments
        self.urls = urls
        self.tls = tls
        self.heartbeat = urls[0].heartbeat ?? broker.heartbeat
        self.connectTimeout = urls[0].connectTimeout ?? broker.connectTimeout
        self.queueList = Mutex(queues)
        self.deadLetterQueues = deadLetterQueues.filter { !queues.contains($0) }
        var arguments: OrderedDictionary<String, JSONValue> = [:]
        if let priority = broker.queueMaxPriority { arguments["x-max-priority"] = .int(Int64(priority)) }
        if broker.queueType == .quorum { arguments["x-queue-type"] = .string("quorum") }
        self.queueArguments = arguments
        self.channelWideQoS = Mutex(broker.queueType != .quorum && broker.globalQoS != .never)
        self.window = Mutex(window)
        self.nodeName = nodeName
        self.publishesResults = rpcResults
        self.progress = Mutex(FetchProgress(lastProgress: .now, lastDelivery: nil, starved: false))
        let events = try Mailbox<BrokerEvent>()
        let inbox = try Mailbox<Settlement>()
        self.events = events
        self.inbox = inbox
        if let redisResults {
            resultWriter = ResultWriter(
                url: redisResults,
                expires: resultExpires,
                forward: { plans, stored in
                    inbox.post(plans, urgent: !plans.allSatisfy(\.onlyAcks))
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

    package func start() {
        resultWriter?.start()
        PlatformThread.startOrExit(name: "swiftq-amqp") { [self] in run() }
    }

    /// The broker's `basic.qos` bounds deliveries; credit is not needed.
    package func grant(_ count: Int) {}

    package func setHeldForETA(_ count: Int) {
        heldForETA.withLock { $0 = count }
        inbox.wake()
    }

    package func setWindow(_ count: Int) {
        window.withLock { $0 = count }
        inbox.wake()
    }

    /// The consumer's window grew (or shrank back) with a streak of short tasks: `basic.qos` follows, as Redis
    /// credit does.
    package func setWindowAllowance(_ count: Int) {
        allowance.withLock { $0 = count }
        inbox.wake()
    }

    package func setMingle(revokes ids: [String]?) {
        mingleRevokes.withLock { $0 = ids }
    }

    package func setQueues(_ queues: [String]) {
        queueList.withLock { $0 = queues }
        inbox.wake()
    }

    package var fetchProgress: FetchProgress { progress.withLock { $0 } }

    /// Nothing to refresh: RabbitMQ keeps an unacked delivery with its consumer for as long as the connection
    /// lives (up to its `consumer_timeout`).
    package func setRunning(_ tag: String, _ isRunning: Bool) {}

    package func isStale(_ tag: String) -> Bool {
        guard let generationText = tag.split(separator: ":", maxSplits: 1).first,
            let tagGeneration = Int(generationText)
        else { return true }
        return tagGeneration != generation.load(ordering: .acquiring)
    }

    /// Plans whose first step is a result to store go straight to the result writer (Redis backend), which hands
    /// them back for the ack; the others start on the connection thread.
    package func settle(_ plans: consuming [Settlement]) {
        guard let resultWriter else {
            inbox.post(plans, urgent: !plans.allSatisfy(\.onlyAcks))
            return
        }
        var stored: [Settlement] = []
        var rest: [Settlement] = []
        for plan in plans {
            if plan.publishes.isEmpty
                && (plan.result != nil || !plan.followingResults.isEmpty || plan.hasChordWork
                    || !plan.revokedUnlessStarted.isEmpty)
            {
                stored.append(plan)
            } else {
                rest.append(plan)
            }
        }
        if !rest.isEmpty { inbox.post(rest, urgent: !rest.allSatisfy(\.onlyAcks)) }
        if !stored.isEmpty { resultWriter.post(stored) }
    }

    /// Buffers events for the connection thread, and wakes it (``Mailbox/wake()``, no plan) when the buffer has just
    /// filled.
    package func publishEvents(_ messages: [OutboundMessage]) -> EventBuffer<OutboundMessage>.Appended {
        let appended = eventOutbox.append(messages)
        if appended.wake { inbox.wake() }
        return appended
    }

    /// The buffered events, one after another on the publish channel without waiting for their confirms (nothing
    /// waits on an event; their confirms match no plan and are ignored). Events taken when the connection fails are
    /// lost, as Celery's are without `buffer_while_offline`.
    /// A batch of several messages leaves corked (its frames go to the network together, not as one segment per
    /// event); a single message is not corked (see below).
    private func publishBufferedEvents(_ session: inout Session, all: Bool = false) throws {
        // Each message costs the node far more than its bytes (measured: its CPU per task rose from ~0.45 to ~0.65 ms
        // with one `task.multi` per turn), so events wait for a full list message or ``eventDelay``, not a turn.
        let messages = all ? eventOutbox.take() : eventOutbox.takeIfDue(now: .now, maximumDelay: Self.eventDelay)
        guard !messages.isEmpty else { return }
        let connection = session.connection
        func publishAll() throws {
            for message in messages {
                _ = try connection.publish(
                    channel: publishChannel,
                    exchange: message.exchange,
                    routingKey: message.routingKey,
                    properties: message.amqpProperties,
                    body: message.body
                )
            }
        }
        // rabbitmq-c sends a publish's frames with MSG_MORE but its last one without: one message (the usual turn,
        // task events joined into one `task.multi`) already leaves as one segment, and corking it would add two
        // `setsockopt` calls per turn (~10 % of this thread with events on, found with `perf`).
        if messages.count > 1 {
            try connection.corked(publishAll)
        } else {
            try publishAll()
        }
    }

    package func stop(restoreHeld: Bool, timeout: Duration) {
        let deadline = ContinuousClock.now + timeout
        resultWriter?.stop(timeout: timeout)
        stopRequest.withLock { $0 = deadline }
        inbox.wake()
        wake.post()
        finished.wait(timeout: max(.zero, deadline - .now) + .milliseconds(200))
    }

    // MARK: The connection thread

    /// One connection's state, gone with it. A class: the loop holds it in an optional and lends it to ``step(_:lost:)``
    /// on every turn; as a struct, that loan was a second reference to its collections, so the first mutation of a
    /// turn copied each of them whole (the 4,096 remembered acks included: half the connection thread's time and
    /// ~45 % of the RabbitMQ drain rate, found with `perf`).
    private final class Session {
        let connection: AMQPConnection
        let generation: Int
        /// Consumer tag → queue name, for every task consumer of this connection (cancelled ones too: their
        /// deliveries may still arrive).
        var queueByConsumer: [String: String] = [:]
        /// The task consumers running now, by queue.
        var consumerByQueue: [String: String] = [:]
        /// The pidbox consumer's tag, when the pidbox could be declared.
        var controlConsumer: String?
        /// Plans waiting for the broker's confirm of a publish, by publish sequence number, with the rest to do.
        var unconfirmed: [UInt64: Settlement] = [:]
        /// Delivery tags received and neither acked nor rejected yet.
        var outstanding = Set<UInt64>()
        /// Acks decided and not sent yet, sent together by ``flushAcks(_:force:)``.
        var pendingAcks = PendingAcks()
        /// The identity (``AMQPTransport/deliveryKey(_:)``) of each outstanding task delivery.
        var keyByTag: [UInt64: String] = [:]
        /// The identities of the last acks sent on this connection (at most ``sentAckMemory``). AMQP never confirms
        /// an ack: one still in a socket buffer when the connection fails is lost, and the broker redelivers a task
        /// that already ran. When the connection fails these join the `lost` set (``uncertainAcks``), so such a
        /// redelivered copy is acked without running again; an ack that did arrive leaves an entry nobody asks for.
        var sentAcks = RecentAcks(capacity: AMQPTransport.sentAckMemory)
        var prefetch: Int
        var lastDelivery: ContinuousClock.Instant?
        var nextStarvationCheck: ContinuousClock.Instant = .now
        /// The earliest time a per-consumer limit may change again (``applyPrefetch(_:in:)``).
        var nextReconsume: ContinuousClock.Instant = .now
        /// What each turn polls (the connection, the inbox), made once rather than every turn.
        var pollSet: [pollfd] = []

        init(
            connection: AMQPConnection,
            generation: Int,
            queueByConsumer: [String: String],
            consumerByQueue: [String: String],
            controlConsumer: String?,
            prefetch: Int
        ) {
            self.connection = connection
            self.generation = generation
            self.queueByConsumer = queueByConsumer
            self.consumerByQueue = consumerByQueue
            self.controlConsumer = controlConsumer
            self.prefetch = prefetch
        }
    }

    private var stopDeadline: ContinuousClock.Instant? { stopRequest.withLock { $0 } }

    private func run() {
        var backoff = Backoff()
        var session: Session?
        /// Tasks that finished while their delivery's connection was lost: their redelivered copies are acked
        /// without running them again. Bounded; the oldest are forgotten first.
        var finishedWithLostAck = OrderedSet<String>()
        /// Hosts that failed to connect since the last wait: the backoff waits once every host failed.
        var failedHosts = 0
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
                    failedHosts = 0
                } catch {
                    events.post(.state(.fetch, connected: false, detail: describeAtHost(error)))
                    failedHosts += 1
                    nextHost()
                    if failedHosts >= urls.count {
                        failedHosts = 0
                        wake.wait(timeout: backoff.next())
                    }
                }
                continue
            }
            do {
                try step(&current, lost: &finishedWithLostAck)
                session = current
            } catch {
                events.post(.state(.fetch, connected: false, detail: describeAtHost(error)))
                // Unconfirmed results are lost with the connection; their tasks' messages come back redelivered
                // (they were not acked), so the results are published again when the tasks run again.
                for key in Self.uncertainAcks(current) { finishedWithLostAck.append(key) }
                if finishedWithLostAck.count > 10_000 {
                    finishedWithLostAck.removeFirst(finishedWithLostAck.count - 10_000)
                }
                current.connection.close()
                session = nil
                generation.add(1, ordering: .releasing)
                // kombu's round robin: a lost connection moves on to the next host of the list.
                nextHost()
                wake.wait(timeout: backoff.next())
            }
        }
        finished.post()
    }

    /// Whether the broker closed the channel or the connection in answer to a channel-wide `basic.qos`: RabbitMQ
    /// ≥ 4.3 does so while its deprecated feature `global_qos` is denied (530 NOT_ALLOWED or 540/541 with the
    /// feature's name), and so may any broker that implements only per-consumer limits. A socket error or a
    /// time-out is not a refusal.
    package static func refusesChannelWideQoS(_ error: AMQPError) -> Bool {
        switch error.kind {
        case .channelClosed, .connectionClosed: error.replyCode != 320  // 320 CONNECTION_FORCED: a node shutting down
        default: false
        }
    }

    /// The host connected to (or tried) now.
    private var currentURL: AMQPURL { urls[hostIndex.load(ordering: .relaxed) % urls.count] }

    private func nextHost() {
        guard urls.count > 1 else { return }
        hostIndex.store((hostIndex.load(ordering: .relaxed) + 1) % urls.count, ordering: .relaxed)
    }

    /// An error, naming the host when the list has several.
    private func describeAtHost(_ error: any Error) -> String {
        urls.count > 1 ? "\(currentURL.redacted): \(Self.describe(error))" : Self.describe(error)
    }

    static func describe(_ error: any Error) -> String {
        guard let error = error as? AMQPError else { return "\(error)" }
        return error.remedy.map { "\(error.message): \($0)" } ?? error.message
    }

    private var wantedPrefetch: Int {
        let window = window.withLock { $0 }
        guard window > 0 else { return 0 }
        return min(Int(UInt16.max), window + heldForETA.withLock { $0 } + allowance.withLock { $0 })
    }

    private func connect() throws -> Session {
        let url = currentURL
        let connection = try AMQPConnection(
            url: url,
            tls: tls,
            heartbeat: heartbeat,
            connectTimeout: connectTimeout,
            connectionName: "swiftqd consumer \(getpid())"
        )
        try connection.openChannel(consumeChannel)
        let queues = queues
        for queue in queues { try declareTaskQueue(queue, on: connection) }
        for queue in deadLetterQueues {
            // Durable queues nothing consumes (swiftqctl dead reads them), of the task queues' type: a classic one
            // lives on one node of a cluster, and while that node is down its declaration fails and with it every
            // connect (found by the 3-node failover test).
            _ = try connection.declareQueue(
                channel: consumeChannel,
                name: queue,
                durable: true,
                arguments: queueArguments["x-queue-type"].map { ["x-queue-type": $0] } ?? [:]
            )
        }
        let prefetch = wantedPrefetch
        let channelWide = channelWideQoS.withLock { $0 }
        do {
            try connection.qos(channel: consumeChannel, prefetchCount: UInt16(prefetch), global: channelWide)
        } catch {
            guard channelWide && Self.refusesChannelWideQoS(error) else { throw error }
            channelWideQoS.withLock { $0 = false }
            events.post(
                .notice(
                    "the broker refused a channel-wide basic.qos (\(error.message)): using per-consumer prefetch "
                        + "from now on (RabbitMQ ≥ 4.3 denies the deprecated global_qos by default; set "
                        + "broker.global_qos: false to skip this attempt)"
                )
            )
            throw error
        }
        try connection.openChannel(publishChannel)
        try connection.confirmSelect(channel: publishChannel)
        // Celery's event exchange (durable topic), declared as Celery's dispatcher does, so that events published
        // before any monitor bound a queue are dropped by the broker instead of closing the channel.
        try connection.declareExchange(channel: publishChannel, name: EventDispatcher.exchange, type: "topic")
        // swiftq's revoke list (AMQPTransport+Revokes.swift), where revokes are kept for workers started later: declared
        // on every connect, read before the first task; then what the other nodes revoked (Celery's mingle), once per
        // start. Neither can fail the connection.
        let firstConnect = !mingled.withLock({ $0 })
        prepareRevokeList(connection, read: firstConnect, type: queueArguments["x-queue-type"])
        if firstConnect {
            mingled.withLock { $0 = true }
            mingle(connection)
        }
        var queueByConsumer: [String: String] = [:]
        var consumerByQueue: [String: String] = [:]
        for queue in queues {
            let tag = try connection.consume(channel: consumeChannel, queue: queue, arguments: consumeArguments)
            queueByConsumer[tag] = queue
            consumerByQueue[queue] = tag
        }
        let controlConsumer = nodeName.flatMap { consumePidbox(connection, node: $0) }
        let current = generation.add(1, ordering: .releasing).newValue
        events.post(.state(.fetch, connected: true, detail: "connected to \(url.redacted)"))
        return Session(
            connection: connection,
            generation: current,
            queueByConsumer: queueByConsumer,
            consumerByQueue: consumerByQueue,
            controlConsumer: controlConsumer,
            prefetch: prefetch
        )
    }

    /// Celery's mingle as kombu's client does it on AMQP: an exclusive reply queue bound to `reply.celery.pidbox` by a
    /// random key, `hello` published to `celery.pidbox`, replies read for a second. A failure only loses the sync
    /// (logged); the connection goes on.
    private func mingle(_ connection: AMQPConnection) {
        guard let node = nodeName, let revoked = mingleRevokes.withLock({ $0 }) else { return }
        let key = randomHex()
        let ticket = randomHex()
        let queue = "\(key).reply.celery.pidbox"
        var found: [String] = []
        var nodes = 0
        do {
            try connection.declareExchange(
                channel: consumeChannel,
                name: "celery.pidbox",
                type: "fanout",
                durable: false
            )
            try connection.declareExchange(
                channel: consumeChannel,
                name: "reply.celery.pidbox",
                type: "direct",
                durable: false
            )
            _ = try connection.declareQueue(
                channel: consumeChannel,
                name: queue,
                durable: false,
                exclusive: true,
                autoDelete: true,
                arguments: ["x-message-ttl": .int(300_000), "x-expires": .int(10_000)]
            )
            try connection.bindQueue(
                channel: consumeChannel,
                queue: queue,
                exchange: "reply.celery.pidbox",
                routingKey: key
            )
            let tag = try connection.consume(channel: consumeChannel, queue: queue, noAck: true)
            let hello = Mingle.hello(node: node, revoked: revoked, ticket: ticket, replyKey: key)
            _ = try connection.publish(
                channel: publishChannel,
                exchange: hello.exchange,
                routingKey: hello.routingKey,
                properties: hello.amqpProperties,
                body: hello.body
            )
            let deadline = ContinuousClock.now + Mingle.timeout
            while ContinuousClock.now < deadline {
                guard let event = try connection.nextEvent(timeout: min(.milliseconds(100), deadline - .now)),
                    case .delivery(let delivery) = event, delivery.consumerTag == tag
                else { continue }
                let replyTicket = delivery.properties.headers["ticket"]?.stringValue
                if let ids = Mingle.revoked(
                    inReply: delivery.body,
                    ticket: ticket,
                    replyTicket: replyTicket,
                    node: node
                ) {
                    found += ids
                    nodes += 1
                }
            }
            try connection.cancel(channel: consumeChannel, consumerTag: tag)
            _ = try connection.deleteQueue(channel: consumeChannel, name: queue)
        } catch {
            events.post(.notice("mingle failed (revokes of other workers not synced): \(Self.describe(error))"))
            return
        }
        let now = CeleryTimestamp.now.secondsSince1970
        events.post(.revokesFound(found.map { RevokeRecord(id: $0, at: now) }, source: "mingle (\(nodes) node(s))"))
    }

    /// What Celery declares for a task queue: a durable direct exchange of the same name, bound by the name.
    private func declareTaskQueue(_ queue: String, on connection: AMQPConnection) throws {
        try connection.declareExchange(channel: consumeChannel, name: queue, type: "direct", durable: true)
        _ = try connection.declareQueue(channel: consumeChannel, name: queue, durable: true, arguments: queueArguments)
        try connection.bindQueue(channel: consumeChannel, queue: queue, exchange: queue, routingKey: queue)
    }

    /// Follows ``setQueues(_:)``: consumes the new queues (declared first) and cancels the consumers of the dropped
    /// ones; their deliveries already made stay on the channel and are settled as usual.
    private func followQueues(_ session: inout Session) throws {
        let wanted = queues
        // Checked every turn: by lookups, with no set built (a list with a queue twice just takes the long way).
        guard
            wanted.count != session.consumerByQueue.count
                || wanted.contains(where: { session.consumerByQueue[$0] == nil })
        else { return }
        for (queue, tag) in session.consumerByQueue where !wanted.contains(queue) {
            try session.connection.cancel(channel: consumeChannel, consumerTag: tag)
            session.consumerByQueue[queue] = nil
        }
        for queue in wanted where session.consumerByQueue[queue] == nil {
            try declareTaskQueue(queue, on: session.connection)
            let tag = try session.connection.consume(channel: consumeChannel, queue: queue, arguments: consumeArguments)
            session.queueByConsumer[tag] = queue
            session.consumerByQueue[queue] = tag
        }
    }

    /// Declares and consumes the node's pidbox as kombu's Mailbox does for a Celery worker: exchange
    /// `celery.pidbox` (fanout, not durable), queue `<node>.celery.pidbox` (exclusive, auto-delete, not durable,
    /// `x-message-ttl` 300 s and `x-expires` 10 s: Celery's `control_queue_ttl`/`control_queue_expires`), bound with
    /// routing key `""`, consumed without acks. On its own channel: a refusal (another live worker with the same node
    /// name holds the exclusive queue) closes only that channel, and tasks are still consumed.
    private func consumePidbox(_ connection: AMQPConnection, node: String) -> String? {
        let exchange = "celery.pidbox"
        let queue = "\(node).\(exchange)"
        do {
            try connection.openChannel(controlChannel)
            try connection.declareExchange(channel: controlChannel, name: exchange, type: "fanout", durable: false)
            // Replies go to this exchange (kombu's worker declares it before replying): publishing to a missing
            // exchange would close the publishing channel.
            try connection.declareExchange(
                channel: controlChannel,
                name: "reply.\(exchange)",
                type: "direct",
                durable: false
            )
            _ = try connection.declareQueue(
                channel: controlChannel,
                name: queue,
                durable: false,
                exclusive: true,
                autoDelete: true,
                arguments: ["x-message-ttl": .int(300_000), "x-expires": .int(10_000)]
            )
            try connection.bindQueue(channel: controlChannel, queue: queue, exchange: exchange, routingKey: "")
            return try connection.consume(channel: controlChannel, queue: queue, noAck: true)
        } catch {
            events.post(
                .notice(
                    "cannot consume the control queue \(queue) (is another worker with node name \(node) "
                        + "running?): \(Self.describe(error)); remote control will not reach this worker"
                )
            )
            return nil
        }
    }

    /// Follows a changed window: RabbitMQ applies a per-consumer `basic.qos` only to consumers started after it,
    /// so the task consumers are cancelled and started again (deliveries already made stay unacked on the
    /// channel and are settled as usual), at most once per ``reconsumeInterval``: a streak of short tasks that
    /// starts and ends often, or ETA tasks coming in one by one, would otherwise cancel and consume on every one.
    private func applyPrefetch(_ prefetch: Int, in session: inout Session) throws {
        if channelWideQoS.withLock({ $0 }) {
            // A channel-wide limit applies at once to the consumers there are, and counts what they hold.
            try session.connection.qos(channel: consumeChannel, prefetchCount: UInt16(prefetch), global: true)
            session.prefetch = prefetch
            return
        }
        try session.connection.qos(channel: consumeChannel, prefetchCount: UInt16(prefetch), global: false)
        for queue in queues {
            if let tag = session.consumerByQueue[queue] {
                try session.connection.cancel(channel: consumeChannel, consumerTag: tag)
            }
            let tag = try session.connection.consume(channel: consumeChannel, queue: queue, arguments: consumeArguments)
            session.queueByConsumer[tag] = queue
            session.consumerByQueue[queue] = tag
        }
        session.prefetch = prefetch
        session.nextReconsume = .now + Self.reconsumeInterval
    }

    /// The shortest time between two changes of a per-consumer limit (each cancels and starts the consumers).
    package static let reconsumeInterval: Duration = .seconds(1)

    /// Whether the window has room while the broker holds ready messages for a consumer that got nothing lately:
    /// the sign of a consumer that silently stopped consuming. Checked with passive-equivalent declares (same
    /// arguments, so nothing changes) at most every ``starvationCheckInterval``.
    private func checkStarvation(_ session: inout Session) throws {
        let now = ContinuousClock.now
        guard now >= session.nextStarvationCheck else { return }
        session.nextStarvationCheck = now + Self.starvationCheckInterval
        let hasRoom = session.prefetch == 0 || session.outstanding.count < session.prefetch
        let quiet = session.lastDelivery.map { $0.duration(to: now) >= Self.starvationCheckInterval } ?? true
        var waiting = 0
        if hasRoom && quiet {
            for queue in queues {
                waiting += Int(
                    try session.connection.declareQueue(
                        channel: consumeChannel,
                        name: queue,
                        durable: true,
                        arguments: queueArguments
                    ).messageCount
                )
            }
        }
        let starved = waiting > 0
        progress.withLock { state in
            state.starved = starved
            // Progress: something arrived lately, or nothing waits.
            if !starved { state.lastProgress = now }
        }
    }

    /// One turn: settle what the consumer finished, follow prefetch changes, wait for the socket or the inbox
    /// (at most a second, so heartbeats and stops are never late), and read what arrived.
    private func step(_ session: inout Session, lost: inout OrderedSet<String>) throws {
        var settled: [String] = []
        try publishBufferedEvents(&session)
        // The last poll tells whether the inbox's pipe holds a wake-up byte to read; most turns are woken by the
        // broker's socket instead.
        let inboxWoke = session.pollSet.count < 2 || session.pollSet[1].revents != 0
        for plan in inboxWoke ? inbox.drain() : inbox.takeQueued() {
            try advance(plan, in: &session, settled: &settled, lost: &lost)
        }
        try flushAcks(&session)
        try followQueues(&session)
        let prefetch = wantedPrefetch
        var prefetchDue: Duration?
        if prefetch != session.prefetch {
            let wait = channelWideQoS.withLock { $0 } ? .zero : ContinuousClock.now.duration(to: session.nextReconsume)
            if wait <= .zero { try applyPrefetch(prefetch, in: &session) } else { prefetchDue = wait }
        }
        try checkStarvation(&session)
        if !session.connection.hasBufferedFrames {
            if session.pollSet.isEmpty {
                session.pollSet = [
                    pollfd(fd: session.connection.descriptor, events: Int16(POLLIN), revents: 0),
                    pollfd(fd: inbox.descriptor, events: Int16(POLLIN), revents: 0),
                ]
            }
            // At most a second, or until the buffered events, the pending acks or a deferred per-consumer limit are
            // due.
            let now = ContinuousClock.now
            var due = eventOutbox.dueIn(now: now, maximumDelay: Self.eventDelay)
            if let prefetchDue { due = min(due ?? prefetchDue, prefetchDue) }
            if let acksDue = session.pendingAcks.due {
                let wait = max(.zero, now.duration(to: acksDue))
                due = min(due ?? wait, wait)
            }
            // With acks pending, this thread wakes by their deadline anyway: plans that only ack need not wake it
            // sooner (the consumer posts them as not urgent), as their acks join the pending ones. Without, anything
            // they left queued wakes it at once (``Mailbox/setQuiet(_:)``).
            inbox.setQuiet(!session.pendingAcks.isEmpty)
            _ = poll(&session.pollSet, 2, due.map { Int32(clamping: $0.milliseconds + 1) } ?? 1000)
        }
        var delivered: [InboundMessage] = []
        var control: [ControlDelivery] = []
        while delivered.count < 256, let event = try session.connection.nextEvent(timeout: .zero) {
            if case .delivery(let delivery) = event, delivery.consumerTag == session.controlConsumer {
                if let message = ControlDelivery(json: delivery.body, source: "\(nodeName ?? "").celery.pidbox") {
                    control.append(message)
                } else {
                    events.post(.notice("ignoring a control message that is not a pidbox request"))
                }
                continue
            }
            try handle(event, in: &session, delivered: &delivered, settled: &settled, lost: &lost)
        }
        try flushAcks(&session)
        // One post for the turn: each is a lock, and the first into an empty mailbox a write to wake the consumer.
        // Deliveries and settled tags are not urgent: a consumer that has plenty of ready work and short tasks
        // running takes them on its next turn, which the pool's results bring soon (``Mailbox/setQuiet(_:)``).
        var turn: [BrokerEvent] = []
        if !delivered.isEmpty {
            ThroughputCounters.shared.record(.reserve, size: delivered.count)
            let now = ContinuousClock.now
            session.lastDelivery = now
            progress.withLock { state in
                state.lastDelivery = now
                state.lastProgress = now
                state.starved = false
            }
            turn.append(.delivered(delivered))
        }
        if !settled.isEmpty { turn.append(.settled(tags: settled, results: 0)) }
        if !control.isEmpty { turn.append(.control(control)) }
        events.post(turn, urgent: !control.isEmpty)
    }

    /// Carries a plan on from where it is: the next publish (the rest waits for its confirm), then the result
    /// (to the result writer, or published to `reply_to` for `rpc://`, confirmed), then the disposition.
    private func advance(
        _ plan: Settlement,
        in session: inout Session,
        settled: inout [String],
        lost: inout OrderedSet<String>
    ) throws {
        var plan = plan
        if !plan.revokes.isEmpty {
            // Kept in the broker's revoke list for workers started later (AMQPTransport+Revokes.swift).
            plan.publishes = Self.revokeMessages(plan.revokes, expiry: plan.revokeExpiry) + plan.publishes
            plan.revokes = []
        }
        if !plan.chordSetups.isEmpty {
            if let resultWriter {
                // The chord's size goes into the Redis backend first; the plan comes back for its publishes.
                resultWriter.post([plan])
                return
            }
            events.post(.notice("a chord started by a task needs the Redis result backend"))
            plan.chordSetups = []
        }
        if !plan.publishes.isEmpty {
            if let pause = TestHooks.pauseBeforePublish, plan.result != nil {
                events.post(.notice("pausing before publishing (SWIFTQ_TEST_PAUSE_BEFORE_PUBLISH)"))
                PlatformThread.sleep(for: pause)
            }
            let message = plan.publishes.removeFirst()
            let sequence = try session.connection.publish(
                channel: publishChannel,
                exchange: message.exchange,
                routingKey: message.routingKey,
                properties: message.amqpProperties,
                body: message.body
            )
            session.unconfirmed[sequence] = plan
            return
        }
        if let resultWriter,
            plan.result != nil || !plan.followingResults.isEmpty || plan.hasChordWork
                || !plan.revokedUnlessStarted.isEmpty
        {
            // Stored there (and the chord part counted), then handed back here without them.
            resultWriter.post([plan])
            return
        }
        if plan.result == nil, !plan.followingResults.isEmpty { plan.result = plan.followingResults.removeFirst() }
        if let result = plan.result {
            plan.result = nil
            if !plan.followingResults.isEmpty { plan.result = plan.followingResults.removeFirst() }
            // Celery publishes nothing for a task sent without a reply queue.
            if publishesResults, let replyTo = result.replyTo, !replyTo.isEmpty {
                var properties = AMQPProperties()
                properties.contentType = "application/json"
                properties.contentEncoding = "utf-8"
                properties.correlationID = result.taskID
                properties.deliveryMode = 1
                properties.priority = 0
                let sequence = try session.connection.publish(
                    channel: publishChannel,
                    exchange: "",
                    routingKey: replyTo,
                    properties: properties,
                    body: result.meta
                )
                session.unconfirmed[sequence] = plan
                return
            }
            if plan.result != nil {
                try advance(plan, in: &session, settled: &settled, lost: &lost)
                return
            }
        }
        if plan.hasChordWork {
            let group = plan.chordParts.first?.groupID ?? plan.chordUnlock?.groupID ?? ""
            events.post(.notice("chord \(group): chords need the Redis result backend"))
            plan.chordParts = []
            plan.chordUnlock = nil
        }
        if !plan.afterResult.isEmpty {
            // Errbacks and a chord body: published after the results, confirmed before the ack.
            plan.publishes = plan.afterResult
            plan.afterResult = []
            try advance(plan, in: &session, settled: &settled, lost: &lost)
            return
        }
        if let claim = plan.chordCleanup, let resultWriter {
            // The body is confirmed: release the claim there; the ack does not wait for it (at worst the claim
            // runs out and the keys expire).
            plan.chordCleanup = nil
            resultWriter.post([Settlement(chordCleanup: claim, disposition: .none)])
        }
        try acknowledge(plan, in: &session, settled: &settled, lost: &lost)
    }

    /// Sends the waiting acks that are due (``PendingAcks/take(now:prefetch:outstanding:force:)``; `force`: all of
    /// them, the connection is about to close): fewer frames for the broker to handle, the same acks.
    private func flushAcks(_ session: inout Session, force: Bool = false) throws {
        guard
            let flush = session.pendingAcks.take(
                now: .now,
                prefetch: session.prefetch,
                outstanding: session.outstanding,
                force: force
            )
        else { return }
        let connection = session.connection
        let channel = consumeChannel
        func send() throws(AMQPError) {
            if let multiple = flush.multipleUpTo {
                try connection.ack(channel: channel, deliveryTag: multiple, multiple: true)
                ThroughputCounters.shared.record(.ack, size: flush.runLength)
            }
            for tag in flush.singles {
                try connection.ack(channel: channel, deliveryTag: tag)
                ThroughputCounters.shared.record(.ack, size: 1)
            }
        }
        // A `multiple` ack and a few single ones, corked, leave as one TCP segment instead of one each (a segment
        // is a transmit here and a receive in the node, ~12 % of the AMQP thread's time when each went alone).
        if flush.frames > 1 {
            try connection.corked(send)
        } else {
            try send()
        }
        for tag in flush.acked {
            session.outstanding.remove(tag)
            if let key = session.keyByTag.removeValue(forKey: tag) { session.sentAcks.record(key) }
        }
    }

    private func acknowledge(
        _ plan: Settlement,
        in session: inout Session,
        settled: inout [String],
        lost: inout OrderedSet<String>
    ) throws {
        guard let tag = plan.deliveryTag, plan.disposition != .none else { return }
        guard let (tagGeneration, deliveryTag) = Self.split(tag), tagGeneration == session.generation else {
            // Delivered on a lost connection: the broker has put the message back already.
            if plan.disposition != .requeue, plan.disposition != .restore, let taskID = plan.taskID {
                lost.append(taskID)
                if lost.count > 10_000 { lost.removeFirst(lost.count - 10_000) }
            }
            settled.append(tag)
            events.post(
                .notice(
                    "ack of \(plan.taskID ?? "a message") skipped: its connection was lost and the broker "
                        + "delivers it again"
                )
            )
            return
        }
        switch plan.disposition {
        case .requeue, .restore, .reject:
            try session.connection.reject(
                channel: consumeChannel,
                deliveryTag: deliveryTag,
                requeue: plan.disposition != .reject
            )
            session.outstanding.remove(deliveryTag)
            session.keyByTag.removeValue(forKey: deliveryTag)
        case .ack:
            session.pendingAcks.add(deliveryTag, now: .now)
        case .none:
            return
        }
        settled.append(tag)
    }

    /// How many sent acks a connection remembers: far more than any prefetch window keeps in flight.
    package static let sentAckMemory = 4096

    /// What tells one delivered task message from another with the same id: a retry copy has `retries` + 1, a
    /// worker-lost copy one more child kill. Only a redelivery of the very message whose ack was uncertain matches.
    package static func deliveryKey(_ message: TaskMessage) -> String {
        let kills = message.headers[DeliveryMachine.childKillsHeader]?.intValue ?? 0
        return "\(message.id)#\(message.retries)#\(kills)"
    }

    /// The deliveries of a failed connection whose ack may not have reached the broker: sent (uncertain, as AMQP
    /// never confirms an ack) or decided and not yet sent.
    private static func uncertainAcks(_ session: Session) -> [String] {
        session.sentAcks.keys + session.pendingAcks.tags.compactMap { session.keyByTag[$0] }
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
            let key = Self.deliveryKey(message)
            session.keyByTag[delivery.deliveryTag] = key
            if delivery.redelivered, lost.contains(message.id) || lost.contains(key) {
                lost.remove(message.id)
                lost.remove(key)
                session.pendingAcks.add(delivery.deliveryTag, now: .now)
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
                guard let plan = session.unconfirmed.removeValue(forKey: number) else { continue }
                guard ack else {
                    // A step that fails stops the plan: the message stays unacked and comes back when the
                    // channel closes.
                    events.post(
                        .notice(
                            "the broker refused a publish for task \(plan.taskID ?? "?") (basic.nack): its "
                                + "settlement stopped and the message stays unacked"
                        )
                    )
                    continue
                }
                try advance(plan, in: &session, settled: &settled, lost: &lost)
            }
        case .returned(_, let code, let text, _, let routingKey, _, _):
            events.post(.notice("a message was returned by the broker (\(code) \(text), routing key \(routingKey))"))
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
            try publishBufferedEvents(&current, all: true)
            for plan in inbox.drain() {
                try advance(plan, in: &current, settled: &settled, lost: &lost)
            }
            try flushAcks(&current, force: true)
            while !current.unconfirmed.isEmpty, ContinuousClock.now < deadline {
                guard let event = try current.connection.nextEvent(timeout: .milliseconds(100)) else { continue }
                // Deliveries that arrive now are not passed on (closing the connection returns them); their tags
                // are above every outstanding one, so no `multiple` ack can cover them.
                if case .delivery = event { continue }
                var ignored: [InboundMessage] = []
                try handle(event, in: &current, delivered: &ignored, settled: &settled, lost: &lost)
                try flushAcks(&current, force: true)
            }
        } catch {
            events.post(.state(.fetch, connected: false, detail: Self.describe(error)))
        }
        if !settled.isEmpty { events.post(.settled(tags: settled, results: 0)) }
    }
}

/// A transport-level problem that is not a library error.
package struct AMQPTransportError: Error, CustomStringConvertible {
    package var message: String
    package var description: String { message }
}
