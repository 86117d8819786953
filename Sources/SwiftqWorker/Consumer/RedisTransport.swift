import SwiftqCore
import SwiftqPlatform
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
/// Both reconnect with capped, jittered backoff and never drop work: a failed batch is retried whole
/// (acks and result stores are idempotent, and a stored SUCCESS is never overwritten).
/// Shared state is behind `Mutex`es; everything else belongs to its thread.
final class RedisTransport: BrokerTransport {
    let events: Mailbox<BrokerEvent>
    private let brokerURL: RedisURL
    private let backendURL: RedisURL?
    private let queues: [String]
    private let owner: String
    private let resultExpires: Duration?
    private let visibilityTimeout: Duration
    /// Delivery tags of running tasks, whose `unacked_index` scores the fetcher refreshes so that no kombu
    /// consumer restores them while they run (a task may run longer than the visibility timeout).
    private let running = Mutex<Set<String>>([])
    private let credit = Mutex(0)
    private let fetchSignal = Semaphore()
    private let stopping = Mutex(false)
    private let outbox = WorkQueue<Completion>()
    private let finished = Semaphore()
    private let batchLimit = 64

    init(
        brokerURL: RedisURL,
        backendURL: RedisURL?,
        queues: [String],
        owner: String,
        resultExpires: Duration?,
        visibilityTimeout: Duration
    ) throws {
        self.brokerURL = brokerURL
        self.backendURL = backendURL
        self.queues = queues
        self.owner = owner
        self.resultExpires = resultExpires
        self.visibilityTimeout = visibilityTimeout
        self.events = try Mailbox()
    }

    /// Starts both threads. The fetcher first gives back what a previous consumer of this node still held.
    func start() {
        PlatformThread.startOrExit(name: "swiftq-fetch") { [self] in fetchLoop() }
        PlatformThread.startOrExit(name: "swiftq-write") { [self] in writeLoop() }
    }

    /// Allows `count` more messages to be reserved.
    func grant(_ count: Int) {
        guard count > 0 else { return }
        credit.withLock { $0 += count }
        fetchSignal.post()
    }

    /// Marks a delivery as running (its visibility deadline is refreshed) or no longer running.
    func setRunning(_ tag: String, _ isRunning: Bool) {
        running.withLock { tags in
            if isRunning { tags.insert(tag) } else { tags.remove(tag) }
        }
    }

    /// Queues results and/or acks for the writer.
    func complete(_ completions: [Completion]) {
        outbox.post(completions)
    }

    /// ETA tasks need no extra room on Redis: they are not counted against the credit.
    func setHeldForETA(_ count: Int) {}

    /// Redis delivery tags stay valid across reconnects (they are keys of the `unacked` hash).
    func isStale(_ tag: String) -> Bool { false }

    var redactedURL: String { brokerURL.redacted }

    /// Stops fetching; the writer finishes its queue, then (if asked) gives back every message this
    /// owner still holds. Blocks until done or `timeout`.
    func stop(restoreHeld: Bool, timeout: Duration) {
        stopping.withLock { $0 = true }
        fetchSignal.post()
        if restoreHeld { outbox.post(Completion(restoreHeld: true)) }
        outbox.stop()
        finished.wait(timeout: timeout)
    }

    private var isStopping: Bool { stopping.withLock { $0 } }

    /// A connection with the transport's timeouts: 5 s to connect, 10 s per command (reserve scripts and
    /// pipelines are short; a longer stall means the broker is gone).
    private func connect(_ url: RedisURL) throws(RedisError) -> RedisConnection {
        try RedisConnection(url: url, connectTimeout: .seconds(5), commandTimeout: .seconds(10))
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
        // Housekeeping every quarter of the visibility timeout (at most a minute): refresh the deadlines of
        // running tasks, and sweep messages whose consumer vanished, as every kombu consumer does.
        let housekeepingInterval = min(visibilityTimeout / 4, .seconds(60))
        var nextHousekeeping = ContinuousClock.now
        while !isStopping {
            if broker == nil {
                do {
                    let made = try connect(brokerURL)
                    let kombu = KombuRedisBroker(connection: made)
                    try kombu.declare(queues: queues)
                    watcher = try KombuQueueWatcher(url: brokerURL, layout: KombuRedisLayout(), queues: queues)
                    if !restoredAtStart {
                        let restored = try kombu.restoreOwned(owner: owner).restored
                        if restored > 0 { events.post(.restored(restored)) }
                        restoredAtStart = true
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
                    events.post(.state(connected: true, detail: "connected to \(brokerURL.redacted)"))
                } catch {
                    events.post(.state(connected: false, detail: "\(error)"))
                    PlatformThread.sleep(for: backoff.next())
                    continue
                }
            }
            guard let kombu = broker else { continue }
            if ContinuousClock.now >= nextHousekeeping {
                nextHousekeeping = .now + housekeepingInterval
                do {
                    let tags = Array(running.withLock { $0 })
                    if !tags.isEmpty { _ = try kombu.refresh(tags: tags) }
                    let restored = try kombu.restoreVisible(visibilityTimeout: visibilityTimeout, limit: 1000).restored
                    if restored > 0 { events.post(.restored(restored)) }
                } catch {
                    events.post(.state(connected: false, detail: "\(error)"))
                    broker = nil
                    watcher = nil
                    continue
                }
            }
            let available = credit.withLock { $0 }
            if available <= 0 {
                fetchSignal.wait(timeout: .milliseconds(500))
                continue
            }
            do {
                let reserved = try kombu.reserve(queues: order, max: min(available, batchLimit), owner: owner)
                if order.count > 1 { order.append(order.removeFirst()) }
                if reserved.isEmpty {
                    // Wakes on any push to any of our lists (a hint: reserve again and see).
                    _ = try watcher?.wait(timeout: .seconds(1))
                } else {
                    credit.withLock { $0 -= reserved.count }
                    events.post(.delivered(reserved.map(Self.inbound)))
                }
            } catch {
                events.post(.state(connected: false, detail: "\(error)"))
                broker = nil
                watcher = nil
                PlatformThread.sleep(for: backoff.next())
            }
        }
    }

    // MARK: Writer

    private func writeLoop() {
        var backoff = Backoff()
        var brokerConnection: KombuRedisBroker?
        var backend: RedisResultBackend?
        var pending: [Completion] = []
        var stopped = false
        while true {
            if pending.isEmpty {
                if stopped { break }
                let (items, isStopped) = outbox.take(timeout: .seconds(1))
                pending = items
                stopped = isStopped
                if pending.isEmpty { continue }
            }
            do {
                let broker = try brokerConnection ?? KombuRedisBroker(connection: connect(brokerURL))
                brokerConnection = broker
                if backend == nil, let backendURL {
                    backend = RedisResultBackend(connection: try connect(backendURL))
                }
                try flush(Array(pending.prefix(batchLimit)), broker: broker, backend: backend)
                pending.removeFirst(min(batchLimit, pending.count))
                backoff.reset()
            } catch {
                brokerConnection = nil
                backend = nil
                events.post(.state(connected: false, detail: "\(error)"))
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

    /// Results first, then acks and requeues, each as one round trip.
    private func flush(_ batch: [Completion], broker: KombuRedisBroker, backend: RedisResultBackend?) throws {
        let results = batch.compactMap { item -> (taskID: String, meta: [UInt8])? in
            guard let id = item.taskID, let meta = item.meta else { return nil }
            return (id, meta)
        }
        if let backend, !results.isEmpty {
            _ = try backend.storeBatch(
                results.map { ResultStoreItem(taskID: $0.taskID, meta: $0.meta, expires: resultExpires) }
            )
        }
        var acks: [String] = []
        var requeued: [String] = []
        var restoreHeld = false
        for item in batch {
            if item.restoreHeld { restoreHeld = true }
            guard let tag = item.deliveryTag else { continue }
            if item.requeue {
                // A no-op when the message is no longer in `unacked` (already acked or restored).
                _ = try broker.reject(tag: tag, owner: owner, requeue: true)
                requeued.append(tag)
            } else {
                acks.append(tag)
            }
        }
        if !acks.isEmpty { _ = try broker.ack(tags: acks, owner: owner) }
        if restoreHeld {
            let restored = try broker.restoreOwned(owner: owner)
            events.post(.restored(restored.restored))
        }
        events.post(.settled(tags: acks + requeued, results: backend == nil ? 0 : results.count))
    }

    /// Decodes a reserved message on the fetcher's thread (the consumer loop only routes it).
    static func inbound(_ reserved: ReservedMessage) -> InboundMessage {
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
