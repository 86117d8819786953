import SwiftqConsumer
import SwiftqCore
import SwiftqPool
import SwiftqRedis

/// The beat lease, its fencing counter and the record of published runs, kept in Redis; the I/O half of
/// ``BeatLease``.
///
/// Keys (with `name` = `beat.lock_name`): `name` holds `<node>:<fence>` with a TTL (`SET NX PX` semantics, done
/// in a script so the fence is taken in the same step); `name.fence` is the counter; `name.runs` is a hash from entry
/// name to the scheduled time of its last published run, plus `.fence`, the highest fence that published. Every call
/// blocks the beat process's only thread for one round trip (the beat process does nothing else meanwhile).
final class BeatRedisLock {
    let connection: RedisConnection
    let name: String
    let node: String
    private(set) var value: String?

    init(connection: RedisConnection, name: String, node: String) {
        self.connection = connection
        self.name = name
        self.node = node
    }

    var runsKey: String { "\(name).runs" }

    static let acquireScript = RedisScript(
        name: "beat-acquire",
        source: """
            if redis.call('EXISTS', KEYS[1]) == 1 then return false end
            local fence = redis.call('INCR', KEYS[2])
            redis.call('SET', KEYS[1], ARGV[1] .. ':' .. fence, 'NX', 'PX', ARGV[2])
            return fence
            """
    )
    static let renewScript = RedisScript(
        name: "beat-renew",
        source: """
            if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
            redis.call('HSET', KEYS[2], '.alive', ARGV[3])
            return redis.call('PEXPIRE', KEYS[1], ARGV[2])
            """
    )
    static let releaseScript = RedisScript(
        name: "beat-release",
        source: """
            if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
            redis.call('HSET', KEYS[2], '.alive', ARGV[2])
            return redis.call('DEL', KEYS[1])
            """
    )
    /// Checks the lease and the fence, refuses a run not newer than the recorded one, records it and (on a Redis
    /// broker) pushes the envelope, all in one atomic step. Returns 1 published, 0 already published, -1 fenced off.
    static let publishScript = RedisScript(
        name: "beat-publish",
        source: """
            if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
            local fence = tonumber(redis.call('HGET', KEYS[2], '.fence') or '0')
            if fence > tonumber(ARGV[2]) then return -1 end
            local last = tonumber(redis.call('HGET', KEYS[2], ARGV[3]) or '-1')
            if last >= tonumber(ARGV[4]) then return 0 end
            redis.call('HSET', KEYS[2], '.fence', ARGV[2], ARGV[3], ARGV[4])
            if #KEYS >= 5 then
                redis.call('SADD', KEYS[4], ARGV[6])
                redis.call('SADD', KEYS[5], ARGV[6])
                redis.call('LPUSH', KEYS[3], ARGV[5])
            end
            return 1
            """
    )

    /// Tries to take the lease; returns the new fencing token, or nil when another node holds it.
    func acquire(ttl: Double, now: Double) throws(RedisError) -> Int64? {
        let reply = try connection.run(
            Self.acquireScript,
            keys: [RedisArgument(name), RedisArgument("\(name).fence"), RedisArgument(runsKey)],
            arguments: [RedisArgument(node), RedisArgument(Int(ttl * 1000)), RedisArgument(Self.format(now))]
        )
        guard let fence = reply.integer else { return nil }
        value = "\(node):\(fence)"
        return fence
    }

    /// Extends the lease if it is still ours.
    func renew(ttl: Double, now: Double) throws(RedisError) -> Bool {
        guard let value else { return false }
        let reply = try connection.run(
            Self.renewScript,
            keys: [RedisArgument(name), RedisArgument(runsKey)],
            arguments: [RedisArgument(value), RedisArgument(Int(ttl * 1000)), RedisArgument(Self.format(now))]
        )
        return reply.integer == 1
    }

    func release(now: Double) throws(RedisError) {
        guard let value else { return }
        _ = try connection.run(
            Self.releaseScript,
            keys: [RedisArgument(name), RedisArgument(runsKey)],
            arguments: [RedisArgument(value), RedisArgument(Self.format(now))]
        )
        self.value = nil
    }

    /// Who holds the lease (`<node>:<fence>`), if anyone.
    func holder() throws(RedisError) -> String? {
        try connection.command("GET", RedisArgument(name)).string
    }

    /// The recorded last run of every entry, and when a holder last renewed (or released) the lease.
    func recordedRuns() throws(RedisError) -> (runs: [String: Double], alive: Double?) {
        let reply = try connection.command("HGETALL", RedisArgument(runsKey))
        var result: [String: Double] = [:]
        var alive: Double?
        let items = reply.array ?? []
        var index = 0
        while index + 1 < items.count {
            if let key = items[index].string, let at = items[index + 1].double {
                if key == ".alive" { alive = at } else if !key.hasPrefix(".") { result[key] = at }
            }
            index += 2
        }
        return (result, alive)
    }

    /// What a fenced publish did.
    enum Outcome {
        case published
        case alreadyPublished
        case fenced
    }

    /// Records `run` under the lease and fence, and pushes `envelope` to the kombu queue list when given (Redis
    /// broker); with `envelope` nil only the record is made (the caller publishes elsewhere, e.g. RabbitMQ).
    func publish(
        _ run: BeatScheduler.Run,
        fence: Int64,
        envelope: (bytes: [UInt8], queue: String, priority: Int)?,
        layout: KombuRedisLayout
    ) throws(RedisError) -> Outcome {
        guard let value else { return .fenced }
        var keys = [RedisArgument(name), RedisArgument(runsKey)]
        var arguments = [
            RedisArgument(value), RedisArgument(Int(fence)), RedisArgument(run.entry),
            RedisArgument(Self.format(run.scheduledAt)),
        ]
        if let envelope {
            keys += [
                RedisArgument(layout.queueKey(queue: envelope.queue, priority: envelope.priority)),
                RedisArgument(layout.bindingKey(exchange: envelope.queue)),
                RedisArgument(layout.permanentBindingKey(exchange: envelope.queue)),
            ]
            arguments += [
                RedisArgument(envelope.bytes),
                RedisArgument(KombuRedisLayout.bindingMember(routingKey: envelope.queue, queue: envelope.queue)),
            ]
        }
        let reply = try connection.run(Self.publishScript, keys: keys, arguments: arguments)
        switch reply.integer {
        case 1: return .published
        case 0: return .alreadyPublished
        default: return .fenced
        }
    }

    /// A scheduled time as Lua's `tonumber` reads it back exactly (milliseconds precision).
    static func format(_ seconds: Double) -> String {
        let milliseconds = Int64((seconds * 1000).rounded())
        let whole = milliseconds / 1000
        let fraction = milliseconds % 1000
        let digits = String(fraction)
        return "\(whole).\(String(repeating: "0", count: 3 - digits.count))\(digits)"
    }
}
