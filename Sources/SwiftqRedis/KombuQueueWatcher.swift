/// Wakes a consumer as soon as any of its queue lists changes, on a connection of its own, without taking messages.
///
/// ``KombuRedisBroker/waitForMessages(queues:timeout:)`` can block on one list only (`BLMOVE` takes one source);
/// a blocking command that watches several lists (`BRPOP`, `BLMPOP`) would take the message out of Redis before it
/// is recorded in `unacked`. This type uses Redis' client-side-caching invalidations instead (Redis ≥ 6.0, RESP2):
/// its connection runs `CLIENT TRACKING on REDIRECT <own id> BCAST PREFIX <key>…` for every queue's key prefix,
/// then `SUBSCRIBE __redis__:invalidate`. From then on, every write by anyone to a key starting with a queue's key
/// (`LPUSH celery`, `LPUSH celery\x06\x163`, `RPUSH` by a restore) sends it a message, which ``wait(timeout:)``
/// reports. Nothing needs configuring on the server.
///
/// Wake-ups are hints, never promises: pops by other consumers and our own reserve scripts wake it too, so always
/// follow a wake-up with ``KombuRedisBroker/reserve(queues:max:owner:)`` and wait again when it returns nothing.
/// Messages that arrive while nobody is waiting are buffered, so the next ``wait(timeout:)`` returns at once and none
/// is missed between an empty reserve and the wait. Keys that merely share a prefix (`celery` also covers `celery2`
/// and the `celery-task-meta-…` results Celery stores, in every database: tracking is not per database) are told
/// too; their invalidations name them, and only a queue's own keys (the list and its priority buckets) wake
/// ``wait(timeout:)``.
///
/// Owned by one thread, like its ``RedisConnection`` (blocking calls). To change the set of queues, make a new
/// watcher: a subscribed connection cannot change its tracking.
public final class KombuQueueWatcher {
    /// The subscribed connection.
    public let connection: RedisConnection
    /// The key prefixes registered, after removing any that another one already covers.
    public let prefixes: [String]
    /// Each queue's list key (priority 0): it and `<key>\x06\x16<bucket>` are the keys whose writes wake.
    private let queueKeys: [[UInt8]]

    /// Connects, registers the queues' key prefixes for tracking, and subscribes to the invalidation channel.
    ///
    /// - Parameters:
    ///   - commandTimeout: bounds the setup replies and the read of each invalidation message once it started.
    public convenience init(
        url: RedisURL,
        layout: KombuRedisLayout,
        queues: [String],
        connectTimeout: Duration = .seconds(5),
        commandTimeout: Duration = .seconds(10)
    ) throws(RedisError) {
        try self.init(
            target: .server(url),
            layout: layout,
            queues: queues,
            connectTimeout: connectTimeout,
            commandTimeout: commandTimeout
        )
    }

    /// The same, on the server a ``RedisTarget`` names now (the sentinels' master).
    public init(
        target: RedisTarget,
        layout: KombuRedisLayout,
        queues: [String],
        connectTimeout: Duration = .seconds(5),
        commandTimeout: Duration = .seconds(10)
    ) throws(RedisError) {
        precondition(!queues.isEmpty, "a watcher needs at least one queue")
        let connection = try target.connect(
            connectTimeout: connectTimeout,
            commandTimeout: commandTimeout,
            clientName: "swiftq-queue-watcher"
        )
        let url = connection.url
        let prefixes = Self.nonOverlapping(queues.map { layout.queueKey(queue: $0, priority: 0) })
        guard let id = try connection.command("CLIENT", "ID").integer else {
            throw RedisError(code: .protocol, message: "CLIENT ID on \(url.redacted) did not return an integer")
        }
        var tracking: [RedisArgument] = ["CLIENT", "TRACKING", "ON", "REDIRECT", RedisArgument(Int(id)), "BCAST"]
        for prefix in prefixes { tracking += ["PREFIX", RedisArgument(prefix)] }
        try connection.command(tracking)
        let confirmation = try connection.command("SUBSCRIBE", "__redis__:invalidate")
        guard confirmation.array?.first?.string == "subscribe" else {
            throw RedisError(code: .protocol, message: "SUBSCRIBE on \(url.redacted) returned \(confirmation)")
        }
        self.connection = connection
        self.prefixes = prefixes
        self.queueKeys = queues.map { Array(layout.queueKey(queue: $0, priority: 0).utf8) }
    }

    /// Blocks until a watched list was written since the last call, or `timeout` passes: `true` when something
    /// may have arrived. All invalidations already received are consumed, so a burst of pushes is one wake-up.
    /// Invalidations of other keys under a prefix are read and dropped.
    public func wait(timeout: Duration) throws(RedisError) -> Bool {
        let deadline = ContinuousClock.now + timeout
        var woken = false
        while !woken {
            guard let reply = try connection.receive(timeout: max(.zero, ContinuousClock.now.duration(to: deadline)))
            else { return false }
            woken = wakes(reply)
        }
        while try connection.receive(timeout: .zero) != nil {}
        return true
    }

    /// Whether an invalidation may concern a queue: it names a queue's key, or all keys (a flush), or is not the
    /// message expected (then it wakes, as every one did before keys were looked at).
    func wakes(_ reply: RedisReply) -> Bool {
        guard let parts = reply.array, parts.count == 3, parts[0].string == "message", let keys = parts[2].array
        else { return true }
        return keys.contains { key in
            guard let name = key.bytes else { return true }
            return queueKeys.contains { queue in
                name == queue || (name.starts(with: queue) && name.dropFirst(queue.count).starts(with: Self.separator))
            }
        }
    }

    /// kombu's separator before a priority bucket's number, as bytes.
    private static let separator = Array(KombuRedisLayout.separator.utf8)

    /// The prefixes with every one that starts with another removed: Redis refuses overlapping prefixes on one
    /// client, and the shorter one already covers the longer.
    static func nonOverlapping(_ prefixes: [String]) -> [String] {
        var kept: [String] = []
        for prefix in Set(prefixes).sorted(by: { $0.utf8.count < $1.utf8.count }) {
            let bytes = Array(prefix.utf8)
            if !kept.contains(where: { bytes.starts(with: $0.utf8) }) { kept.append(prefix) }
        }
        return kept.sorted()
    }
}
