/// The names kombu's Redis transport uses for queues, bindings and unacked bookkeeping: pure string logic, so that
/// swiftq and Python Celery workers read and write the same keys (celery-wire-protocol.md §2.2, §2.4, §2.7).
///
/// Every key this type returns already carries ``globalKeyPrefix``, which kombu puts verbatim (no separator added)
/// in front of every key it uses.
public struct KombuRedisLayout: Sendable, Equatable {
    /// kombu's separator inside priority keys and binding members: `"\x06\x16"`.
    public static let separator = "\u{06}\u{16}"
    /// kombu's priority buckets. 0 is the highest priority on Redis (the reverse of RabbitMQ).
    public static let prioritySteps = [0, 3, 6, 9]

    /// kombu's `global_keyprefix` transport option, applied verbatim; empty for none.
    public var globalKeyPrefix: String

    /// A layout with kombu's default key names.
    public init(globalKeyPrefix: String = "") {
        self.globalKeyPrefix = globalKeyPrefix
    }

    /// The bucket a message priority falls in: `steps[bisect(steps, p) - 1]` with the priority clamped to 0…9,
    /// as kombu computes it. 0–2 → 0, 3–5 → 3, 6–8 → 6, 9 → 9.
    public static func priorityBucket(_ priority: Int) -> Int {
        let clamped = min(max(priority, 0), 9)
        return prioritySteps.last { $0 <= clamped } ?? 0
    }

    /// The list a message of this priority is pushed to: the queue name for bucket 0, `queue + "\x06\x16" + bucket`
    /// otherwise.
    public func queueKey(queue: String, priority: Int) -> String {
        let bucket = Self.priorityBucket(priority)
        return globalKeyPrefix + queue + (bucket == 0 ? "" : Self.separator + String(bucket))
    }

    /// The keys to take messages from, best first: bucket-major, then queue (`q1 q2 q1\x06\x163 q2\x06\x163 …`),
    /// exactly the `BRPOP` key order of a Python worker. A priority-0 message in any queue comes before a
    /// priority-3 message in the first queue. Duplicate queue names are dropped.
    ///
    /// kombu rotates the queue order after each message (round robin); callers that want the same fairness rotate
    /// `queues` between calls.
    public func consumeKeyOrder(queues: [String]) -> [String] {
        var unique: [String] = []
        for queue in queues where !unique.contains(queue) { unique.append(queue) }
        return Self.prioritySteps.flatMap { bucket in unique.map { queueKey(queue: $0, priority: bucket) } }
    }

    /// The queue a list key belongs to: the prefix and any priority suffix removed (kombu's
    /// `key.rsplit(sep, 1)[0]`); `nil` for a key without ``globalKeyPrefix``.
    public func queueName(fromKey key: String) -> String? {
        guard key.hasPrefix(globalKeyPrefix) else { return nil }
        let name = key.dropFirst(globalKeyPrefix.count)
        if let range = name.ranges(of: Self.separator).last {
            return String(name[..<range.lowerBound])
        }
        return String(name)
    }

    /// A binding set member: `routing_key + sep + pattern + sep + queue`. The pattern is empty for direct and
    /// fanout exchanges.
    public static func bindingMember(routingKey: String, pattern: String = "", queue: String) -> String {
        routingKey + separator + pattern + separator + queue
    }

    /// `_kombu.binding.<exchange>`: the set of bindings of an exchange.
    public func bindingKey(exchange: String) -> String {
        globalKeyPrefix + "_kombu.binding." + exchange
    }

    /// `_kombu.binding_permanent.<exchange>` (kombu 5.7): the same members, for queues that do not expire.
    public func permanentBindingKey(exchange: String) -> String {
        globalKeyPrefix + "_kombu.binding_permanent." + exchange
    }

    /// `unacked`: delivery tag → `[envelope, exchange, routing_key]`.
    public var unackedKey: String { globalKeyPrefix + "unacked" }
    /// `unacked_index`: delivery tag → delivery time (float seconds), and ``indexEncodingMember`` at `+inf`.
    public var unackedIndexKey: String { globalKeyPrefix + "unacked_index" }
    /// The one member of `unacked_index` that is not a delivery tag, scored `+inf` (no sweep, kombu's or ours,
    /// reaches it: they take the scores up to now minus the visibility timeout). It is longer than Redis'
    /// `zset-max-listpack-value` (64), so the index is a skiplist at any size: a small sorted set is a listpack, whose
    /// every insert walks all members and parses each one's score from its text, which made recording a delivery
    /// cost the server more than anything else the reserve script does. The reserve script adds it.
    public static let indexEncodingMember =
        "swiftq: keeps this index a skiplist (longer than zset-max-listpack-value); not a delivery tag"
    /// `unacked_mutex`: the lock a restore sweep holds.
    public var unackedMutexKey: String { globalKeyPrefix + "unacked_mutex" }

    /// `swiftq.reserved.<owner>`: the delivery tags one consumer holds, so that a restarted consumer gives back
    /// exactly its own deliveries. swiftq's own key; kombu neither reads nor writes it.
    public func reservedKey(owner: String) -> String {
        globalKeyPrefix + "swiftq.reserved." + owner
    }

    /// `swiftq.unrestorable`: unacked entries that could not be read or routed during a restore, parked here
    /// (tag → the stored value) so they are neither lost nor retried forever. swiftq's own key.
    public var unrestorableKey: String { globalKeyPrefix + "swiftq.unrestorable" }
}
