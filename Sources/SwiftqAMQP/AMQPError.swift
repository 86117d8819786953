/// Why an AMQP operation failed: what went wrong (``kind``), a human ``message``, a ``remedy`` when the fix is
/// known, and whether retrying on a new connection may help (``isRecoverable``).
///
/// Every failure of ``AMQPConnection`` and ``AMQPURL`` is one of these; nothing in this module traps on bad input or
/// on anything the broker sends. After a connection-level error (``Kind-swift.enum/connect(_:)``,
/// ``Kind-swift.enum/connectionClosed(replyCode:replyText:classID:methodID:)``, ``Kind-swift.enum/timeout`` during a
/// call, most ``Kind-swift.enum/library(status:message:)`` errors) the connection is dead and every later call
/// throws ``Kind-swift.enum/notConnected``; after ``Kind-swift.enum/channelClosed(channel:replyCode:replyText:classID:methodID:)``
/// only that channel is gone (it may be opened again with ``AMQPConnection/openChannel(_:)``).
public struct AMQPError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What went wrong. New cases may be added; switch with a `default`.
    public enum Kind: Sendable, Equatable {
        /// The TCP connection could not be made (refused, unreachable, name not resolved, timed out); the text
        /// says which (`strerror` of the socket error when it could be learnt).
        case connect(String)
        /// The TLS handshake or the TLS setup (CA file, certificate, key) failed.
        case tls(String)
        /// The broker refused the login: `403 ACCESS_REFUSED` (wrong user or password), `530 NOT_ALLOWED` (no such
        /// vhost, or no access to it), or another `connection.close` during the handshake.
        case login(replyCode: UInt16, replyText: String)
        /// The broker closed the connection (`connection.close`), e.g. `320 CONNECTION_FORCED` when it shuts down,
        /// or `504 CHANNEL_ERROR` after a method on a closed channel. The close-ok was sent.
        case connectionClosed(replyCode: UInt16, replyText: String, classID: UInt16, methodID: UInt16)
        /// The broker closed one channel (`channel.close`), e.g. `406 PRECONDITION_FAILED` for a queue declared
        /// with other arguments, `404 NOT_FOUND` for a missing queue, or a consumer timeout. The close-ok was sent;
        /// the connection and its other channels still work.
        case channelClosed(channel: UInt16, replyCode: UInt16, replyText: String, classID: UInt16, methodID: UInt16)
        /// rabbitmq-c reported a status (a negative `AMQP_STATUS_*`) with its `amqp_error_string2` text: a socket
        /// error, a missed heartbeat, a frame it could not decode.
        case library(status: Int32, message: String)
        /// A synchronous call (connect, login, declare, close) got no answer in time. The connection is closed.
        case timeout
        /// The broker sent something this client did not expect at that point.
        case protocolError(String)
        /// The URL could not be parsed; the text names the part that is wrong.
        case invalidURL(String)
        /// An argument cannot be sent: a header value AMQP cannot carry, a channel number 0, a string too long.
        case invalidArgument(String)
        /// The channel is not open (the broker or swiftq closed it, or it was never opened). Delivery tags of a
        /// closed channel are void: the broker already requeued its unacked deliveries, so an ack for one must be
        /// dropped, not retried.
        case channelNotOpen(UInt16)
        /// The connection was closed before (by ``AMQPConnection/close()`` or by an earlier error).
        case notConnected
    }

    /// What went wrong.
    public var kind: Kind
    /// A human explanation, naming the host, vhost, queue or header concerned when known.
    public var message: String
    /// What the operator can do about it, when that is known: "check broker.url's user and password …".
    public var remedy: String?
    /// Whether a new connection (after a backoff) may succeed without anyone changing the configuration: true for
    /// network failures, missed heartbeats, a broker shutting down or a channel closed for a transient reason
    /// (a consumer timeout); false for wrong credentials, a missing vhost, a queue declared with other arguments,
    /// missing permissions, an invalid URL or argument. The caller retries both kinds with backoff; this only says
    /// which one to log as a configuration problem.
    public var isRecoverable: Bool

    /// Creates an error.
    public init(_ kind: Kind, _ message: String, remedy: String? = nil, isRecoverable: Bool) {
        self.kind = kind
        self.message = message
        self.remedy = remedy
        self.isRecoverable = isRecoverable
    }

    /// The message followed by the remedy, e.g.
    /// `login to 127.0.0.1:5672 vhost "/" refused: 403 ACCESS_REFUSED - … (check broker.url's user and password …)`.
    public var description: String {
        guard let remedy else { return message }
        return "\(message) (\(remedy))"
    }

    /// The AMQP reply code of a broker-side close (`403`, `404`, `406`, `530`, `320` …), `nil` for other kinds.
    public var replyCode: UInt16? {
        switch kind {
        case .login(let code, _): code
        case .connectionClosed(let code, _, _, _): code
        case .channelClosed(_, let code, _, _, _): code
        default: nil
        }
    }
}

extension AMQPError {
    static func invalidURL(_ url: String, _ problem: String) -> AMQPError {
        AMQPError(.invalidURL(problem), "invalid AMQP URL \(url): \(problem)", isRecoverable: false)
    }

    static func invalidArgument(_ problem: String) -> AMQPError {
        AMQPError(.invalidArgument(problem), problem, isRecoverable: false)
    }

    static var notConnected: AMQPError {
        AMQPError(.notConnected, "the AMQP connection is closed", isRecoverable: true)
    }
}
