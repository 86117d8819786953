/// A failed Redis operation: what kind of failure, a message for the log, and the library's or server's own text.
///
/// Where each part comes from:
/// - For ``Code-swift.struct/connect``, ``Code-swift.struct/io``, ``Code-swift.struct/timeout``,
///   ``Code-swift.struct/eof`` and ``Code-swift.struct/protocol``, the code is derived from hiredis'
///   `redisContext.err` (`REDIS_ERR_IO`, `REDIS_ERR_EOF`, `REDIS_ERR_PROTOCOL`, …; an `REDIS_ERR_IO` whose `errno` is
///   `EAGAIN` is a ``Code-swift.struct/timeout``) and ``cause`` is `redisContext.errstr`. After any of these but
///   `connect` the connection is broken and must be replaced.
/// - For ``Code-swift.struct/server`` and ``Code-swift.struct/script``, ``cause`` is the server's error reply
///   (`redisReply.str` of a `REDIS_REPLY_ERROR`, e.g. `WRONGTYPE Operation against a key …`). The connection
///   stays usable. A ``Code-swift.struct/connect`` error can also carry a server reply (`WRONGPASS …` from AUTH).
/// - For ``Code-swift.struct/invalidURL``, nothing came from hiredis; ``message`` says what is wrong with the URL.
public struct RedisError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The kind of failure, extensible without breaking `switch`es in callers (compare with `==`).
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: Hashable, Sendable {
            case connect, io, timeout, eof, protocolError, server, invalidURL, script, unavailable
        }

        private let base: Base

        private init(_ base: Base) {
            self.base = base
        }

        /// Connecting, authenticating or selecting the database failed (refused, no such socket, wrong password,
        /// database out of range). No connection was made.
        public static let connect = Code(.connect)
        /// A read or write on an established connection failed (`REDIS_ERR_IO`, or `REDIS_ERR_OOM` inside
        /// hiredis). The connection is broken.
        public static let io = Code(.io)
        /// No reply arrived within the command timeout (`REDIS_ERR_IO` with `errno` `EAGAIN`). The connection is
        /// broken: the reply may still arrive later and would be taken as the answer to the next command.
        public static let timeout = Code(.timeout)
        /// The server closed the connection (`REDIS_ERR_EOF`): it was stopped, restarted, or dropped this client.
        public static let eof = Code(.eof)
        /// The server sent something that is not RESP (`REDIS_ERR_PROTOCOL`, `REDIS_ERR_OTHER`).
        public static let `protocol` = Code(.protocolError)
        /// The server answered a command with an error reply (`-ERR …`, `-WRONGTYPE …`).
        public static let server = Code(.server)
        /// The broker or backend URL could not be used.
        public static let invalidURL = Code(.invalidURL)
        /// A Lua script failed on the server, or returned a reply of a shape its caller does not know.
        public static let script = Code(.script)
        /// The server cannot serve this connection now: `READONLY` (a replica, after a failover or a
        /// `REPLICAOF`), `LOADING` (restarting, loading its data) or `MASTERDOWN`. Treated like a dropped socket:
        /// the connection is replaced after a backoff, by which time a proxy or DNS may point to the new primary.
        public static let unavailable = Code(.unavailable)

        public var description: String {
            switch base {
            case .connect: "connect"
            case .io: "io"
            case .timeout: "timeout"
            case .eof: "eof"
            case .protocolError: "protocol"
            case .server: "server"
            case .invalidURL: "invalidURL"
            case .script: "script"
            case .unavailable: "unavailable"
            }
        }
    }

    /// What kind of failure this is.
    public var code: Code
    /// A sentence for the log that says what was being done, e.g. `"AUTH to redis://:***@localhost:6379/0 failed"`.
    public var message: String
    /// The underlying text: hiredis' `errstr` or the server's error reply; `nil` when the message says it all.
    public var cause: String?

    /// Creates an error.
    public init(code: Code, message: String, cause: String? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    /// Whether the connection that produced this error can no longer be used (I/O, timeout, EOF, protocol).
    public var breaksConnection: Bool {
        code == .io || code == .timeout || code == .eof || code == .protocol || code == .unavailable
    }

    /// Whether an error reply means the server cannot serve writes or reads now (see ``Code-swift.struct/unavailable``).
    /// Scripts report a refused write inside their own error text, hence the search past the start.
    public static func isUnavailableReply(_ text: String) -> Bool {
        text.hasPrefix("READONLY") || text.hasPrefix("LOADING") || text.hasPrefix("MASTERDOWN")
            || text.contains("-READONLY ") || text.contains("READONLY You can't write")
    }

    /// `message: cause`, or just the message.
    public var description: String {
        guard let cause, !cause.isEmpty else { return message }
        return "\(message): \(cause)"
    }
}
