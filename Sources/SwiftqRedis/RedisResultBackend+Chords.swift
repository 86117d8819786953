/// Chords on Celery's Redis result backend, worker side, in the layout of Celery 5.7's `RedisBackend`
/// (`celery/backends/redis.py`, 5.7.0; celery-wire-protocol.md §3.7), so that Python 5.7 workers and swiftqd can
/// share one chord's header:
///
/// - `celery-taskset-meta-<gid>.s`: the chord size, set by the client.
/// - `….t`: extra members added by `add_to_chord` (usually missing).
/// - `….j`: a sorted set of `[1, "<tid>", "<STATE>", <result>]` JSON entries scored by `group_index` (`+inf` without).
/// - `….d`: a set of `"<tid>:<score>"`, so a redelivered header task counts once.
/// - `….c`: the claim of whoever publishes the body: a random token (`SET NX EX`), `done` for a while after cleanup,
///   so that a late duplicate neither recreates the chord nor fires it again.
///
/// The scripts below are swiftq's own, with the same keys, values and outcomes as Celery's.
extension RedisResultBackend {
    /// What ``chordPartReturn(_:)`` found.
    public struct ChordPartReply: Sendable, Equatable {
        /// How many distinct parts are recorded; -1 when the chord was already completed and cleaned up.
        public var readyCount: Int
        /// `.t`, 0 when missing.
        public var totalDiff: Int
        /// `.s`; nil when missing (expired, or dropped after a chord error).
        public var size: Int?
        /// Whether this call took the body's dispatch claim.
        public var claimed: Bool

        public init(readyCount: Int, totalDiff: Int, size: Int?, claimed: Bool) {
            self.readyCount = readyCount
            self.totalDiff = totalDiff
            self.size = size
            self.claimed = claimed
        }

        /// Every part is recorded.
        public var isComplete: Bool {
            guard let size, readyCount >= 0 else { return false }
            return readyCount == size + totalDiff
        }
    }

    /// One header task's part.
    public struct ChordPartRequest: Sendable, Equatable {
        public var groupID: String
        /// The `.d` member, `"<tid>:<score>"`.
        public var member: String
        /// The `.j` entry.
        public var entry: [UInt8]
        /// `group_index`, or nil for `+inf`.
        public var groupIndex: Int?
        /// `result_chord_expires` (else `result_expires`), seconds; 0 for none.
        public var expires: Int
        /// How long the claim lives before another worker may take it over, seconds.
        public var claimExpires: Int
        /// This worker's claim token.
        public var token: String

        public init(
            groupID: String,
            member: String,
            entry: [UInt8],
            groupIndex: Int?,
            expires: Int,
            claimExpires: Int,
            token: String
        ) {
            self.groupID = groupID
            self.member = member
            self.entry = entry
            self.groupIndex = groupIndex
            self.expires = expires
            self.claimExpires = claimExpires
            self.token = token
        }
    }

    /// Records a part unless already recorded; refreshes the chord's expiries; takes the claim when the chord is
    /// complete and nobody holds it.
    ///
    /// KEYS: `.j`, `.t`, `.s`, `.d`, the group key, `.c`. ARGV: member, entry, score, expires, claim expires, token.
    static let chordPartScript = RedisScript(
        name: "celery.chordPartReturn",
        source: #"""
            if redis.call('GET', KEYS[6]) == 'done' then return {-1, 0, -1, 0} end
            if redis.call('SADD', KEYS[4], ARGV[1]) == 1 then
              redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
            end
            local count = redis.call('ZCARD', KEYS[1])
            local expires = tonumber(ARGV[4])
            if expires > 0 then
              redis.call('EXPIRE', KEYS[1], expires)
              redis.call('EXPIRE', KEYS[2], expires)
              redis.call('EXPIRE', KEYS[3], expires)
              redis.call('EXPIRE', KEYS[4], expires)
              redis.call('EXPIRE', KEYS[5], expires)
            end
            local diff = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
            local size = redis.call('GET', KEYS[3])
            if not size then return {count, diff, -1, 0} end
            size = tonumber(size)
            local claimed = 0
            if count == size + diff and redis.call('SET', KEYS[6], ARGV[6], 'NX', 'EX', ARGV[5]) then
              claimed = 1
            end
            return {count, diff, size, claimed}
            """#
    )

    /// Releases a claim this worker holds: the chord's keys go, `.c` becomes `done` for `ARGV[2]` seconds.
    ///
    /// KEYS: `.c`, `.j`, `.t`, `.s`, `.d`. ARGV: token, done expiry.
    static let chordCleanupScript = RedisScript(
        name: "celery.chordCleanup",
        source: #"""
            if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
            redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5])
            redis.call('SET', KEYS[1], 'done', 'EX', ARGV[2])
            return 1
            """#
    )

    /// `celery-taskset-meta-<gid><suffix>`, with the global prefix.
    public func groupKey(_ groupID: String, _ suffix: String = "") -> String {
        String(keyPrefix.dropLast("celery-task-meta-".count)) + "celery-taskset-meta-" + groupID + suffix
    }

    /// Records one header task's part (see ``chordPartScript``).
    public func chordPartReturn(_ part: ChordPartRequest) throws(RedisError) -> ChordPartReply {
        let gid = part.groupID
        let reply = try connection.run(
            Self.chordPartScript,
            keys: [
                RedisArgument(groupKey(gid, ".j")), RedisArgument(groupKey(gid, ".t")),
                RedisArgument(groupKey(gid, ".s")), RedisArgument(groupKey(gid, ".d")),
                RedisArgument(groupKey(gid)), RedisArgument(groupKey(gid, ".c")),
            ],
            arguments: [
                RedisArgument(part.member), RedisArgument(part.entry),
                RedisArgument(part.groupIndex.map(String.init) ?? "+inf"), RedisArgument(part.expires),
                RedisArgument(part.claimExpires), RedisArgument(part.token),
            ]
        )
        guard let items = reply.array, items.count == 4, let count = items[0].integer, let diff = items[1].integer,
            let size = items[2].integer, let claimed = items[3].integer
        else {
            throw RedisError(code: .script, message: "script \(Self.chordPartScript.name) returned \(reply)")
        }
        return ChordPartReply(
            readyCount: Int(count),
            totalDiff: Int(diff),
            size: size < 0 ? nil : Int(size),
            claimed: claimed == 1
        )
    }

    /// The recorded parts in `group_index` order.
    public func chordEntries(_ groupID: String) throws(RedisError) -> [[UInt8]] {
        let reply = try connection.command("ZRANGE", RedisArgument(groupKey(groupID, ".j")), "0", "-1")
        return (reply.array ?? []).compactMap(\.bytes)
    }

    /// The `GroupResult` Celery's client saved for a chord whose header holds groups (`celery-taskset-meta-<gid>`:
    /// `{"result": <result tuple>}`), so that the body gets the header's results in their nested shape; nil when
    /// there is none (a flat header).
    public func savedGroupResult(_ groupID: String) throws(RedisError) -> [UInt8]? {
        let reply = try connection.command("GET", RedisArgument(groupKey(groupID)))
        return reply.isNull ? nil : reply.bytes
    }

    /// The stored metas of many tasks in one `MGET`, in the order asked; nil where there is none (`PENDING`).
    public func getMany(taskIDs: [String]) throws(RedisError) -> [[UInt8]?] {
        guard !taskIDs.isEmpty else { return [] }
        let reply = try connection.command(["MGET"] + taskIDs.map { RedisArgument(key(taskID: $0)) })
        let items = reply.array ?? []
        guard items.count == taskIDs.count else {
            throw RedisError(code: .protocol, message: "MGET of \(taskIDs.count) keys returned \(items.count) values")
        }
        return items.map { $0.isNull ? nil : $0.bytes }
    }

    /// Releases this worker's claim and removes the chord's keys; false when the claim was no longer ours.
    @discardableResult
    public func chordCleanup(_ groupID: String, token: String, doneExpires: Int = 300) throws(RedisError) -> Bool {
        let reply = try connection.run(
            Self.chordCleanupScript,
            keys: [
                RedisArgument(groupKey(groupID, ".c")), RedisArgument(groupKey(groupID, ".j")),
                RedisArgument(groupKey(groupID, ".t")), RedisArgument(groupKey(groupID, ".s")),
                RedisArgument(groupKey(groupID, ".d")),
            ],
            arguments: [RedisArgument(token), RedisArgument(doneExpires)]
        )
        return reply.integer == 1
    }

    /// Starts a chord as Celery's `set_chord_size` does: `.c` deleted (a re-applied chord is a new run), then `.s` =
    /// `size`, expiring after `expires` seconds (0: never).
    public func setChordSize(_ groupID: String, size: Int, expires: Int) throws(RedisError) {
        _ = try connection.command("DEL", RedisArgument(groupKey(groupID, ".c")))
        if expires > 0 {
            _ = try connection.command(
                "SET",
                RedisArgument(groupKey(groupID, ".s")),
                RedisArgument(size),
                "EX",
                RedisArgument(expires)
            )
        } else {
            _ = try connection.command("SET", RedisArgument(groupKey(groupID, ".s")), RedisArgument(size))
        }
    }

    /// Counts `count` more members of a chord (Celery's `add_to_chord`: `INCR` of `.t`), expiring with the chord's
    /// other keys after `expires` seconds (0: never).
    public func addToChord(_ groupID: String, count: Int = 1, expires: Int) throws(RedisError) {
        _ = try connection.command("INCRBY", RedisArgument(groupKey(groupID, ".t")), RedisArgument(count))
        if expires > 0 {
            _ = try connection.command("EXPIRE", RedisArgument(groupKey(groupID, ".t")), RedisArgument(expires))
        }
    }

    /// Drops the chord size after a chord error, so a late copy of a header task does not fail it again.
    public func chordDropSize(_ groupID: String) throws(RedisError) {
        _ = try connection.command("DEL", RedisArgument(groupKey(groupID, ".s")))
    }
}
