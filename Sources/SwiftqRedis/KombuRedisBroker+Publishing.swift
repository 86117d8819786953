/// How kombu's Redis transport routes a published message (celery-wire-protocol.md §2.3): exchange types are
/// not stored in Redis, so the publisher says which it is.
public enum KombuExchangeType: String, Sendable {
    case direct
    case fanout
    case topic
}

extension KombuRedisLayout {
    /// The pub/sub channel of a fanout exchange, as kombu's `_get_publish_topic` names it with its defaults
    /// (`fanout_prefix` and `fanout_patterns` on): `"/{db}." + exchange`, plus `"/" + routingKey` when the routing
    /// key is not empty. Redis pub/sub ignores databases, hence the prefix.
    public func fanoutChannel(exchange: String, routingKey: String, database: Int) -> String {
        let topic = "/\(database)." + exchange
        return globalKeyPrefix + (routingKey.isEmpty ? topic : topic + "/" + routingKey)
    }

    /// The queues a binding set routes a message to (kombu's `_lookup`): direct keeps members whose routing key
    /// equals `routingKey`, topic those whose routing key (as a pattern) matches it, fanout every member.
    public static func boundQueues(members: [String], type: KombuExchangeType, routingKey: String) -> [String] {
        var queues: [String] = []
        for member in members {
            let parts = member.split(separator: separator, omittingEmptySubsequences: false)
            guard parts.count == 3 else { continue }
            let key = String(parts[0])
            let queue = String(parts[2])
            let matches =
                switch type {
                case .direct: key == routingKey
                case .fanout: true
                case .topic: topicMatches(pattern: key, routingKey: routingKey)
                }
            if matches && !queues.contains(queue) { queues.append(queue) }
        }
        return queues
    }

    /// kombu's topic match: the binding key as the regex `^…$` with `.` literal, `*` as `[^.]+` and `#` as `.*?`.
    public static func topicMatches(pattern: String, routingKey: String) -> Bool {
        func match(_ pattern: Substring.UTF8View.SubSequence, _ key: Substring.UTF8View.SubSequence) -> Bool {
            guard let first = pattern.first else { return key.isEmpty }
            let rest = pattern.dropFirst()
            switch first {
            case UInt8(ascii: "#"):
                var tail = key
                while true {
                    if match(rest, tail) { return true }
                    guard !tail.isEmpty else { return false }
                    tail = tail.dropFirst()
                }
            case UInt8(ascii: "*"):
                var taken = 0
                var tail = key
                while let next = tail.first, next != UInt8(ascii: ".") {
                    tail = tail.dropFirst()
                    taken += 1
                    if match(rest, tail) { return true }
                }
                return false
            default:
                guard key.first == first else { return false }
                return match(rest, key.dropFirst())
            }
        }
        return match(Substring(pattern).utf8[...], Substring(routingKey).utf8[...])
    }
}

extension KombuRedisBroker {
    /// Publishes an envelope as a kombu producer does: the default exchange `""` pushes to the queue named by the
    /// routing key; a named direct or topic exchange pushes to every queue its `_kombu.binding.<exchange>` set
    /// routes to; a fanout exchange PUBLISHes on its channel (``KombuRedisLayout/fanoutChannel(exchange:routingKey:database:)``).
    /// Lists get the priority bucket (``KombuRedisLayout/queueKey(queue:priority:)``).
    ///
    /// Returns how many queues (or, for fanout, subscribers) received it. kombu drops an unroutable message
    /// silently; callers decide whether 0 is a failure.
    @discardableResult
    public func publish(
        envelope: [UInt8],
        exchange: String,
        type: KombuExchangeType,
        routingKey: String,
        priority: Int
    ) throws(RedisError) -> Int {
        if type == .fanout {
            let channel = layout.fanoutChannel(
                exchange: exchange,
                routingKey: routingKey,
                database: connection.url.database
            )
            return Int(try connection.command("PUBLISH", RedisArgument(channel), RedisArgument(envelope)).integer ?? 0)
        }
        let queues: [String]
        if exchange.isEmpty {
            queues = [routingKey]
        } else {
            let reply = try connection.command("SMEMBERS", RedisArgument(layout.bindingKey(exchange: exchange)))
            queues = KombuRedisLayout.boundQueues(
                members: reply.array?.compactMap(\.string) ?? [],
                type: type,
                routingKey: routingKey
            )
        }
        if queues.isEmpty { return 0 }
        let commands: [[RedisArgument]] = queues.map { queue in
            ["LPUSH", RedisArgument(layout.queueKey(queue: queue, priority: priority)), RedisArgument(envelope)]
        }
        let replies = try connection.pipeline(commands)
        if let text = replies.lazy.compactMap(\.errorMessage).first {
            throw RedisError(
                code: .server,
                message: "publishing to \(exchange.isEmpty ? routingKey : exchange) failed",
                cause: text
            )
        }
        return queues.count
    }
}

extension KombuRedisBroker {
    /// One message for a fanout exchange, as ``publishFanout(_:)`` takes it.
    public struct FanoutMessage: Sendable {
        public var envelope: [UInt8]
        public var exchange: String
        public var routingKey: String

        public init(envelope: [UInt8], exchange: String, routingKey: String) {
            self.envelope = envelope
            self.exchange = exchange
            self.routingKey = routingKey
        }
    }

    /// Messages for fanout exchanges (Celery's events) in one pipelined round trip of `PUBLISH`es: how many
    /// subscribers each reached, or nil for one the server refused.
    public func publishFanout(_ messages: [FanoutMessage]) throws(RedisError) -> [Int?] {
        let replies = try connection.pipeline(fanoutCommands(messages))
        return Self.reached(replies)
    }

    /// ``ack(tags:owner:)`` with fanout messages (Celery's events) published in the same round trip, before the ack:
    /// how many the ack removed, and what ``publishFanout(_:)`` returns for the messages.
    public func ack(
        tags: [String],
        owner: String,
        publishing messages: [FanoutMessage]
    ) throws(RedisError) -> (removed: Int, reached: [Int?]) {
        let calls =
            tags.isEmpty
            ? [] : [RedisScript.Call(keys: ackKeys(owner: owner), arguments: tags.map { RedisArgument($0) })]
        let replies = try connection.runPipelined(KombuRedisScripts.ack, calls: calls, after: fanoutCommands(messages))
        var removed = 0
        if let reply = replies.calls.first {
            guard let count = try reply.orThrow(KombuRedisScripts.ack).integer else {
                throw Self.unexpected(KombuRedisScripts.ack, reply)
            }
            removed = Int(count)
        }
        return (removed, Self.reached(replies.commands))
    }

    func fanoutCommands(_ messages: [FanoutMessage]) -> [[RedisArgument]] {
        let database = connection.url.database
        return messages.map { message in
            let channel = layout.fanoutChannel(
                exchange: message.exchange,
                routingKey: message.routingKey,
                database: database
            )
            return ["PUBLISH", RedisArgument(channel), RedisArgument(message.envelope)]
        }
    }

    static func reached(_ replies: [RedisReply]) -> [Int?] {
        replies.map { reply in reply.errorMessage == nil ? Int(reply.integer ?? 0) : nil }
    }
}
