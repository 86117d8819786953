/// One result to store with ``RedisResultBackend/storeBatch(_:)``.
public struct ResultStoreItem: Sendable, Equatable {
    /// The task id.
    public var taskID: String
    /// The result meta JSON (celery-wire-protocol.md §3.2), stored and published as is.
    public var meta: [UInt8]
    /// How long the key lives (`result_expires`); `nil`, zero or negative for no expiry.
    public var expires: Duration?

    /// An item.
    public init(taskID: String, meta: [UInt8], expires: Duration?) {
        self.taskID = taskID
        self.meta = meta
        self.expires = expires
    }
}

/// Celery's Redis result backend, worker side: stores task states where `AsyncResult.get()` finds them
/// (celery-wire-protocol.md §3.1, §3.5).
///
/// Blocking and ownership are those of the connection: one thread, blocking calls.
public struct RedisResultBackend {
    /// The connection every operation uses.
    public let connection: RedisConnection
    /// What precedes the task id in a key: `celery-task-meta-`, after the global prefix if any.
    public let keyPrefix: String

    /// Stores one result: unless the stored state is already `SUCCESS`, `SET key meta [EX|PX ttl]` and
    /// `PUBLISH key meta` (the channel is named exactly like the key, which a waiting client has subscribed to).
    /// Returns 1 when stored, 0 when a SUCCESS was there (Celery never overwrites one).
    ///
    /// KEYS: the result key. ARGV: meta, then `EX`/`PX` and the TTL, or nothing.
    static let storeScript = RedisScript(
        name: "celery.storeResult",
        source: storeFunction + #"""
            return store_result(KEYS[1], ARGV[1], ARGV[2] or '', ARGV[3] or '')
            """#
    )

    /// The Lua function behind every store of a result (``storeScript``, and ``KombuRedisBroker``'s script that
    /// stores results and then acks their messages): `store_result(key, meta, unit, ttl)` does the above, with
    /// `unit` `EX`, `PX` or empty (no expiry), and returns 1 or 0.
    static let storeFunction = #"""
        local function store_result(key, meta, unit, ttl)
          local current = redis.call('GET', key)
          if current then
            local ok, old = pcall(cjson.decode, current)
            if ok and type(old) == 'table' and old.status == 'SUCCESS' then return 0 end
          end
          if unit ~= '' then
            redis.call('SET', key, meta, unit, ttl)
          else
            redis.call('SET', key, meta)
          end
          redis.call('PUBLISH', key, meta)
          return 1
        end

        """#

    /// A backend over a connection.
    ///
    /// - Parameter globalKeyPrefix: `result_backend_transport_options.global_keyprefix`. Unlike the broker's, it
    ///   gets `_` appended unless it already ends in one of `:_-.`.
    public init(connection: RedisConnection, globalKeyPrefix: String = "") {
        self.connection = connection
        self.keyPrefix = Self.effectivePrefix(globalKeyPrefix) + "celery-task-meta-"
    }

    /// The prefix Celery's backend really uses for a configured `global_keyprefix`: `rpfx` becomes `rpfx_`, while
    /// `rpfx:`, `rpfx_`, `rpfx-` and `rpfx.` stay as they are.
    public static func effectivePrefix(_ globalKeyPrefix: String) -> String {
        guard let last = globalKeyPrefix.last else { return "" }
        return ":_-.".contains(last) ? globalKeyPrefix : globalKeyPrefix + "_"
    }

    /// `celery-task-meta-<id>`, with the prefix.
    public func key(taskID: String) -> String {
        keyPrefix + taskID
    }

    /// Stores a task's state, unless a `SUCCESS` is already stored: one script that reads the current value, then
    /// sets the key (with its expiry) and publishes the same bytes on the channel named like the key.
    ///
    /// - Returns: `false` when a `SUCCESS` was already stored and nothing was changed.
    @discardableResult
    public func store(taskID: String, meta: [UInt8], expires: Duration?) throws(RedisError) -> Bool {
        try storeBatch([ResultStoreItem(taskID: taskID, meta: meta, expires: expires)])[0]
    }

    /// Stores many results in one round trip (pipelined `EVALSHA`s), each with the rule of
    /// ``store(taskID:meta:expires:)``. Returns, per item, whether it was stored.
    ///
    /// - Throws: ``RedisError/Code-swift.struct/script`` if any item failed on the server; the others were still
    ///   stored.
    public func storeBatch(_ items: [ResultStoreItem]) throws(RedisError) -> [Bool] {
        let calls = items.map { item in
            RedisScript.Call(
                keys: [RedisArgument(key(taskID: item.taskID))],
                arguments: [RedisArgument(item.meta)] + Self.expiry(item.expires)
            )
        }
        let replies = try connection.runPipelined(Self.storeScript, calls: calls)
        var stored: [Bool] = []
        stored.reserveCapacity(replies.count)
        for reply in replies {
            guard let value = try reply.orThrow(Self.storeScript).integer else {
                throw RedisError(code: .script, message: "script \(Self.storeScript.name) returned \(reply)")
            }
            stored.append(value == 1)
        }
        return stored
    }

    /// The stored meta JSON of a task; `nil` when there is none (Celery reads that as `PENDING`).
    public func get(taskID: String) throws(RedisError) -> [UInt8]? {
        let reply = try connection.command("GET", RedisArgument(key(taskID: taskID)))
        return reply.isNull ? nil : reply.bytes
    }

    /// `EX seconds` for whole seconds (what Celery's `SETEX` sends), `PX milliseconds` otherwise, nothing for no
    /// expiry.
    static func expiry(_ expires: Duration?) -> [RedisArgument] {
        guard let expires, expires > .zero else { return [] }
        let (seconds, attoseconds) = expires.components
        if attoseconds == 0 { return ["EX", RedisArgument(Int(seconds))] }
        let milliseconds = max(1, Int(seconds) * 1000 + Int(attoseconds / 1_000_000_000_000_000))
        return ["PX", RedisArgument(milliseconds)]
    }
}
