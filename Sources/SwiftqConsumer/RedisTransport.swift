import DequeModule
import SwiftqCore
import SwiftqPlatform
import SwiftqPool
import SwiftqRedis
import Synchronization

/// The Redis transport as the consumer uses it: two threads, because hiredis blocks.
///
/// - The **fetcher** owns one broker connection. It reserves up to the credit the consumer granted
///   (prefetch window minus what is held) with one script call that pops and records each message in
///   `unacked`/`unacked_index` atomically, and otherwise waits on Redis without taking anything.
/// - The **writer** owns a second broker connection and the result-backend connection. It stores results
///   and then acks, in the order the consumer completed them, batched into pipelines, so an ack never
///   precedes its task's result.
/// - The **control reader** owns a third connection, subscribed to the node's pidbox (kombu's fanout channel of
///   `celery.pidbox`), so that control messages are read however busy the queues are.
/// Each reconnects with capped, jittered backoff (also after `READONLY`/`LOADING` replies) and never drops work:
/// a failed batch is retried whole (acks and result stores are idempotent, a stored SUCCESS is never
/// overwritten, and publishes already done are not repeated).
///
/// Reservations belong to this consumer's *incarnation* (`<node>#<random id>`, heartbeated with a TTL), never to
/// the bare node name: a restart gives back only what dead incarnations of its node held, and a live sibling with
/// the same name is reported, not robbed (REVIEW D2).
/// Shared state is behind `Mutex`es; everything else belongs to its thread.
package final class RedisTransport: BrokerTransport {
    package let events: Mailbox<BrokerEvent>
    /// The broker: one server, or the master the sentinels name (asked again at every reconnect).
    private let broker: RedisTarget
    private let backend: RedisTarget?
    /// The result backend's database when it is on the broker's server: results and their acks then go in one
    /// script on the broker's connection (``flush``). Nil: another server, or no Redis backend.
    private let backendDatabaseOnBroker: Int?
    private let queues: [String]
    /// The queues asked for by ``setQueues(_:)`` and not yet taken up by the fetcher.
    private let requestedQueues = Mutex<[String]?>(nil)
    private let node: String
    /// This incarnation's owner name, `<node>#<daemon id>.<random>`.
    package let owner: String
    /// `<node>#<daemon id>.`: the owners of this daemon's earlier consumers.
    private let daemonPrefix: String?
    private let resultExpires: Duration?
    private let visibilityTimeout: Duration
    /// How long a revoke is kept in the broker's revoke list (`worker.revokes_expire`).
    private let revokeExpiry: Double
    /// The ids sent with mingle's `hello` (set before ``start()``; nil: no mingle).
    private let mingleRevokes = Mutex<[String]?>([])
    /// The broker's revoke list: a sorted set of ids scored by when they were revoked (seconds since the epoch).
    package static let revokedKey = "swiftq.revoked"
    /// Delivery tags of running tasks, whose `unacked_index` scores the fetcher refreshes so that no kombu
    /// consumer restores them while they run (a task may run longer than the visibility timeout).
    private let running = Mutex<Set<String>>([])
    private let credit = Mutex(0)
    private let fetchSignal = Semaphore()
    private let stopping = Mutex(false)
    private let outbox = WorkQueue<Settlement>()
    /// Celery events for the writer, bounded; taken whole at each turn of its loop (``EventBuffer``).
    private let eventOutbox = EventOutbox()
    private let finished = Semaphore()
    private let batchLimit = 64
    private let progress: Mutex<FetchProgress>
    /// How long an incarnation's alive key outlives its last heartbeat (every ``incarnationBeat``).
    package static let incarnationTTL: Duration = .seconds(20)
    package static let incarnationBeat: Duration = .seconds(5)

    package init(
        broker: RedisTarget,
        backend: RedisTarget?,
        queues: [String],
        node: String,
        daemonID: String? = nil,
        resultExpires: Duration?,
        visibilityTimeout: Duration,
        revokeExpiry: Double = 10_800
    ) throws {
        self.revokeExpiry = revokeExpiry
        self.broker = broker
        self.backend = backend
        self.backendDatabaseOnBroker = backend.flatMap { $0.isSameServer(as: broker) ? $0.database : nil }
        self.queues = queues
        self.node = node
        // Incarnations of the same daemon run one at a time: earlier ones with this prefix are dead for sure.
        self.daemonPrefix = daemonID.map { KombuRedisLayout.owner(node: node, incarnation: $0 + ".") }
        self.owner = (daemonPrefix ?? KombuRedisLayout.owner(node: node, incarnation: "")) + randomHex()
        self.progress = Mutex(FetchProgress(lastProgress: .now, lastDelivery: nil, starved: false))
        self.resultExpires = resultExpires
        self.visibilityTimeout = visibilityTimeout
        self.events = try Mailbox()
    }

    /// Starts both threads. The fetcher first gives back what a previous consumer of this node still held.
    package func start() {
        PlatformThread.startOrExit(name: "swiftq-fetch") { [self] in fetchLoop() }
        PlatformThread.startOrExit(name: "swiftq-write") { [self] in writeLoop() }
        PlatformThread.startOrExit(name: "swiftq-control") { [self] in controlLoop() }
    }

    /// The consumer's credit already follows its window; nothing to change at the broker.
    package func setWindow(_ count: Int) {}

    package func setMingle(revokes ids: [String]?) {
        mingleRevokes.withLock { $0 = ids }
    }

    package func setQueues(_ queues: [String]) {
        requestedQueues.withLock { $0 = queues }
        fetchSignal.post()
    }

    package var fetchProgress: FetchProgress { progress.withLock { $0 } }

    private func madeProgress(delivered: Bool) {
        let hasCredit = credit.withLock { $0 > 0 }
        progress.withLock { state in
            state.lastProgress = .now
            if delivered { state.lastDelivery = state.lastProgress }
            state.starved = hasCredit
        }
    }

    /// Allows `count` more messages to be reserved.
    package func grant(_ count: Int) {
        guard count > 0 else { return }
        credit.withLock { $0 += count }
        fetchSignal.post()
    }

    /// Marks a delivery as running (its visibility deadline is refreshed) or no longer running.
    package func setRunning(_ tag: String, _ isRunning: Bool) {
        running.withLock { tags in
            if isRunning { tags.insert(tag) } else { tags.remove(tag) }
        }
    }

    /// Queues plans for the writer.
    package func settle(_ plans: consuming [Settlement]) {
        outbox.post(consume plans)
    }

    /// Buffers events for the writer, and wakes it when the buffer has just filled from empty.
    package func publishEvents(_ messages: [OutboundMessage]) -> EventBuffer<OutboundMessage>.Appended {
        let appended = eventOutbox.append(messages)
        if appended.wake { outbox.wake() }
        return appended
    }

    /// ETA tasks need no extra room on Redis: they are not counted against the credit.
    package func setHeldForETA(_ count: Int) {}

    /// Credit (``grant(_:)``) already follows the larger window.
    package func setWindowAllowance(_ count: Int) {}

    /// Redis delivery tags stay valid across reconnects (they are keys of the `unacked` hash).
    package func isStale(_ tag: String) -> Bool { false }

    package var redactedURL: String { broker.redacted }

    /// Stops fetching; the writer finishes its queue, then (if asked) gives back every message this
    /// owner still holds. Blocks until done or `timeout`.
    package func stop(restoreHeld: Bool, timeout: Duration) {
        stopping.withLock { $0 = true }
        fetchSignal.post()
        if restoreHeld { outbox.post([Settlement(disposition: .none, restoreHeld: true)]) }
        outbox.stop()
        finished.wait(timeout: timeout)
    }

    private var isStopping: Bool { stopping.withLock { $0 } }

    /// A connection with the transport's timeouts: 5 s to connect, 10 s per command (reserve scripts and
    /// pipelines are short; a longer stall means the broker is gone).
    /// Through sentinels, each connect asks them for the master again, so a failover is followed on reconnect.
    private func connect(_ target: RedisTarget) throws(RedisError) -> RedisConnection {
        try target.connect(connectTimeout: .seconds(5), commandTimeout: .seconds(10))
    }

    // MARK: Fetcher

    private func fetchLoop() {
        var backoff = Backoff()
        var broker: KombuRedisBroker?
        var watcher: KombuQueueWatcher?
        var restoredAtStart = false
        var connectedBefore = false
        // Queues take turns being first (kombu's round robin), so one busy queue cannot starve the others.
        var order = queues
        var current = queues
        // Housekeeping every quarter of the visibility timeout (at most a minute): refresh the deadlines of
        // running tasks, and sweep messages whose consumer vanished, as every kombu consumer does.
        let housekeepingInterval = min(visibilityTimeout / 4, .seconds(60))
        var nextHousekeeping = ContinuousClock.now
        var nextBeat = ContinuousClock.now
        var liveSiblings: Set<String> = []
        var reserveOrder: KombuRedisBroker.ReserveOrder?
        var inFlight: SentReserve?
        defer {
            // Stopping with a reserve sent: its script has run or will run; wait for it, so that what it took is in
            // this owner's records (given back by the writer's restore) before the thread ends.
            if let inFlight, let broker { _ = try? broker.reserved(inFlight.reserve) }
        }
        while !isStopping {
            if broker == nil {
                do {
                    let made = try connect(self.broker)
                    let kombu = KombuRedisBroker(connection: made)
                    try kombu.declare(queues: current)
                    watcher = try KombuQueueWatcher(target: self.broker, layout: KombuRedisLayout(), queues: current)
                    // Alive before looking at the others: of two that start together, at least one sees the other.
                    try kombu.heartbeat(node: node, owner: owner, ttl: Self.incarnationTTL)
                    nextBeat = .now + Self.incarnationBeat
                    if !restoredAtStart {
                        try recoverSiblings(kombu, known: &liveSiblings)
                        restoredAtStart = true
                        // Before the first task: what other workers revoked, while this one was not running.
                        try findRevokes(made)
                    } else if connectedBefore {
                        let reply = try made.command([
                            "SMEMBERS", RedisArgument(KombuRedisLayout().reservedKey(owner: owner)),
                        ])
                        let held = reply.array?.compactMap(\.string) ?? []
                        events.post(.reconnected(held: held))
                    }
                    connectedBefore = true
                    broker = kombu
                    backoff.reset()
                    events.post(
                        .state(.fetch, connected: true, detail: "connected to \(Self.describe(made, via: self.broker))")
                    )
                } catch {
                    events.post(.state(.fetch, connected: false, detail: "\(error)"))
                    PlatformThread.sleep(for: backoff.next())
                    continue
                }
            }
            guard let kombu = broker else { continue }
            // With a reserve in flight (sent while the batch before was decoded) its reply is read first, before
            // any other command; the checks below wait for the next turn without one.
            if inFlight == nil {
                if let wanted = requestedQueues.withLock({ requested in
                    defer { requested = nil }; return requested
                }) {
                    do {
                        try kombu.declare(queues: wanted)
                        watcher =
                            wanted.isEmpty
                            ? nil
                            : try KombuQueueWatcher(target: self.broker, layout: KombuRedisLayout(), queues: wanted)
                        current = wanted
                        order = wanted
                    } catch {
                        requestedQueues.withLock { $0 = $0 ?? wanted }
                        events.post(.state(.fetch, connected: false, detail: "\(error)"))
                        broker = nil
                        watcher = nil
                        continue
                    }
                }
                if ContinuousClock.now >= nextBeat {
                    nextBeat = .now + Self.incarnationBeat
                    do {
                        try kombu.heartbeat(node: node, owner: owner, ttl: Self.incarnationTTL)
                        // A previous consumer of this node killed moments ago is still "alive" at our start: its
                        // reservations come back here once its key expires, not after the visibility timeout.
                        try recoverSiblings(kombu, known: &liveSiblings)
                    } catch {
                        events.post(.state(.fetch, connected: false, detail: "\(error)"))
                        broker = nil
                        watcher = nil
                        continue
                    }
                }
                if ContinuousClock.now >= nextHousekeeping {
                    nextHousekeeping = .now + housekeepingInterval
                    do {
                        let tags = Array(running.withLock { $0 })
                        if !tags.isEmpty { _ = try kombu.refresh(tags: tags) }
                        let restored = try kombu.restoreVisible(visibilityTimeout: visibilityTimeout, limit: 1000)
                            .restored
                        if restored > 0 { events.post(.restored(restored)) }
                    } catch {
                        events.post(.state(.fetch, connected: false, detail: "\(error)"))
                        broker = nil
                        watcher = nil
                        continue
                    }
                }
                let available = credit.withLock { $0 }
                if available <= 0 || order.isEmpty {
                    madeProgress(delivered: false)
                    fetchSignal.wait(timeout: .milliseconds(500))
                    continue
                }
            }
            var reading = inFlight
            inFlight = nil
            do {
                if reading == nil { reading = try sendReserve(kombu, order: &order, reserveOrder: &reserveOrder) }
                guard let asked = reading else { continue }
                let reserved = try kombu.reserved(asked.reserve)
                reading = nil
                took(reserved, requested: asked.requested)
                if reserved.isEmpty {
                    // Wakes on any push to any of our lists (a hint: reserve again and see).
                    _ = try watcher?.wait(timeout: .seconds(1))
                } else {
                    // A whole batch, so likely more behind it: the next reserve runs on the server while this one is
                    // decoded, unless a heartbeat, housekeeping or new queues are due (they need the connection).
                    if reserved.count == asked.requested, !isStopping,
                        ContinuousClock.now < min(nextBeat, nextHousekeeping),
                        requestedQueues.withLock({ $0 == nil })
                    {
                        inFlight = try sendReserve(kombu, order: &order, reserveOrder: &reserveOrder)
                    }
                    deliver(reserved)
                    if reserved.count < asked.requested {
                        // The script pops every queue until it has `requested`: fewer means it emptied them all, so
                        // reserving again at once finds nothing. Wait for a push instead (a push made since the pop
                        // is already buffered and returns at once); this saves one empty reserve per delivery at
                        // light load, a broker round trip on the way of the next task's.
                        _ = try watcher?.wait(timeout: .seconds(1))
                    }
                }
            } catch {
                for unread in [reading, inFlight] { if let unread { credit.withLock { $0 += unread.requested } } }
                inFlight = nil
                events.post(.state(.fetch, connected: false, detail: "\(error)"))
                broker = nil
                watcher = nil
                PlatformThread.sleep(for: backoff.next())
            }
        }
    }

    /// A reserve sent and not read yet, with the credit taken for it (given back for what it did not find).
    private struct SentReserve {
        let reserve: KombuRedisBroker.SentReserve
        let requested: Int
    }

    /// Sends a reserve for as much credit as there is (at most ``batchLimit``) and takes that credit; nil when
    /// there is none. The next reserve starts from the next queue.
    private func sendReserve(
        _ kombu: KombuRedisBroker,
        order: inout [String],
        reserveOrder: inout KombuRedisBroker.ReserveOrder?
    ) throws(RedisError) -> SentReserve? {
        let requested = credit.withLock { credit in
            let taken = min(credit, batchLimit)
            credit -= max(taken, 0)
            return taken
        }
        guard requested > 0 else { return nil }
        let keys =
            reserveOrder.flatMap { $0.queues == order ? $0 : nil } ?? kombu.reserveOrder(queues: order, owner: owner)
        reserveOrder = keys
        // Queues take turns being first (kombu's round robin).
        if order.count > 1 { order.append(order.removeFirst()) }
        do throws(RedisError) {
            return SentReserve(reserve: try kombu.sendReserve(keys, max: requested), requested: requested)
        } catch {
            credit.withLock { $0 += requested }
            throw error
        }
    }

    /// Counts a reserve's reply and gives back the credit it did not use.
    private func took(_ reserved: [ReservedMessage], requested: Int) {
        ThroughputCounters.shared.record(.reserve, size: reserved.count)
        if reserved.count < requested { credit.withLock { $0 += requested - reserved.count } }
        if reserved.isEmpty { madeProgress(delivered: false) }
    }

    /// Hands a batch to the consumer, decoded here (the consumer loop only routes it).
    private func deliver(_ reserved: [ReservedMessage]) {
        guard !reserved.isEmpty else { return }
        madeProgress(delivered: true)
        events.post(.delivered(reserved.map(Self.inbound)))
    }

    /// The server a connection reached, and through which sentinels, for the connected state and the log.
    private static func describe(_ connection: RedisConnection, via target: RedisTarget) -> String {
        guard case .sentinel(let sentinel) = target else { return connection.url.redacted }
        return "\(connection.url.redacted), master '\(sentinel.masterName)' named by the sentinels"
    }

    /// Gives back what dead incarnations of this node held, and warns once per new live one (a duplicate node name).
    private func recoverSiblings(_ kombu: KombuRedisBroker, known: inout Set<String>) throws(RedisError) {
        let (restored, live) = try kombu.recoverDeadIncarnations(node: node, except: owner) { other in
            daemonPrefix.map { other.hasPrefix($0) } ?? false
        }
        if restored > 0 { events.post(.restored(restored)) }
        let new = Set(live).subtracting(known)
        known = Set(live)
        guard !new.isEmpty else { return }
        events.post(
            .notice(
                "another worker with node name \(node) is running against this broker "
                    + "(\(new.sorted().joined(separator: ", "))): give each worker its own worker.hostname; their "
                    + "reservations are kept apart, but Celery's remote control and events cannot tell them apart"
            )
        )
    }

    // MARK: Writer

    private func writeLoop() {
        var backoff = Backoff()
        var brokerConnection: KombuRedisBroker?
        var backend: RedisResultBackend?
        var pending: [Settlement] = []
        // Events taken from the buffer, published at each turn in the round trip of its acks, or in one of their
        // own when there are none (kept over a failed turn).
        var pendingEvents: Deque<OutboundMessage> = []
        var tags = EventDeliveryTags()
        var stopped = false
        // Whether this thread last reported its connection down: it reports the recovery once, after a flush
        // that worked (the fetch thread's reports say nothing about this connection).
        // Starts true: the first flush that works reports the connection up, so that `stats` shows it.
        var reportedDown = true
        while true {
            if pendingEvents.isEmpty { pendingEvents = eventOutbox.take() }
            if pending.isEmpty && pendingEvents.isEmpty {
                if stopped { break }
                let (items, isStopped) = outbox.take(timeout: .seconds(1))
                pending = items
                stopped = isStopped
                pendingEvents = eventOutbox.take()
                if pending.isEmpty && pendingEvents.isEmpty { continue }
            }
            do {
                let broker = try brokerConnection ?? KombuRedisBroker(connection: connect(self.broker))
                brokerConnection = broker
                if backend == nil, let target = self.backend {
                    backend = RedisResultBackend(connection: try connect(target))
                }
                var envelopes = fanoutEvents(pendingEvents, broker: broker, tags: &tags)
                // Sent (with the acks or on their own) even if the turn fails after: not sent again.
                defer { if envelopes.isEmpty { pendingEvents.removeAll() } }
                if !pending.isEmpty {
                    var batch = pending.takeFirst(batchLimit)
                    // What is left of the batch (nothing once flushed) goes back in front of the queue.
                    defer { pending.insert(contentsOf: batch, at: 0) }
                    try flush(&batch, broker: broker, backend: backend, events: &envelopes)
                    batch.removeAll()
                }
                if !envelopes.isEmpty {
                    try publishEvents(envelopes, broker: broker)
                    envelopes.removeAll()
                }
                backoff.reset()
                if reportedDown {
                    reportedDown = false
                    let target = Self.describe(broker.connection, via: self.broker)
                    events.post(.state(.write, connected: true, detail: "writing to \(target)"))
                }
            } catch {
                brokerConnection = nil
                backend = nil
                reportedDown = true
                events.post(.state(.write, connected: false, detail: "\(error)"))
                if stopped && isStopping && backoff.attempts > 20 {
                    // Shutting down and the broker stays away: the unacked messages stay recorded in
                    // Redis and come back through restore; nothing more can be done from here.
                    break
                }
                PlatformThread.sleep(for: backoff.next())
            }
        }
        finished.post()
    }

    /// Publishes first (plan by plan; each one done is removed from its plan, so a retried batch does not repeat
    /// it), then results, then chord parts (a completed chord's body is added to its plan), then the publishes that
    /// follow the results (errbacks, chord bodies) and chord cleanups, then acks and requeues. A plan whose publish
    /// the broker refuses, or cannot route, stops there: its message stays unacked and comes back through restore.
    ///
    /// `events` (Celery's, fire-and-forget) go out in the round trip of the acks, and are emptied then.
    private func flush(
        _ batch: inout [Settlement],
        broker: KombuRedisBroker,
        backend: RedisResultBackend?,
        events fanout: inout [KombuRedisBroker.FanoutMessage]
    ) throws {
        var stoppedPlans = Set<Int>()
        for index in batch.indices where !batch[index].chordSetups.isEmpty {
            // A chord this task starts: its size is in the backend before any header task can finish.
            if let backend {
                let expires = resultExpires.map { Int($0.components.seconds) } ?? 0
                try ChordStep.setUp(batch[index].chordSetups, backend: backend, expires: expires)
            } else {
                for setup in batch[index].chordSetups {
                    events.post(.notice("chord \(setup.groupID): no Redis result backend to start it on"))
                }
            }
            batch[index].chordSetups = []
        }
        if batch.contains(where: { !$0.revokedUnlessStarted.isEmpty }) {
            // Revokes of tasks no worker here holds, before the replies of this batch go out.
            if let backend {
                try RevokedResults.store(&batch, backend: backend, expires: resultExpires)
            } else {
                for index in batch.indices { batch[index].revokedUnlessStarted = [] }
            }
        }
        if let pauseBeforePublish = TestHooks.pauseBeforePublish, batch.contains(where: { !$0.publishes.isEmpty }) {
            events.post(.notice("pausing before publishing (SWIFTQ_TEST_PAUSE_BEFORE_PUBLISH)"))
            PlatformThread.sleep(for: pauseBeforePublish)
        }
        for index in batch.indices where !batch[index].publishes.isEmpty {
            if !(try publishAll(&batch[index].publishes, of: batch[index], broker: broker)) {
                stoppedPlans.insert(index)
            }
        }
        let results = batch.indices.filter { !stoppedPlans.contains($0) }.flatMap { batch[$0].allResults }
        // Results whose plans need nothing between the store and the ack (the usual batch) are stored and acked
        // in one script on the broker's connection, when the backend is on the broker's server (in any database):
        // one round trip instead of two.
        var ackedWithResults = false
        if let backend, !results.isEmpty {
            let items = results.map { ResultStoreItem(taskID: $0.taskID, meta: $0.meta, expires: resultExpires) }
            if let database = backendDatabaseOnBroker,
                let tags = Self.acksStoredWithResults(batch, except: stoppedPlans)
            {
                let outcome = try broker.store(
                    items,
                    in: backend,
                    database: database,
                    thenAck: tags,
                    owner: owner,
                    publishing: fanout
                )
                reportRefused(outcome.reached)
                fanout.removeAll()
                ackedWithResults = true
                ThroughputCounters.shared.record(.store, size: results.count)
                ThroughputCounters.shared.record(.ack, size: tags.count)
            } else {
                _ = try backend.storeBatch(items)
                ThroughputCounters.shared.record(.store, size: results.count)
            }
        }
        for index in batch.indices where !stoppedPlans.contains(index) {
            batch[index].result = nil
            batch[index].followingResults = []
            guard batch[index].hasChordWork else { continue }
            guard let backend else {
                let group = batch[index].chordParts.first?.groupID ?? batch[index].chordUnlock?.groupID ?? ""
                events.post(.notice("chord \(group): no Redis result backend to count its header on"))
                batch[index].chordParts = []
                batch[index].chordUnlock = nil
                continue
            }
            let done = try ChordStep.run(&batch[index], backend: backend, resultExpires: resultExpires) {
                events.post(.notice($0))
            }
            if !done { stoppedPlans.insert(index) }
        }
        for index in batch.indices where !stoppedPlans.contains(index) && !batch[index].afterResult.isEmpty {
            if !(try publishAll(&batch[index].afterResult, of: batch[index], broker: broker)) {
                stoppedPlans.insert(index)
            }
        }
        for index in batch.indices where !stoppedPlans.contains(index) {
            guard let claim = batch[index].chordCleanup, let backend else { continue }
            if !(try backend.chordCleanup(claim.groupID, token: claim.token, doneExpires: ChordStep.doneExpires)) {
                events.post(.notice("chord \(claim.groupID): its claim ran out before cleanup; its keys expire"))
            }
            batch[index].chordCleanup = nil
        }
        let plans = batch.indices.filter { !stoppedPlans.contains($0) }.map { batch[$0] }
        var acks: [String] = []
        var requeued: [String] = []
        var restored: [String] = []
        var restoreHeld = false
        for plan in plans {
            if plan.restoreHeld { restoreHeld = true }
            guard let tag = plan.deliveryTag else { continue }
            switch plan.disposition {
            case .requeue:
                // A no-op when the message is no longer in `unacked` (already acked or restored).
                _ = try broker.reject(tag: tag, owner: owner, requeue: true)
                requeued.append(tag)
            case .restore:
                restored.append(tag)
            case .ack, .reject:
                // kombu's reject without requeue is an ack on Redis.
                acks.append(tag)
            case .none:
                break
            }
        }
        // One script for the batch, newest first as the machine gives them back; a no-op for those no longer in
        // `unacked`.
        if !restored.isEmpty { try broker.restore(tags: restored, owner: owner) }
        if !acks.isEmpty && !ackedWithResults {
            let reached = try broker.ack(tags: acks, owner: owner, publishing: fanout).reached
            reportRefused(reached)
            fanout.removeAll()
            ThroughputCounters.shared.record(.ack, size: acks.count)
        }
        let revokes = plans.flatMap(\.revokes)
        if !revokes.isEmpty {
            let expiry = plans.map(\.revokeExpiry).max() ?? revokeExpiry
            let now = CeleryTimestamp.now.secondsSince1970
            var add: [RedisArgument] = ["ZADD", RedisArgument(Self.revokedKey)]
            for revoke in revokes { add += [RedisArgument(String(revoke.at)), RedisArgument(revoke.id)] }
            _ = try broker.connection.pipeline([
                add,
                [
                    "ZREMRANGEBYSCORE", RedisArgument(Self.revokedKey), "-inf",
                    RedisArgument("(" + String(now - expiry)),
                ],
                ["EXPIRE", RedisArgument(Self.revokedKey), RedisArgument(String(Int(expiry.rounded(.up))))],
            ])
        }
        if restoreHeld {
            let restored = try broker.restoreOwned(owner: owner)
            try broker.retire(node: node, owner: owner)
            events.post(.restored(restored.restored))
        }
        events.post(.settled(tags: acks + requeued + restored, results: backend == nil ? 0 : results.count))
    }

    /// The tags to ack in the script that stores the batch's results, or nil when some plan needs a step between
    /// its result and its ack (chord counting, publishes after the result, a chord cleanup), requeues or restores, or
    /// gives back what the owner holds: those take the separate steps of ``flush``, in their order.
    static func acksStoredWithResults(_ batch: [Settlement], except stopped: Set<Int>) -> [String]? {
        var tags: [String] = []
        for index in batch.indices where !stopped.contains(index) {
            let plan = batch[index]
            guard !plan.hasChordWork, plan.afterResult.isEmpty, plan.chordCleanup == nil, !plan.restoreHeld,
                plan.disposition != .requeue, plan.disposition != .restore
            else { return nil }
            if let tag = plan.deliveryTag, plan.disposition == .ack || plan.disposition == .reject { tags.append(tag) }
        }
        return tags
    }

    /// Events, fire-and-forget, as kombu PUBLISHes them for fanout exchanges (all of them, on Redis): the envelopes
    /// to send. An event for another kind of exchange (none today) is published at once on its own.
    private func fanoutEvents(
        _ messages: Deque<OutboundMessage>,
        broker: KombuRedisBroker,
        tags: inout EventDeliveryTags
    ) -> [KombuRedisBroker.FanoutMessage] {
        var fanout: [KombuRedisBroker.FanoutMessage] = []
        fanout.reserveCapacity(messages.count)
        for message in messages {
            guard message.exchangeType == .fanout else {
                do { _ = try publish(message, broker: broker) } catch {
                    events.post(.notice("publishing an event to \(message.exchange) failed: \(error)"))
                }
                continue
            }
            fanout.append(
                KombuRedisBroker.FanoutMessage(
                    envelope: message.redisEnvelope(deliveryTag: tags.next()),
                    exchange: message.exchange,
                    routingKey: message.routingKey
                )
            )
        }
        return fanout
    }

    /// Events in one pipelined round trip of their own, when no acks were sent to carry them. A refused one is told
    /// once per batch and not retried (an event has nothing waiting on it).
    private func publishEvents(_ fanout: [KombuRedisBroker.FanoutMessage], broker: KombuRedisBroker) throws(RedisError)
    {
        reportRefused(try broker.publishFanout(fanout))
    }

    private func reportRefused(_ reached: [Int?]) {
        let refused = reached.filter { $0 == nil }.count
        if refused > 0 { events.post(.notice("the broker refused \(refused) of \(reached.count) events")) }
    }

    /// Publishes messages in order, removing each one done; false when the broker refused or could not route one.
    private func publishAll(
        _ messages: inout [OutboundMessage],
        of plan: Settlement,
        broker: KombuRedisBroker
    ) throws -> Bool {
        while let message = messages.first {
            let routed = try publish(message, broker: broker)
            if routed == 0 && message.exchangeType != .fanout {
                events.post(
                    .notice("nothing is bound to exchange \(message.exchange) with routing key \(message.routingKey)")
                )
            }
            if routed < 0 || (routed == 0 && message.exchangeType != .fanout) {
                events.post(.notice("settlement of \(plan.taskID ?? "a message") stopped; its message stays unacked"))
                return false
            }
            messages.removeFirst()
        }
        return true
    }

    /// Publishes one message: how many queues it reached, or -1 when the server refused it (a connection error is
    /// thrown, and the batch retried).
    private func publish(_ message: OutboundMessage, broker: KombuRedisBroker) throws(RedisError) -> Int {
        let result = Result { () throws(RedisError) -> Int in
            try broker.publish(
                envelope: message.redisEnvelope(deliveryTag: randomHex()),
                exchange: message.exchange,
                type: message.kombuExchangeType,
                routingKey: message.routingKey,
                priority: message.priority ?? 0
            )
        }
        switch result {
        case .success(let routed): return routed
        case .failure(let error) where error.breaksConnection: throw error
        case .failure(let error):
            events.post(.notice("publishing to \(message.exchange)/\(message.routingKey) failed: \(error)"))
            return -1
        }
    }

    // MARK: Revokes at startup

    /// The broker's revoke list (revokes younger than `worker.revokes_expire`), then Celery's mingle: `hello` to every
    /// node, and the revoked ids they answer with within a second. Both are posted as ``BrokerEvent/revokesFound``.
    private func findRevokes(_ connection: RedisConnection) throws(RedisError) {
        let now = CeleryTimestamp.now.secondsSince1970
        let stored = try connection.command(
            "ZRANGEBYSCORE",
            RedisArgument(Self.revokedKey),
            RedisArgument(String(now - revokeExpiry)),
            "+inf",
            "WITHSCORES"
        )
        var records: [RevokeRecord] = []
        let items = stored.array ?? []
        var index = 0
        while index + 1 < items.count {
            if let id = items[index].string, let at = items[index + 1].string.flatMap(Double.init) {
                records.append(RevokeRecord(id: id, at: at))
            }
            index += 2
        }
        if !records.isEmpty { events.post(.revokesFound(records, source: "the broker's revoke list")) }
        try mingle(connection)
    }

    /// Celery's mingle on Redis, as kombu's client does it: bind a reply queue, PUBLISH `hello` on the pidbox channel,
    /// pop replies for a second, then unbind and delete the reply lists.
    private func mingle(_ connection: RedisConnection) throws(RedisError) {
        guard let revoked = mingleRevokes.withLock({ $0 }) else { return }
        let key = randomHex()
        let ticket = randomHex()
        let hello = Mingle.hello(node: node, revoked: revoked, ticket: ticket, replyKey: key)
        var found: [String] = []
        var nodes = 0
        try KombuRedisBroker(connection: connection).pidboxRequest(
            envelope: hello.redisEnvelope(deliveryTag: randomHex()),
            replyKey: key,
            until: .now + Mingle.timeout
        ) { envelope in
            let replyTicket = envelope.headers["ticket"]?.stringValue
            if let ids = Mingle.revoked(inReply: envelope.body, ticket: ticket, replyTicket: replyTicket, node: node) {
                found += ids
                nodes += 1
            }
        }
        let now = CeleryTimestamp.now.secondsSince1970
        events.post(.revokesFound(found.map { RevokeRecord(id: $0, at: now) }, source: "mingle (\(nodes) node(s))"))
    }

    // MARK: Control reader

    /// Reads the node's pidbox as a Celery worker subscribes to it: the binding `\x06\x16\x06\x16<node>.celery.pidbox`
    /// in `_kombu.binding.celery.pidbox`, and `PSUBSCRIBE` on the exchange's fanout channel. Messages published while
    /// it is reconnecting are lost, as with kombu (pub/sub keeps nothing).
    private func controlLoop() {
        var backoff = Backoff()
        let layout = KombuRedisLayout()
        let exchange = "celery.pidbox"
        let channel = layout.fanoutChannel(exchange: exchange, routingKey: "", database: broker.database)
        while !isStopping {
            do {
                let connection = try broker.connect(
                    connectTimeout: .seconds(5),
                    commandTimeout: .seconds(10),
                    clientName: "swiftq-control"
                )
                let member = KombuRedisLayout.bindingMember(routingKey: "", queue: "\(node).\(exchange)")
                try connection.command(
                    "SADD",
                    RedisArgument(layout.bindingKey(exchange: exchange)),
                    RedisArgument(member)
                )
                let confirmation = try connection.command("PSUBSCRIBE", RedisArgument(channel))
                guard confirmation.array?.first?.string == "psubscribe" else {
                    throw RedisError(code: .protocol, message: "PSUBSCRIBE \(channel) returned \(confirmation)")
                }
                backoff.reset()
                while !isStopping {
                    guard let message = try connection.receive(timeout: .seconds(1)) else { continue }
                    guard let parts = message.array, parts.count == 4, parts[0].string == "pmessage",
                        let payload = parts[3].bytes
                    else { continue }
                    if let delivery = Self.control(payload, source: channel) {
                        events.post(.control([delivery]))
                    } else {
                        events.post(.notice("ignoring a control message on \(channel) that is not a pidbox request"))
                    }
                }
            } catch {
                events.post(.notice("control channel \(channel): \(error); reconnecting"))
                PlatformThread.sleep(for: backoff.next())
            }
        }
    }

    /// A pidbox request from a kombu envelope.
    package static func control(_ payload: [UInt8], source: String) -> ControlDelivery? {
        guard let envelope = try? RedisEnvelope.decode(payload) else { return nil }
        return ControlDelivery(json: envelope.body, source: source)
    }

    /// Decodes a reserved message on the fetcher's thread (the consumer loop only routes it).
    package static func inbound(_ reserved: ReservedMessage) -> InboundMessage {
        if reserved.isMalformed { return .malformed(payload: reserved.payload, queue: reserved.queue) }
        do {
            let envelope = try RedisEnvelope.decode(reserved.payload)
            let message = try TaskMessage.decode(envelope)
            let queue = envelope.routingKey.isEmpty ? reserved.queue : envelope.routingKey
            return .task(message, deliveryTag: reserved.deliveryTag, queue: queue)
        } catch {
            return .undecodable(error, deliveryTag: reserved.deliveryTag, queue: reserved.queue)
        }
    }
}
