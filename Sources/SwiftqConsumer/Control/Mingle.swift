import OrderedCollections
import SwiftqCore

/// Celery's mingle (celery/worker/consumer/mingle.py): at startup, before consuming, a worker broadcasts `hello` with
/// its revoked ids and merges the ids every other node answers with. The request and the reading of replies, shared
/// by the transports that carry them.
package enum Mingle {
    /// How long replies are collected (Celery's mingle timeout).
    package static let timeout: Duration = .seconds(1)

    /// The `hello` request body, with a reply wanted on `replyKey` of `reply.celery.pidbox`.
    package static func hello(node: String, revoked: [String], ticket: String, replyKey: String) -> OutboundMessage {
        let body: JSONValue = [
            "method": "hello",
            "arguments": ["from_node": .string(node), "revoked": .array(revoked.map(JSONValue.string))],
            "destination": nil, "pattern": nil, "matcher": nil,
            "ticket": .string(ticket),
            "reply_to": ["exchange": "reply.celery.pidbox", "routing_key": .string(replyKey)],
        ]
        return OutboundMessage(
            exchange: "celery.pidbox",
            exchangeType: .fanout,
            routingKey: "",
            body: body.serialized(),
            headers: ["clock": 0, "expires": .double(CeleryTimestamp.now.secondsSince1970 + 1)],
            persistent: true
        )
    }

    /// The revoked ids in one reply body (`{node: {"revoked": [...], "clock": n}}`), unless it is our own node's or
    /// for another ticket; nil for anything else.
    package static func revoked(inReply body: [UInt8], ticket: String, replyTicket: String?, node: String) -> [String]?
    {
        guard replyTicket == nil || replyTicket == ticket, let value = try? JSONValue(parsing: body),
            let object = value.objectValue
        else { return nil }
        var ids: [String] = []
        for (replier, reply) in object where replier != node {
            ids += reply["revoked"]?.arrayValue?.compactMap(\.stringValue) ?? []
        }
        return ids
    }
}

/// A revoke as stored (state file, the broker's list): the id and when it was revoked.
package struct RevokeRecord: Sendable, Equatable {
    package var id: String
    package var at: Double

    package init(id: String, at: Double) {
        self.id = id
        self.at = at
    }
}
