import SwiftqCore

extension KombuRedisBroker {
    /// One remote-control request as kombu's Redis `Mailbox` makes it (`app.control.broadcast`, Celery's mingle):
    /// binds the reply queue `<replyKey>.reply.celery.pidbox` in `_kombu.binding.reply.celery.pidbox`, publishes
    /// `envelope` to the `celery.pidbox` fanout exchange, pops replies until `deadline` or until `isDone` says so,
    /// then unbinds and deletes the reply queue (best effort: on a broken connection the binding stays, as with
    /// kombu, and the reply list stays empty).
    ///
    /// - Parameter onReply: called with each reply's envelope, in arrival order; undecodable replies are skipped.
    /// - Throws: ``RedisError`` from the binding, the publish or a pop.
    public func pidboxRequest(
        envelope: [UInt8],
        replyKey: String,
        until deadline: ContinuousClock.Instant,
        isDone: () -> Bool = { false },
        onReply: (RedisEnvelope) -> Void
    ) throws(RedisError) {
        let replyQueue = "\(replyKey).reply.celery.pidbox"
        let bindingKey = layout.bindingKey(exchange: "reply.celery.pidbox")
        let member = KombuRedisLayout.bindingMember(routingKey: replyKey, queue: replyQueue)
        let list = layout.queueKey(queue: replyQueue, priority: 0)
        try connection.command("SADD", RedisArgument(bindingKey), RedisArgument(member))
        defer {
            _ = try? connection.command("SREM", RedisArgument(bindingKey), RedisArgument(member))
            _ = try? connection.command("DEL", RedisArgument(list))
        }
        try publish(envelope: envelope, exchange: "celery.pidbox", type: .fanout, routingKey: "", priority: 0)
        while ContinuousClock.now < deadline, !isDone() {
            let reply = try connection.command(
                "BRPOP",
                RedisArgument(list),
                RedisArgument(Self.blockingTimeout(deadline - .now))
            )
            guard let parts = reply.array, parts.count == 2, let payload = parts[1].bytes,
                let received = try? RedisEnvelope.decode(payload)
            else { continue }
            onReply(received)
        }
    }

    /// A blocking command's timeout argument: seconds with three decimals, at least 0.010 (0 would block forever).
    static func blockingTimeout(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        let milliseconds = max(10, seconds * 1000 + attoseconds / 1_000_000_000_000_000)
        let fraction = String(milliseconds % 1000)
        return "\(milliseconds / 1000)." + String(repeating: "0", count: 3 - fraction.count) + fraction
    }
}
