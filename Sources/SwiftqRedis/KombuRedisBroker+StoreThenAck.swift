extension KombuRedisBroker {
    /// Stores results as ``RedisResultBackend/storeBatch(_:)`` does, then acks as ``ack(tags:owner:)`` does, in one
    /// script: one round trip where there were two, for a result backend on the broker's server. The acks come after
    /// every store, in the same script; a store that fails on the server ends the script before them, so a result
    /// is always stored before its message is acked, as with two round trips.
    ///
    /// The backend may use another database of the same server: the script selects it for the stores and the
    /// broker's again for the acks (a script's `SELECT` is the script's own; the connection stays in its database).
    ///
    /// KEYS: unacked, unacked_index, owner set, then one result key per result. ARGV: the backend's database and
    /// the broker's (both empty when they are the same), then per result its meta, its expiry unit (`EX`, `PX` or
    /// empty) and TTL (or empty), then the tags. Returns per result 1 (stored) or 0 (a SUCCESS was there, left
    /// alone), then how many tags were still in `unacked`.
    static let storeThenAck = RedisScript(
        name: "swiftq.storeThenAck",
        source: RedisResultBackend.storeFunction + KombuRedisScripts.ackFunction + #"""
            local results = #KEYS - 3
            local out = {}
            if ARGV[1] ~= '' then redis.call('SELECT', ARGV[1]) end
            for i = 1, results do
              out[i] = store_result(KEYS[i + 3], ARGV[3 * i], ARGV[3 * i + 1], ARGV[3 * i + 2])
            end
            if ARGV[2] ~= '' then redis.call('SELECT', ARGV[2]) end
            out[results + 1] = ack_tags(3 * results + 3)
            return out
            """#
    )

    /// Stores `items` under `backend`'s keys in its `database`, then acks `tags`, in one script (``storeThenAck``) on
    /// this broker's connection, with `messages` (Celery's events) published in the same round trip: per item
    /// whether it was stored, how many tags the ack removed, and what ``publishFanout(_:)`` returns for the
    /// messages. Only for a backend on the broker's server (``RedisTarget/isSameServer(as:)``).
    ///
    /// - Throws: ``RedisError`` when the round trip fails, or the script failed on the server: then no tag was
    ///   acked, and results before the failing one may be stored (storing again does not change a `SUCCESS`).
    public func store(
        _ items: [ResultStoreItem],
        in backend: RedisResultBackend,
        database: Int,
        thenAck tags: [String],
        owner: String,
        publishing messages: [FanoutMessage]
    ) throws(RedisError) -> (stored: [Bool], removed: Int, reached: [Int?]) {
        var keys = ackKeys(owner: owner)
        var arguments: [RedisArgument] = []
        keys.reserveCapacity(3 + items.count)
        arguments.reserveCapacity(2 + 3 * items.count + tags.count)
        let own = connection.url.database
        arguments += database == own ? ["", ""] : [RedisArgument(database), RedisArgument(own)]
        for item in items {
            keys.append(RedisArgument(backend.key(taskID: item.taskID)))
            arguments.append(RedisArgument(item.meta))
            let expiry = RedisResultBackend.expiry(item.expires)
            arguments += expiry.isEmpty ? ["", ""] : expiry
        }
        for tag in tags { arguments.append(RedisArgument(tag)) }
        let replies = try connection.runPipelined(
            Self.storeThenAck,
            calls: [RedisScript.Call(keys: keys, arguments: arguments)],
            after: fanoutCommands(messages)
        )
        let reply = try replies.calls[0].orThrow(Self.storeThenAck)
        guard let values = reply.array, values.count == items.count + 1,
            let removed = values[items.count].integer
        else { throw Self.unexpected(Self.storeThenAck, reply) }
        var stored: [Bool] = []
        stored.reserveCapacity(items.count)
        for value in values[..<items.count] {
            guard let flag = value.integer else { throw Self.unexpected(Self.storeThenAck, reply) }
            stored.append(flag == 1)
        }
        return (stored, Int(removed), Self.reached(replies.commands))
    }
}
