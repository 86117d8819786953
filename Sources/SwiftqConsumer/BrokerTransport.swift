import SwiftqCore
import SwiftqPlatform
import SwiftqPool

#if canImport(Glibc)
import Glibc
#endif

/// A broker transport as the consumer uses it: background threads that own the broker (and result-backend)
/// connections, fed by the consumer's single-threaded loop and reporting back through ``events``.
///
/// The consumer never touches a broker library: it grants credit, hands over ``Settlement`` plans (publishes, then
/// a result, then the message's fate, always in that order), and reads ``BrokerEvent``s. Redis and RabbitMQ differ
/// underneath (kombu's `unacked` bookkeeping vs AMQP delivery tags and `basic.qos`), not in this contract.
package protocol BrokerTransport: BrokerPort, Sendable {
    /// What the transport's threads report; the consumer loop watches its descriptor.
    var events: Mailbox<BrokerEvent> { get }
    /// The broker URL with its password masked, for logs and `stats`.
    var redactedURL: String { get }
    /// Starts the transport's threads.
    func start()
    /// Allows `count` more messages to be delivered.
    func grant(_ count: Int)
    /// Tells the transport how many deliveries the consumer holds beyond the prefetch window (tasks waiting for
    /// their ETA), so that they do not starve it: AMQP raises `basic.qos` by that much, as Celery does.
    func setHeldForETA(_ count: Int)
    /// Marks a delivery as running (a transport with visibility deadlines keeps it fresh) or no longer running.
    func setRunning(_ tag: String, _ isRunning: Bool)
    /// Whether a delivery tag belongs to a connection that has since been lost: its ack can no longer be
    /// given, and the broker will deliver the message again (AMQP). Such a delivery must not be started.
    func isStale(_ tag: String) -> Bool
    /// Changes the prefetch window (`worker.prefetch_multiplier` × concurrency; 0: unlimited) after a reload.
    func setWindow(_ count: Int)
    /// Consumes from these queues from now on (`add_consumer`/`cancel_consumer`): new ones are declared as Celery
    /// declares a task queue; messages already delivered from a cancelled one are settled as usual.
    func setQueues(_ queues: [String])
    /// Before ``start()``: the revoked ids this worker holds, sent with mingle's `hello`; nil: no mingle
    /// (`worker.mingle: false`).
    func setMingle(revokes ids: [String]?)
    /// Queues settlement plans, each done in order; a failed step stops its plan (the message stays unacked).
    func settle(_ plans: consuming [Settlement])
    /// What the fetch path has done lately, for the supervisor's stall detection.
    var fetchProgress: FetchProgress { get }
    /// Stops receiving; settles what is queued, then gives back every message still held. Blocks until done or
    /// `timeout`.
    func stop(restoreHeld: Bool, timeout: Duration)
}

package extension BrokerTransport {
    func settle(_ plan: Settlement) { settle([plan]) }
}

/// What a transport's fetch path reports so that a consumer that silently stopped consuming (Celery's "stops
/// consuming after a broker reset") can be noticed: when it last made progress, and whether it is waiting with
/// credit while the broker holds messages for it.
package struct FetchProgress: Sendable, Equatable {
    /// When a delivery last arrived, or the fetch path last found the queues empty (both are progress).
    package var lastProgress: ContinuousClock.Instant
    /// When the last message was delivered; nil before the first.
    package var lastDelivery: ContinuousClock.Instant?
    /// Whether the transport can take more (credit or prefetch room) and the broker holds ready messages for it.
    package var starved: Bool
}

/// What the broker threads tell the consumer loop.
package enum BrokerEvent: Sendable {
    /// Messages delivered to this worker, decoded on the transport's thread.
    case delivered([InboundMessage])
    /// One connection's state: `connected`, or not with the reason. The consumer derives the worker's broker state
    /// from all of them (``BrokerConnectivity``).
    case state(BrokerConnectionRole, connected: Bool, detail: String)
    /// Results were stored and these messages acked or requeued: they are settled.
    case settled(tags: [String], results: Int)
    /// The fetcher reconnected; these are the messages the broker records as held by this consumer. Any that the
    /// consumer does not know were reserved by a call whose reply the broken connection lost (Redis).
    case reconnected(held: [String])
    /// Reserved messages were handed back to the broker (warm shutdown, restart).
    case restored(Int)
    /// Something the transport's threads want logged (they have no logger of their own).
    case notice(String)
    /// Messages from a control path (Celery's pidbox): never decoded as tasks.
    case control([ControlDelivery])
    /// Revokes found at startup: the broker's revoke list (Redis) and the other nodes' answers to mingle's `hello`.
    case revokesFound([RevokeRecord], source: String)
    /// A sample of the consumed queues' depths (``QueueDepthSampler``); nil when the sample failed.
    case queueDepths([String: Int]?)
}

/// One delivered message, decoded as far as it goes.
package enum InboundMessage: Sendable {
    /// A task, ready to run.
    case task(TaskMessage, deliveryTag: String?, queue: String)
    /// A message that is not a task the worker can run: content type, protocol 1, body or headers. It is settled
    /// (with a FAILURE stored when its id was readable) so that it never loops.
    case undecodable(MessageDecodingError, deliveryTag: String?, queue: String)
    /// Not even an envelope (Redis: not a kombu JSON object). Already removed from the broker; only logged and
    /// counted.
    case malformed(payload: [UInt8], queue: String)
}

/// Capped, jittered exponential backoff for reconnects: 100 ms doubling to 5 s, ±20 %.
package struct Backoff {
    package private(set) var attempts = 0

    package mutating func reset() { attempts = 0 }

    package mutating func next() -> Duration {
        attempts += 1
        let base = min(5.0, 0.1 * pow(2.0, Double(min(attempts - 1, 10))))
        return .milliseconds(Int64(base * Double.random(in: 0.8...1.2) * 1000))
    }
}
