/// A message taken from a queue by ``KombuRedisBroker/reserve(queues:max:owner:)``.
public struct ReservedMessage: Sendable, Equatable {
    /// The list it came from, with the global prefix and any priority suffix (`"celery\x06\x163"`).
    public var queueKey: String
    /// The queue name: ``queueKey`` without prefix and priority suffix.
    public var queue: String
    /// The kombu envelope exactly as it was in the list.
    public var payload: [UInt8]
    /// `properties.delivery_tag`; `nil` when the payload is malformed.
    public var deliveryTag: String?

    /// Whether the payload is not a JSON object with a `properties.delivery_tag` string. Such a message has been
    /// removed from its queue and is *not* in `unacked`: log it, count it and drop it (Celery's
    /// `on_decode_error`), so it can never loop.
    public var isMalformed: Bool { deliveryTag == nil }

    /// A reserved message.
    public init(queueKey: String, queue: String, payload: [UInt8], deliveryTag: String?) {
        self.queueKey = queueKey
        self.queue = queue
        self.payload = payload
        self.deliveryTag = deliveryTag
    }
}

/// What a restore did.
public struct KombuRestoreResult: Sendable, Equatable {
    /// Messages put back in their queues.
    public var restored: Int
    /// Entries that could not be read or routed (no exchange binding and no routing key), moved from `unacked`
    /// to ``KombuRedisLayout/unrestorableKey`` for an operator to look at.
    public var parked: Int
    /// Whether the sweep was skipped because another process (a Python worker, say) held `unacked_mutex`.
    public var skippedBecauseMutexHeld: Bool

    /// A result.
    public init(restored: Int = 0, parked: Int = 0, skippedBecauseMutexHeld: Bool = false) {
        self.restored = restored
        self.parked = parked
        self.skippedBecauseMutexHeld = skippedBecauseMutexHeld
    }
}

/// The worker side of kombu's Redis transport over one ``RedisConnection``: declare queues, reserve messages,
/// ack, reject, restore, and publish, with the same keys and data as a Python Celery 5.7 worker.
///
/// ## Delivery guarantee
/// Every change that moves a message is one Lua script (``KombuRedisScripts``): a message is popped *and* recorded
/// in `unacked` (plus `unacked_index` and the owner's set) atomically, and it leaves `unacked` only in the same
/// script that pushes it back to a queue or in an ack. A crash of the worker at any point leaves each message either
/// in its queue or in `unacked`, where ``restoreOwned(owner:)`` on restart, or any kombu consumer's visibility
/// sweep, puts it back. (Python's BRPOP-then-HSET loses the message if it dies in between.)
///
/// ## Owners
/// `owner` names one consumer incarnation's holdings, e.g. `"celery@host.1234"`: the tags it reserved are kept in
/// ``KombuRedisLayout/reservedKey(owner:)``, so that a restarted consumer with the same owner name gives back
/// exactly what its previous incarnation held, without waiting for the visibility timeout.
///
/// Blocking and ownership are those of the connection: one thread, blocking calls.
public struct KombuRedisBroker {
    /// The connection every operation uses.
    public let connection: RedisConnection
    /// Key names.
    public let layout: KombuRedisLayout

    /// A broker over a connection.
    public init(connection: RedisConnection, layout: KombuRedisLayout = KombuRedisLayout()) {
        self.connection = connection
        self.layout = layout
    }

    /// Declares task queues the way a Python worker does at startup: `SADD` the member
    /// `queue + sep + "" + sep + queue` to `_kombu.binding.<queue>` and `_kombu.binding_permanent.<queue>`, so
    /// that producers routing through the queue's exchange and kombu 5.7's binding sweeper find it. One round trip.
    public func declare(queues: [String]) throws(RedisError) {
        var commands: [[RedisArgument]] = []
        for queue in queues {
            let member = RedisArgument(KombuRedisLayout.bindingMember(routingKey: queue, queue: queue))
            commands.append(["SADD", RedisArgument(layout.bindingKey(exchange: queue)), member])
            commands.append(["SADD", RedisArgument(layout.permanentBindingKey(exchange: queue)), member])
        }
        try Self.check(try connection.pipeline(commands), "declaring queues")
    }

    /// Takes up to `max` messages, best first in kombu's consume order (``KombuRedisLayout/consumeKeyOrder(queues:)``:
    /// every queue's priority-0 list before any priority-3 list), and records each in `unacked` as
    /// `[payload, exchange, routing_key]` with the payload embedded verbatim, in `unacked_index` at the server's
    /// current time, and in the owner's set. One round trip, one script.
    ///
    /// Returns an empty array when every list is empty; then wait with ``waitForMessages(queues:timeout:)`` or a
    /// ``KombuQueueWatcher``. Malformed payloads are returned too (``ReservedMessage/isMalformed``), not recorded.
    public func reserve(queues: [String], max: Int, owner: String) throws(RedisError) -> [ReservedMessage] {
        try reserve(reserveOrder(queues: queues, owner: owner), max: max)
    }

    /// The keys and arguments of a reserve for one queue order and owner, worked out once: a consumer that takes
    /// messages thousands of times a second from the same queues does not rebuild them (and their strings) each time.
    public struct ReserveOrder: Sendable, Equatable {
        /// The queues, in the order asked for.
        public let queues: [String]
        public let owner: String
        let keys: [RedisArgument]
        let queueArguments: [RedisArgument]
        let queueOfKey: [String: String]

        init(queues: [String], owner: String, layout: KombuRedisLayout) {
            self.queues = queues
            self.owner = owner
            let listKeys = layout.consumeKeyOrder(queues: queues)
            var queueOfKey: [String: String] = [:]
            for key in listKeys { queueOfKey[key] = layout.queueName(fromKey: key) ?? key }
            self.queueOfKey = queueOfKey
            keys =
                listKeys.isEmpty
                ? []
                : KombuRedisBroker.ackKeys(layout, owner: owner) + listKeys.map { RedisArgument($0) }
            queueArguments = listKeys.map { RedisArgument(queueOfKey[$0] ?? $0) }
        }
    }

    /// The keys of a reserve from `queues` for `owner`, in this broker's layout, for ``reserve(_:max:)``.
    public func reserveOrder(queues: [String], owner: String) -> ReserveOrder {
        ReserveOrder(queues: queues, owner: owner, layout: layout)
    }

    /// ``reserve(queues:max:owner:)`` with the keys worked out beforehand (``ReserveOrder``).
    public func reserve(_ order: ReserveOrder, max: Int) throws(RedisError) -> [ReservedMessage] {
        try reserved(try sendReserve(order, max: max))
    }

    /// A reserve sent by ``sendReserve(_:max:)`` whose messages are still to be read (``reserved(_:)``).
    public struct SentReserve: Sendable {
        let order: ReserveOrder
        /// Nil when there was nothing to ask for (no queues, or `max` ≤ 0): nothing was sent.
        let sent: RedisScript.Sent?
    }

    /// Sends a reserve without waiting for the messages: the script runs on the server while the caller decodes
    /// the batch before. Read them with ``reserved(_:)`` before any other call on this broker's connection.
    public func sendReserve(_ order: ReserveOrder, max: Int) throws(RedisError) -> SentReserve {
        if order.keys.isEmpty || max <= 0 { return SentReserve(order: order, sent: nil) }
        var arguments: [RedisArgument] = []
        arguments.reserveCapacity(order.queueArguments.count + 1)
        arguments.append(RedisArgument(max))
        arguments.append(contentsOf: order.queueArguments)
        return SentReserve(
            order: order,
            sent: try connection.send(KombuRedisScripts.reserve, keys: order.keys, arguments: arguments)
        )
    }

    /// The messages of a reserve sent by ``sendReserve(_:max:)``, as ``reserve(_:max:)`` returns them.
    public func reserved(_ reserve: SentReserve) throws(RedisError) -> [ReservedMessage] {
        guard let sent = reserve.sent else { return [] }
        let queueOfKey = reserve.order.queueOfKey
        let reply = try connection.reply(to: sent)
        guard let elements = reply.array, elements.count % 3 == 0 else {
            throw Self.unexpected(KombuRedisScripts.reserve, reply)
        }
        var messages: [ReservedMessage] = []
        messages.reserveCapacity(elements.count / 3)
        var index = 0
        while index < elements.count {
            guard let key = elements[index].string, let payload = elements[index + 1].bytes else {
                throw Self.unexpected(KombuRedisScripts.reserve, reply)
            }
            messages.append(
                ReservedMessage(
                    queueKey: key,
                    queue: queueOfKey[key] ?? layout.queueName(fromKey: key) ?? key,
                    payload: payload,
                    deliveryTag: elements[index + 2].string
                )
            )
            index += 3
        }
        return messages
    }

    /// Blocks until the first list in consume order (``KombuRedisLayout/consumeKeyOrder(queues:)``) holds a
    /// message, or `timeout` passes, without taking anything: `true` when a message is there.
    ///
    /// It sends `BLMOVE k k RIGHT RIGHT timeout`, which atomically moves the list's last element to where it was,
    /// so the list is unchanged and nothing ever leaves Redis outside a script that records it in `unacked` (Redis
    /// ≥ 6.2). Other clients blocked on the same list (Python workers) are still served. Only that one list is
    /// watched: a message pushed to another queue or priority list is noticed by the next ``reserve(queues:max:owner:)``,
    /// so callers must call `reserve` at least every `timeout`, which bounds the extra latency for those lists. With
    /// several queues or priorities, a ``KombuQueueWatcher`` watches every list at once and has no such latency.
    public func waitForMessages(queues: [String], timeout: Duration) throws(RedisError) -> Bool {
        precondition(timeout > .zero, "a wait needs a positive timeout (BLMOVE with 0 would block forever)")
        guard let first = layout.consumeKeyOrder(queues: queues).first else { return false }
        let key = RedisArgument(first)
        let reply = try connection.commandAllowingDelay(
            ["BLMOVE", key, key, "RIGHT", "RIGHT", RedisArgument(Self.seconds(timeout))],
            extra: timeout
        )
        if case .error(let text) = reply {
            throw RedisError(code: .server, message: "BLMOVE on \(RedisReply.escaped(first.utf8)) failed", cause: text)
        }
        return !reply.isNull
    }

    /// Acknowledges delivered messages in one round trip: `ZREM unacked_index`, `HDEL unacked`, `SREM` the owner's
    /// set. Returns how many were still in `unacked`; fewer than `tags.count` means some were already restored by a
    /// visibility sweep (and may run again elsewhere) or acked before.
    @discardableResult
    public func ack(tags: [String], owner: String) throws(RedisError) -> Int {
        if tags.isEmpty { return 0 }
        let reply = try connection.run(
            KombuRedisScripts.ack,
            keys: ackKeys(owner: owner),
            arguments: tags.map { RedisArgument($0) }
        )
        guard let removed = reply.integer else { throw Self.unexpected(KombuRedisScripts.ack, reply) }
        return Int(removed)
    }

    /// The keys of ``KombuRedisScripts/ack``.
    func ackKeys(owner: String) -> [RedisArgument] { Self.ackKeys(layout, owner: owner) }

    /// `unacked`, `unacked_index` and the owner's reserved set: the keys every ack and reserve script starts with.
    static func ackKeys(_ layout: KombuRedisLayout, owner: String) -> [RedisArgument] {
        [
            RedisArgument(layout.unackedKey), RedisArgument(layout.unackedIndexKey),
            RedisArgument(layout.reservedKey(owner: owner)),
        ]
    }

    /// Rejects a delivered message. Without requeue it is dropped, exactly like an ack. With requeue it goes back to
    /// the *tail* of its queue (LPUSH, kombu's `reject(requeue=True)`), routed by its exchange and routing key to the
    /// list for its priority, with `headers.redelivered` and `properties.delivery_info.redelivered` set to `true` as
    /// kombu's `_do_restore_message` does.
    ///
    /// Returns whether the message was still in `unacked` (requeued or dropped).
    @discardableResult
    public func reject(tag: String, owner: String, requeue: Bool) throws(RedisError) -> Bool {
        guard requeue else { return try ack(tags: [tag], owner: owner) == 1 }
        let reply = try connection.run(
            KombuRedisScripts.requeue,
            keys: restoreKeys(owner: owner),
            arguments: [
                RedisArgument(layout.globalKeyPrefix), RedisArgument(KombuRedisLayout.separator), RedisArgument(tag),
            ]
        )
        guard let result = reply.integer else { throw Self.unexpected(KombuRedisScripts.requeue, reply) }
        return result != 0
    }

    /// Gives back delivered messages that never started, to the *head* of their queues (RPUSH, like kombu's restore),
    /// with the redelivered marks, one after the other in the order given: `tags` newest delivery first, so the
    /// earliest ends up next in line (and two calls, the newer tags first, keep that order). Returns how many were
    /// still in `unacked` and went back.
    @discardableResult
    public func restore(tags: [String], owner: String) throws(RedisError) -> Int {
        if tags.isEmpty { return 0 }
        let reply = try connection.run(
            KombuRedisScripts.restore,
            keys: restoreKeys(owner: owner),
            arguments: [RedisArgument(layout.globalKeyPrefix), RedisArgument(KombuRedisLayout.separator)]
                + tags.map { RedisArgument($0) }
        )
        guard let restored = reply.integer else { throw Self.unexpected(KombuRedisScripts.restore, reply) }
        return Int(restored)
    }

    /// Gives back every message this owner still holds: each tag in the owner's set that is still in `unacked` is
    /// pushed to the *head* of its queue (RPUSH, like kombu's restore) with the redelivered marks and removed from
    /// `unacked`/`unacked_index`; then the owner's set is deleted. The earliest delivery ends up next in line.
    ///
    /// Call it when a consumer starts (for what a crashed predecessor with the same owner name held) and at warm
    /// shutdown for messages reserved but not started. One script.
    @discardableResult
    public func restoreOwned(owner: String) throws(RedisError) -> KombuRestoreResult {
        let reply = try connection.run(
            KombuRedisScripts.restoreOwned,
            keys: restoreKeys(owner: owner),
            arguments: [RedisArgument(layout.globalKeyPrefix), RedisArgument(KombuRedisLayout.separator)]
        )
        guard let counts = reply.array, counts.count == 2, let restored = counts[0].integer,
            let parked = counts[1].integer
        else { throw Self.unexpected(KombuRedisScripts.restoreOwned, reply) }
        return KombuRestoreResult(restored: Int(restored), parked: Int(parked))
    }

    /// kombu's visibility-timeout sweep (`QoS.restore_visible`): restores messages delivered more than
    /// `visibilityTimeout` ago, whoever holds them, to the head of their queues with the redelivered marks.
    ///
    /// Like kombu, it takes `unacked_mutex` first (`SET unacked_mutex <token> NX PX 300000`) and does nothing when
    /// another process holds it; it releases the mutex with a compare-and-delete script. The restoring itself runs
    /// in chunks of at most 100 entries, each chunk one script, so a large backlog never blocks Redis for long and a
    /// crash mid-sweep loses nothing. Times are the Redis server's clock (Python uses its own clock: keep the
    /// hosts in sync).
    ///
    /// - Parameter limit: the most entries to examine in this sweep (kombu's `unacked_restore_limit`); `nil` for all.
    @discardableResult
    public func restoreVisible(visibilityTimeout: Duration, limit: Int? = nil) throws(RedisError)
        -> KombuRestoreResult
    {
        let token = RedisArgument(Self.randomToken())
        let mutex = RedisArgument(layout.unackedMutexKey)
        let start = try connection.pipeline([["SET", mutex, token, "NX", "PX", "300000"], ["TIME"]])
        if let text = start[0].errorMessage ?? start[1].errorMessage {
            throw RedisError(code: .server, message: "taking unacked_mutex failed", cause: text)
        }
        guard start[0].isOK else { return KombuRestoreResult(skippedBecauseMutexHeld: true) }
        guard let time = start[1].array, time.count == 2, let seconds = time[0].integer,
            let microseconds = time[1].integer
        else {
            throw RedisError(code: .protocol, message: "TIME returned \(start[1])")
        }
        let ceiling = Double(seconds) + Double(microseconds) / 1_000_000 - Self.seconds(visibilityTimeout)

        var result = KombuRestoreResult()
        do throws(RedisError) {
            var remaining = limit ?? Int.max
            let keys = [
                RedisArgument(layout.unackedKey), RedisArgument(layout.unackedIndexKey), mutex,
                RedisArgument(layout.unrestorableKey),
            ]
            while remaining > 0 {
                let chunk = min(100, remaining)
                let reply = try connection.run(
                    KombuRedisScripts.restoreVisibleChunk,
                    keys: keys,
                    arguments: [
                        RedisArgument(layout.globalKeyPrefix), RedisArgument(KombuRedisLayout.separator), token,
                        RedisArgument(ceiling), RedisArgument(chunk),
                    ]
                )
                guard let counts = reply.array, counts.count == 3, let restored = counts[0].integer,
                    let parked = counts[1].integer, let examined = counts[2].integer
                else { throw Self.unexpected(KombuRedisScripts.restoreVisibleChunk, reply) }
                if restored < 0 { return result }  // the mutex expired and is someone else's now
                result.restored += Int(restored)
                result.parked += Int(parked)
                remaining -= chunk
                if examined < chunk { break }
            }
        } catch {
            // Give the mutex back unless the connection is gone (then it expires in 5 minutes).
            if !error.breaksConnection {
                _ = try? connection.run(KombuRedisScripts.releaseMutex, keys: [mutex], arguments: [token])
            }
            throw error
        }
        _ = try connection.run(KombuRedisScripts.releaseMutex, keys: [mutex], arguments: [token])
        return result
    }

    /// Moves the delivery time of held messages to now (`ZADD unacked_index XX <now> <tag>`), so that no visibility
    /// sweep (ours or Python's) restores a task that is still running or waiting for its ETA. Harmless for Python.
    /// Returns how many of the tags were still indexed; fewer means some were restored or acked meanwhile.
    @discardableResult
    public func refresh(tags: [String]) throws(RedisError) -> Int {
        if tags.isEmpty { return 0 }
        let reply = try connection.run(
            KombuRedisScripts.refresh,
            keys: [RedisArgument(layout.unackedIndexKey)],
            arguments: tags.map { RedisArgument($0) }
        )
        guard let present = reply.integer else { throw Self.unexpected(KombuRedisScripts.refresh, reply) }
        return Int(present)
    }

    /// Publishes an envelope the way a Python client sends a task to a queue: `SADD` the queue's binding to
    /// `_kombu.binding.<queue>` and `_kombu.binding_permanent.<queue>`, then `LPUSH` the envelope to the list for
    /// `priority` (0–9, 0 highest; see ``KombuRedisLayout/priorityBucket(_:)``). One round trip.
    ///
    /// The envelope should carry the same `properties.priority` and `delivery_info` (`exchange: ""`,
    /// `routing_key: queue`) so that a restore routes it back to the same list.
    public func publish(envelope: [UInt8], queue: String, priority: Int = 0) throws(RedisError) {
        let member = RedisArgument(KombuRedisLayout.bindingMember(routingKey: queue, queue: queue))
        try Self.check(
            try connection.pipeline([
                ["SADD", RedisArgument(layout.bindingKey(exchange: queue)), member],
                ["SADD", RedisArgument(layout.permanentBindingKey(exchange: queue)), member],
                ["LPUSH", RedisArgument(layout.queueKey(queue: queue, priority: priority)), RedisArgument(envelope)],
            ]),
            "publishing to \(queue)"
        )
    }

    // MARK: - Private

    private func restoreKeys(owner: String) -> [RedisArgument] {
        [
            RedisArgument(layout.unackedKey), RedisArgument(layout.unackedIndexKey),
            RedisArgument(layout.reservedKey(owner: owner)), RedisArgument(layout.unrestorableKey),
        ]
    }

    private static func check(_ replies: [RedisReply], _ what: String) throws(RedisError) {
        if let text = replies.lazy.compactMap(\.errorMessage).first {
            throw RedisError(code: .server, message: "\(what) failed", cause: text)
        }
    }

    static func unexpected(_ script: RedisScript, _ reply: RedisReply) -> RedisError {
        RedisError(code: .script, message: "script \(script.name) returned an unexpected reply", cause: "\(reply)")
    }

    static func seconds(_ duration: Duration) -> Double {
        let (seconds, attoseconds) = duration.components
        return Double(seconds) + Double(attoseconds) / 1e18
    }

    /// 128 random bits in hex, like the uuid1 hex redis-py uses for lock tokens.
    private static func randomToken() -> String {
        var generator = SystemRandomNumberGenerator()
        let high = generator.next() as UInt64
        let low = generator.next() as UInt64
        let text = String(high, radix: 16) + String(low, radix: 16)
        return "swiftq-" + text
    }
}
