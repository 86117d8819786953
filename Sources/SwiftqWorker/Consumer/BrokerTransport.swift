import SwiftqCore
import SwiftqPlatform

#if canImport(Glibc)
import Glibc
#endif

/// A broker transport as the consumer uses it: background threads that own the broker (and result-backend)
/// connections, fed by the consumer's single-threaded loop and reporting back through ``events``.
///
/// The consumer never touches a broker library: it grants credit, hands over completions (a result to store,
/// then an ack or a requeue, always in that order), and reads ``BrokerEvent``s. Redis and RabbitMQ differ
/// underneath (kombu's `unacked` bookkeeping vs AMQP delivery tags and `basic.qos`), not in this contract.
protocol BrokerTransport: AnyObject, Sendable {
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
    /// Queues results and acks/requeues, settled in order.
    func complete(_ completions: [Completion])
    /// Stops receiving; settles what is queued, then gives back every message still held. Blocks until done or
    /// `timeout`.
    func stop(restoreHeld: Bool, timeout: Duration)
}

extension BrokerTransport {
    func complete(_ completion: Completion) { complete([completion]) }
}

/// What the broker threads tell the consumer loop.
enum BrokerEvent: Sendable {
    /// Messages delivered to this worker, decoded on the transport's thread.
    case delivered([InboundMessage])
    /// The connection state changed: `connected`, or `disconnected` with the reason.
    case state(connected: Bool, detail: String)
    /// Results were stored and these messages acked or requeued: they are settled.
    case settled(tags: [String], results: Int)
    /// The fetcher reconnected; these are the messages the broker records as held by this consumer. Any that the
    /// consumer does not know were reserved by a call whose reply the broken connection lost (Redis).
    case reconnected(held: [String])
    /// Reserved messages were handed back to the broker (warm shutdown, restart).
    case restored(Int)
    /// Something the transport's threads want logged (they have no logger of their own).
    case notice(String)
}

/// One delivered message, decoded as far as it goes.
enum InboundMessage: Sendable {
    /// A task, ready to run.
    case task(TaskMessage, deliveryTag: String?, queue: String)
    /// A message that is not a task the worker can run: content type, protocol 1, body or headers. It is settled
    /// (with a FAILURE stored when its id was readable) so that it never loops.
    case undecodable(MessageDecodingError, deliveryTag: String?, queue: String)
    /// Not even an envelope (Redis: not a kombu JSON object). Already removed from the broker; only logged and
    /// counted.
    case malformed(payload: [UInt8], queue: String)
}

/// One unit of work for a transport's writer, done in order: store or publish the result (if any), then ack or
/// requeue.
struct Completion: Sendable {
    var taskID: String?
    var meta: [UInt8]?
    /// The task message's `reply_to` (the client's reply queue), where the `rpc://` backend publishes results.
    var replyTo: String?
    var deliveryTag: String?
    var requeue = false
    /// Give back every message this consumer still holds (warm or cold shutdown), after what precedes it.
    var restoreHeld = false
}

/// Capped, jittered exponential backoff for reconnects: 100 ms doubling to 5 s, ±20 %.
struct Backoff {
    private(set) var attempts = 0

    mutating func reset() { attempts = 0 }

    mutating func next() -> Duration {
        attempts += 1
        let base = min(5.0, 0.1 * pow(2.0, Double(min(attempts - 1, 10))))
        return .milliseconds(Int64(base * Double.random(in: 0.8...1.2) * 1000))
    }
}
