import SwiftqAMQP
import SwiftqCore

/// The broker's revoke list on RabbitMQ, so that a revoke reaches workers that were offline when it was made
/// (Celery keeps none: a worker started later learns revokes only from live workers through mingle).
///
/// It is the durable queue `swiftq.revoked`: one persistent message `{"id": …, "at": …}` per revoke, expiring
/// after `worker.revokes_expire` (the per-message `expiration`, so that changing the setting never meets a queue
/// declared with other arguments). At start-up a worker reads the whole queue on a channel of its own without
/// acknowledging and closes that channel, which gives every message back. A worker starting at the very same moment
/// may miss what the other holds for that instant; mingle covers it while both are up.
extension AMQPTransport {
    static let revokeQueue = "swiftq.revoked"
    /// The channel the list is read on (then closed: its unacked messages return to the queue).
    static let revokeChannel: UInt16 = 4
    /// How long start-up waits for the list's messages.
    static let revokeReadTimeout: Duration = .seconds(5)

    /// Each revoke as a message for the list, expiring after `expiry` seconds (none when 0).
    static func revokeMessages(_ records: [RevokeRecord], expiry: Double) -> [OutboundMessage] {
        records.map { record in
            var message = OutboundMessage(
                exchange: "",
                routingKey: revokeQueue,
                body: JSONValue.object(["id": .string(record.id), "at": .double(record.at)]).serialized()
            )
            if expiry > 0 { message.expiration = String(Int64((expiry * 1000).rounded(.up))) }
            return message
        }
    }

    /// A revoke from a list message; nil for anything else (logged by the caller, never fatal).
    static func revokeRecord(from body: [UInt8]) -> RevokeRecord? {
        guard let value = try? JSONValue(parsing: body), let id = value["id"]?.stringValue, !id.isEmpty,
            let at = value["at"]?.doubleValue
        else { return nil }
        return RevokeRecord(id: id, at: at)
    }

    /// Declares the list (of the task queues' type: a classic queue lives on one node, and with that node down every
    /// declare fails, which must not keep a cluster's other nodes from serving) and, when `read`, reads it and posts
    /// what it holds as ``BrokerEvent/revokesFound(_:source:)``. A failure only loses the list (logged): revokes are
    /// still kept in memory, in `worker.state_db` and exchanged through mingle, and the connection goes on.
    func prepareRevokeList(_ connection: AMQPConnection, read: Bool, type: JSONValue?) {
        var records: [RevokeRecord] = []
        var undecodable = 0
        do {
            try connection.openChannel(Self.revokeChannel)
            defer { try? connection.closeChannel(Self.revokeChannel) }
            let count = try connection.declareQueue(
                channel: Self.revokeChannel,
                name: Self.revokeQueue,
                durable: true,
                arguments: type.map { ["x-queue-type": $0] } ?? [:]
            ).messageCount
            guard read, count > 0 else { return }
            let tag = try connection.consume(channel: Self.revokeChannel, queue: Self.revokeQueue)
            let deadline = ContinuousClock.now + Self.revokeReadTimeout
            while records.count + undecodable < Int(count), ContinuousClock.now < deadline {
                guard let event = try connection.nextEvent(timeout: min(.milliseconds(100), deadline - .now)),
                    case .delivery(let delivery) = event, delivery.consumerTag == tag
                else { continue }
                if let record = Self.revokeRecord(from: delivery.body) {
                    records.append(record)
                } else {
                    undecodable += 1
                }
            }
        } catch {
            events.post(
                .notice(
                    "the broker's revoke list (\(Self.revokeQueue)) is unavailable (\(Self.describe(error))); revokes "
                        + "are kept in memory, worker.state_db and mingle"
                )
            )
            return
        }
        if undecodable > 0 {
            events.post(.notice("\(undecodable) message(s) in \(Self.revokeQueue) are not revokes; ignored"))
        }
        if !records.isEmpty { events.post(.revokesFound(records, source: "the broker's revoke list")) }
    }
}
