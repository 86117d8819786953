/// Incarnations: each consumer start of a node is its own owner of reservations, so that two daemons that share a
/// node name (two `celery@%h` on one host) never give back each other's messages (REVIEW D2).
///
/// An incarnation `<node>#<id>` is listed in `swiftq.incarnations.<node>` and keeps `swiftq.alive.<owner>` alive
/// with a TTL. One whose key expired stopped heartbeating (killed, or cut off longer than the TTL): a later start of
/// the same node gives back its reservations at once instead of waiting for the visibility timeout.
extension KombuRedisLayout {
    /// `swiftq.incarnations.<node>`: the owners that ever started for a node and have not retired.
    public func incarnationsKey(node: String) -> String { globalKeyPrefix + "swiftq.incarnations." + node }
    /// `swiftq.alive.<owner>`: present while that incarnation heartbeats.
    public func aliveKey(owner: String) -> String { globalKeyPrefix + "swiftq.alive." + owner }
    /// The owner name of one incarnation of a node.
    public static func owner(node: String, incarnation: String) -> String { node + "#" + incarnation }
}

extension KombuRedisBroker {
    /// Lists the incarnation and (re)sets its alive key with `ttl`. One round trip; call it well within `ttl`.
    public func heartbeat(node: String, owner: String, ttl: Duration) throws(RedisError) {
        let milliseconds = max(1, Int(Self.seconds(ttl) * 1000))
        let replies = try connection.pipeline([
            ["SADD", RedisArgument(layout.incarnationsKey(node: node)), RedisArgument(owner)],
            ["SET", RedisArgument(layout.aliveKey(owner: owner)), "1", "PX", RedisArgument(milliseconds)],
        ])
        if let text = replies.lazy.compactMap(\.errorMessage).first {
            throw RedisError(code: .server, message: "heartbeat of \(owner) failed", cause: text)
        }
    }

    /// The node's other incarnations, split into those still heartbeating and those that stopped (or that
    /// `knownDead` says are, whatever their key says).
    public func incarnations(
        node: String,
        except owner: String,
        knownDead: (String) -> Bool = { _ in false }
    ) throws(RedisError) -> (live: [String], dead: [String]) {
        let members = try connection.command("SMEMBERS", RedisArgument(layout.incarnationsKey(node: node)))
        let others = (members.array?.compactMap(\.string) ?? []).filter { $0 != owner }.sorted()
        if others.isEmpty { return ([], []) }
        let replies = try connection.pipeline(others.map { ["EXISTS", RedisArgument(layout.aliveKey(owner: $0))] })
        var live: [String] = []
        var dead: [String] = []
        for (other, reply) in zip(others, replies) {
            if reply.integer == 1 && !knownDead(other) { live.append(other) } else { dead.append(other) }
        }
        return (live, dead)
    }

    /// Gives back what the node's dead incarnations held and forgets them; returns how many messages and the live
    /// incarnations other than `owner` (a duplicate node name when not empty).
    public func recoverDeadIncarnations(
        node: String,
        except owner: String,
        knownDead: (String) -> Bool = { _ in false }
    ) throws(RedisError) -> (restored: Int, live: [String]) {
        let (live, dead) = try incarnations(node: node, except: owner, knownDead: knownDead)
        var restored = 0
        for other in dead {
            restored += try restoreOwned(owner: other).restored
            try connection.command("SREM", RedisArgument(layout.incarnationsKey(node: node)), RedisArgument(other))
        }
        return (restored, live)
    }

    /// Forgets a stopping incarnation (after it gave its reservations back).
    public func retire(node: String, owner: String) throws(RedisError) {
        _ = try connection.pipeline([
            ["SREM", RedisArgument(layout.incarnationsKey(node: node)), RedisArgument(owner)],
            ["DEL", RedisArgument(layout.aliveKey(owner: owner))],
        ])
    }
}
