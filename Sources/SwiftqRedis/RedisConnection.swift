import SwiftqCore

/// A blocking connection to one Redis server, logged in and on the URL's database.
///
/// ## Ownership and threading
/// - Owned by one thread at a time. The type is deliberately not `Sendable`: create it on the thread that uses it
///   (or hand it over with `sending`), and never share it.
/// - Every method blocks that thread on the socket, up to ``commandTimeout``. Never call it from Swift
///   concurrency's cooperative pool (2 threads on 2 cores: a blocked thread stalls every task); give it a thread
///   of its own.
/// - hiredis writes with `write(2)`, so a write to a connection the server has closed raises `SIGPIPE`. The process
///   must ignore `SIGPIPE` (every swiftqd role does), or it dies instead of getting an ``RedisError/Code-swift.struct/eof``.
///
/// ## Failures
/// An error reply from the server (``RedisError/Code-swift.struct/server``) leaves the connection usable. An I/O
/// error, a timeout, EOF or a protocol error breaks it: that error is thrown, ``isBroken`` becomes `true`, and every
/// further call throws the same error without touching the socket (best-effort cleanups in a `defer` may then run
/// with `try?` safely). Replace a broken connection with a new one.
public final class RedisConnection {
    /// Where this connection goes.
    public let url: RedisURL
    /// How long a command may wait for its reply; `nil` waits forever.
    public private(set) var commandTimeout: Duration?
    /// The error that broke this connection, if any.
    public private(set) var brokenBy: RedisError?
    /// The hiredis context; only ``HiredisContext`` touches it.
    private let context: HiredisContext
    /// The SHA1 of each script loaded on this connection's server (``RedisScript``), by the script's name, with the
    /// source it was loaded from. Keyed by name because hashing a source (kilobytes, not all ASCII) on every call
    /// cost the fetch thread 3 % of its time; comparing the source is a pointer check for the same script.
    var loadedScripts: [String: (source: String, sha: String)] = [:]
    /// Replies owed to commands sent by ``send(_:)`` and not read yet by ``readSent()``: every other call needs
    /// none owed, or it would read a reply that is not its own.
    private var unreadReplies = 0

    /// Whether an I/O error, timeout, EOF or protocol error has made this connection unusable.
    public var isBroken: Bool { brokenBy != nil }

    /// Connects (TCP with keepalive, or a unix socket), authenticates with the URL's credentials
    /// (`AUTH password` or `AUTH user password`), selects the URL's database, and names the client when asked.
    ///
    /// - Parameters:
    ///   - connectTimeout: bounds the `connect` and the login replies.
    ///   - commandTimeout: bounds each later reply; `nil` waits forever.
    ///   - clientName: shown by `CLIENT LIST`, e.g. `swiftq:celery@host:consumer`.
    /// - Throws: ``RedisError`` with code ``RedisError/Code-swift.struct/connect`` for every failure, including a
    ///   wrong password (`WRONGPASS`), a missing one (`NOAUTH`) and a database out of range.
    public init(
        url: RedisURL,
        connectTimeout: Duration = .seconds(5),
        commandTimeout: Duration? = .seconds(30),
        clientName: String? = nil
    ) throws(RedisError) {
        precondition(connectTimeout > .zero, "connectTimeout must be positive")
        precondition(commandTimeout.map { $0 > .zero } ?? true, "commandTimeout must be positive or nil")
        let peer = url.redacted
        let context = try HiredisContext.connect(to: url.endpoint, timeout: connectTimeout, peer: peer)
        do throws(RedisError) {
            try context.setTimeout(connectTimeout)
            if case .tcp = url.endpoint { try context.enableKeepAlive() }
            try Self.logIn(context, url: url, clientName: clientName)
            try context.setTimeout(commandTimeout)
        } catch  where error.code != .connect {
            throw RedisError(
                code: .connect,
                message: "connecting to \(peer) failed (\(error.message))",
                cause: error.cause
            )
        }
        self.url = url
        self.commandTimeout = commandTimeout
        self.context = context
    }

    /// Sends one command and returns its reply.
    ///
    /// - Throws: ``RedisError/Code-swift.struct/server`` when the server answers with an error reply (the
    ///   connection stays usable); an I/O, timeout, EOF or protocol error otherwise (the connection is broken).
    @discardableResult
    public func command(_ arguments: [RedisArgument]) throws(RedisError) -> RedisReply {
        ThroughputCounters.shared.brokerRoundTrip()
        let reply = try use { context throws(RedisError) in try context.command(arguments) }
        try checkAvailable([reply])
        if case .error(let text) = reply {
            throw RedisError(code: .server, message: "\(HiredisContext.name(of: arguments)) failed", cause: text)
        }
        return reply
    }

    /// Sends one command and returns its reply; see ``command(_:)-([RedisArgument])``.
    @discardableResult
    public func command(_ arguments: RedisArgument...) throws(RedisError) -> RedisReply {
        try command(arguments)
    }

    /// Sends all commands in one write, then reads all replies: one round trip for the lot.
    ///
    /// Not a transaction: other clients' commands may run in between. An error reply is returned in place as
    /// ``RedisReply/error(_:)`` and does not stop the others.
    /// - Throws: only I/O, timeout, EOF or protocol errors, which break the connection.
    public func pipeline(_ commands: [[RedisArgument]]) throws(RedisError) -> [RedisReply] {
        if commands.isEmpty { return [] }
        ThroughputCounters.shared.brokerRoundTrip()
        let replies = try use { context throws(RedisError) in
            for command in commands { try context.append(command) }
            var replies: [RedisReply] = []
            replies.reserveCapacity(commands.count)
            for _ in commands { replies.append(try context.readReply()) }
            return replies
        }
        try checkAvailable(replies)
        return replies
    }

    /// Sends commands without reading their replies, so that the caller works while the server runs them; read each
    /// reply, in order, with ``readSent()`` before any other call on this connection.
    ///
    /// - Throws: only I/O or timeout errors, which break the connection.
    func send(_ commands: [[RedisArgument]]) throws(RedisError) {
        if commands.isEmpty { return }
        ThroughputCounters.shared.brokerRoundTrip()
        try use(owingReplies: true) { context throws(RedisError) in
            for command in commands { try context.append(command) }
            try context.flush()
        }
        unreadReplies += commands.count
    }

    /// The next reply owed to a command sent by ``send(_:)``, waiting for it up to ``commandTimeout``. An error
    /// reply is returned as ``RedisReply/error(_:)``, as ``pipeline(_:)`` returns it.
    func readSent() throws(RedisError) -> RedisReply {
        precondition(unreadReplies > 0, "no reply is owed on this connection")
        let reply = try use(owingReplies: true) { context throws(RedisError) in try context.readReply() }
        unreadReplies -= 1
        try checkAvailable([reply])
        return reply
    }

    /// Turns a `READONLY`/`LOADING`/`MASTERDOWN` reply into an error that breaks this connection, so that every
    /// caller reconnects with backoff as after a dropped socket.
    private func checkAvailable(_ replies: [RedisReply]) throws(RedisError) {
        guard let text = replies.lazy.compactMap(\.errorMessage).first(where: RedisError.isUnavailableReply) else {
            return
        }
        let error = RedisError(code: .unavailable, message: "\(url.redacted) cannot serve this client now", cause: text)
        brokenBy = error
        throw error
    }

    /// Changes how long later commands may wait for their replies; `nil` waits forever.
    public func setCommandTimeout(_ timeout: Duration?) throws(RedisError) {
        precondition(timeout.map { $0 > .zero } ?? true, "a command timeout must be positive or nil")
        try use { context throws(RedisError) in try context.setTimeout(timeout) }
        commandTimeout = timeout
    }

    /// Waits up to `timeout` for a message the server sends on its own (a pub/sub message after `SUBSCRIBE`), and
    /// returns it; `nil` when nothing arrived in time. Not for replies to commands.
    ///
    /// Once the first byte of a message has arrived, the rest is read within ``commandTimeout``.
    public func receive(timeout: Duration) throws(RedisError) -> RedisReply? {
        try use { context throws(RedisError) -> RedisReply? in
            if let reply = try context.bufferedReply() { return reply }
            guard try context.waitUntilReadable(timeout: timeout) else { return nil }
            return try context.readReply()
        }
    }

    /// Sends one command whose reply may take `extra` longer than ``commandTimeout`` (a blocking command such as
    /// `BLMOVE … timeout`), then puts the usual timeout back. Error replies are returned, not thrown.
    func commandAllowingDelay(_ arguments: [RedisArgument], extra: Duration) throws(RedisError) -> RedisReply {
        ThroughputCounters.shared.brokerRoundTrip()
        guard let usual = commandTimeout else {
            return try use { context throws(RedisError) in try context.command(arguments) }
        }
        return try use { context throws(RedisError) in
            try context.setTimeout(usual + extra)
            let reply = try context.command(arguments)
            try context.setTimeout(usual)
            return reply
        }
    }

    // MARK: - Private

    /// Runs `body` on the context, recording an error that breaks the connection.
    private func use<Result>(
        owingReplies: Bool = false,
        _ body: (borrowing HiredisContext) throws(RedisError) -> Result
    ) throws(RedisError) -> Result {
        if let brokenBy { throw brokenBy }
        precondition(owingReplies || unreadReplies == 0, "a reply to a command sent earlier is still to be read")
        do throws(RedisError) {
            return try body(context)
        } catch {
            if error.breaksConnection { brokenBy = error }
            throw error
        }
    }

    /// `AUTH`, `SELECT` and `CLIENT SETNAME` in one round trip, or a `PING` so that a server that wants a password
    /// says so now (`NOAUTH`) rather than on the first real command.
    private static func logIn(_ context: borrowing HiredisContext, url: RedisURL, clientName: String?)
        throws(RedisError)
    {
        var steps: [(name: String, arguments: [RedisArgument])] = []
        if let password = url.password {
            if let username = url.username {
                steps.append(("AUTH", ["AUTH", RedisArgument(username), RedisArgument(password)]))
            } else {
                steps.append(("AUTH", ["AUTH", RedisArgument(password)]))
            }
        }
        if url.database != 0 { steps.append(("SELECT \(url.database)", ["SELECT", RedisArgument(url.database)])) }
        if let clientName { steps.append(("CLIENT SETNAME", ["CLIENT", "SETNAME", RedisArgument(clientName)])) }
        if steps.isEmpty { steps.append(("PING", ["PING"])) }
        for step in steps { try context.append(step.arguments) }
        var replies: [RedisReply] = []
        for _ in steps { replies.append(try context.readReply()) }
        for (step, reply) in zip(steps, replies) {
            guard case .error(let text) = reply else { continue }
            let hint: String
            if text.hasPrefix("NOAUTH") {
                hint = "the server requires a password; put it in the URL as redis://:PASSWORD@host"
            } else if text.hasPrefix("WRONGPASS") || text.contains("invalid password") {
                hint = "check the user name and password in the URL"
            } else if step.name.hasPrefix("SELECT") {
                hint = "the database number is not valid on this server"
            } else {
                hint = "the server refused it"
            }
            throw RedisError(
                code: .connect,
                message: "\(step.name) on \(url.redacted) failed: \(hint)",
                cause: text
            )
        }
    }
}
