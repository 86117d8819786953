import OrderedCollections
import SwiftqCore
import SwiftqPool

/// How one delivery is settled: an ordered plan of publishes, then the result, then the message's fate.
///
/// The transport performs the steps in order and stops at the first one that fails: later steps are not done,
/// and the message stays unacked, so the broker redelivers it (Redis: kombu's `unacked` restore; AMQP: the
/// channel's unacked deliveries go back when it closes). Publishes are confirmed before the next step
/// (AMQP publisher confirms; Redis replies). This is what makes a retry, a chain step or a callback safe:
/// the follow-up exists before the result says so, and the result exists before the original is acked.
package struct Settlement: Sendable, Equatable {
    /// Chords started by the publishes: their size set in the Redis result backend first.
    package var chordSetups: [Canvas.ChordSetup] = []
    /// Messages to publish first (retry copies, callbacks, chain steps, pidbox replies, events), in order.
    package var publishes: [OutboundMessage] = []
    /// The result to store (Redis backend) or send (`rpc://`, to `replyTo`), after the publishes.
    package var result: StoredResult?
    /// Results stored after ``result`` (canvas: the rest of a failed chain, a failed chord body).
    package var followingResults: [StoredResult] = []
    /// Chord header parts, reported to the Redis backend's chord counter after the results: the task's own, and
    /// those of the steps of its chain that a failure ends (a chain in a chord header); the last part fires the chord
    /// body (see ``Canvas/chordCompleted(_:entries:now:newID:)``) before the ack.
    package var chordParts: [Canvas.ChordPart] = []
    /// A `celery.chord_unlock` delivery: after the results, the header is read from the Redis backend and the body,
    /// the `ChordError` or the next poll published before the ack (see ``Canvas/unlocked(_:metas:now:newID:)``).
    package var chordUnlock: Canvas.ChordUnlock?
    /// Messages published after the results, before the ack (errbacks: they may read the failed task's result).
    package var afterResult: [OutboundMessage] = []
    /// A chord whose body was published: its claim is released and its keys removed (AMQP: after the ack).
    package var chordCleanup: ChordClaim?
    /// The delivery this plan settles, if any (nil: a plan with no message of its own, e.g. a reply).
    package var deliveryTag: String?
    /// The task the delivery carries, when known: AMQP remembers finished tasks whose ack was lost with the
    /// connection, so that their redelivered copies are not run again.
    package var taskID: String?
    /// What happens to the message last.
    package var disposition: Disposition = .ack
    /// Give back every message this consumer still holds (warm or cold shutdown), after the rest.
    package var restoreHeld = false
    /// Revokes to keep in the broker's revoke list (Redis: a sorted set; RabbitMQ: the queue `swiftq.revoked`), each for `revokeExpiry` seconds, so that workers started
    /// later honour them too.
    package var revokes: [RevokeRecord] = []
    package var revokeExpiry: Double = 0
    /// REVOKED results of ids revoked while this worker holds none of them, stored by the thread that holds the
    /// Redis result backend only where the stored state lets a revoke replace it (``RevokedResults``), before the
    /// plans of the same batch publish (so before the revoke's reply).
    package var revokedUnlessStarted: [StoredResult] = []

    /// Whether the plan has chord work for the thread that holds the Redis result backend.
    package var hasChordWork: Bool { !chordParts.isEmpty || chordUnlock != nil }

    /// Whether all the plan does is ack its delivery: nothing else in it, and nobody waits for an ack to leave, so a
    /// transport may carry it out a little later together with others (RabbitMQ's pending acks).
    package var onlyAcks: Bool {
        disposition == .ack && publishes.isEmpty && result == nil && followingResults.isEmpty && chordSetups.isEmpty
            && !hasChordWork && afterResult.isEmpty && chordCleanup == nil && !restoreHeld && revokes.isEmpty
            && revokedUnlessStarted.isEmpty
    }

    /// ``result`` then ``followingResults``.
    package var allResults: [StoredResult] { (result.map { [$0] } ?? []) + followingResults }

    /// A message's fate at the end of a plan.
    package enum Disposition: Sendable, Equatable {
        /// Done with: removed from the broker.
        case ack
        /// Back to its queue, for this or another worker.
        case requeue
        /// Never started, given back to be next in line: on Redis to the head of its queue (kombu's restore, where
        /// ``requeue`` goes to the tail as kombu's reject does); on RabbitMQ as ``requeue`` (`basic.reject`, which
        /// puts it back in its place).
        case restore
        /// Refused: dropped (or dead-lettered where the queue has a dead-letter exchange). Never redelivered.
        case reject
        /// Left as it is (settled earlier, e.g. acked when the task started).
        case none
    }
}

/// A chord body dispatch claim held by this worker (`<group>.c` = token).
package struct ChordClaim: Sendable, Equatable {
    package var groupID: String
    package var token: String

    package init(groupID: String, token: String) {
        self.groupID = groupID
        self.token = token
    }
}

/// A result for the backend: the task id and its serialized meta (Celery's `celery-task-meta-<id>` value).
package struct StoredResult: Sendable, Equatable {
    package var taskID: String
    package var meta: [UInt8]
    /// The task message's `reply_to` (the client's reply queue), where the `rpc://` backend publishes results.
    package var replyTo: String?
}

/// A message to publish through the broker connection, in kombu's terms: an exchange (of a type), a routing
/// key, a body with its content type and encoding, headers, and properties.
///
/// Redis: `direct` exchanges route through kombu's `_kombu.binding.<exchange>` sets (the default exchange `""`
/// straight to the queue named by the routing key), `fanout` and `topic` publish on kombu's pub/sub channel;
/// priorities go to kombu's priority-bucket lists. RabbitMQ: `basic.publish`, confirmed.
package struct OutboundMessage: Sendable, Equatable {
    package enum ExchangeType: String, Sendable {
        case direct
        case fanout
        case topic
    }

    package var exchange: String
    package var exchangeType: ExchangeType = .direct
    package var routingKey: String
    package var body: [UInt8]
    package var contentType = "application/json"
    package var contentEncoding = "utf-8"
    package var headers: OrderedDictionary<String, JSONValue> = [:]
    /// AMQP properties kombu sets: `correlation_id`, `reply_to`, `priority`, `delivery_mode` (2 = persistent),
    /// `expiration` (milliseconds, as text).
    package var correlationID: String?
    package var replyTo: String?
    package var priority: Int?
    package var persistent = true
    package var expiration: String?
}

/// A message that arrived on a control path (a pidbox broadcast or a direct control message), not a task: it is
/// never decoded as one.
package struct ControlDelivery: Sendable, Equatable {
    /// The decoded body (kombu's pidbox message: `method`, `arguments`, `destination`, `pattern`, `matcher`,
    /// `ticket`, `reply_to`).
    package var body: JSONValue
    /// Where the broker took it from (queue or pub/sub channel), for logs.
    package var source: String
}
