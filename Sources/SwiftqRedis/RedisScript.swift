/// A Lua script run with `EVALSHA`, loaded once per connection.
///
/// The first use on a connection sends `SCRIPT LOAD` and remembers the SHA1 the server returns; later uses send only
/// `EVALSHA <sha>` and the arguments. If the server has lost the script (`NOSCRIPT`: it restarted behind a proxy, or
/// someone ran `SCRIPT FLUSH`), it is loaded again and the call repeated once.
///
/// A script runs atomically on the server: no other command runs in the middle of it, and a client crash can only
/// happen before or after it. That is why every multi-step change to the kombu layout is a single script here.
public struct RedisScript: Sendable, Hashable {
    /// A short name for error messages (`"kombu.reserve"`).
    public let name: String
    /// The Lua source.
    public let source: String

    /// A script with a name for messages.
    public init(name: String, source: String) {
        self.name = name
        self.source = source
    }

    /// A call sent by ``RedisConnection/send(_:keys:arguments:)`` whose reply is still to be read
    /// (``RedisConnection/reply(to:)``).
    public struct Sent: Sendable {
        let script: RedisScript
        let call: Call
    }

    /// The keys and arguments of one call, for ``RedisConnection/runPipelined(_:calls:)``.
    public struct Call: Sendable, Hashable {
        /// `KEYS[1…]`.
        public var keys: [RedisArgument]
        /// `ARGV[1…]`.
        public var arguments: [RedisArgument]

        /// A call with these keys and arguments.
        public init(keys: [RedisArgument] = [], arguments: [RedisArgument] = []) {
            self.keys = keys
            self.arguments = arguments
        }
    }
}

extension RedisConnection {
    /// Runs a script and returns its reply.
    ///
    /// - Throws: ``RedisError/Code-swift.struct/script`` when the script fails on the server (the connection stays
    ///   usable); I/O errors as for ``command(_:)-([RedisArgument])``.
    public func run(_ script: RedisScript, keys: [RedisArgument] = [], arguments: [RedisArgument] = [])
        throws(RedisError) -> RedisReply
    {
        try reply(to: try send(script, keys: keys, arguments: arguments))
    }

    /// Runs a script once per call, all in one round trip, and returns the replies in order. A call that fails on
    /// the server comes back as ``RedisReply/error(_:)`` and does not stop the others.
    public func runPipelined(_ script: RedisScript, calls: [RedisScript.Call]) throws(RedisError) -> [RedisReply] {
        try runPipelined(script, calls: calls, after: []).calls
    }

    /// Sends `commands`, then runs the script once per call, all in one round trip: what does not need its own
    /// (Celery's events) rides along with a script's. Only the script calls are sent again if the server lost the
    /// script; the commands' replies are returned as they came.
    public func runPipelined(
        _ script: RedisScript,
        calls: [RedisScript.Call],
        after commands: [[RedisArgument]]
    ) throws(RedisError) -> (commands: [RedisReply], calls: [RedisReply]) {
        if calls.isEmpty { return (try pipeline(commands), []) }
        var sha = try load(script, force: false)
        let all = try pipeline(commands + calls.map { Self.evalsha(sha, $0) })
        let commandReplies = Array(all[..<commands.count])
        var replies = Array(all[commands.count...])
        let lost = replies.indices.filter { replies[$0].errorMessage?.hasPrefix("NOSCRIPT") == true }
        if !lost.isEmpty {
            sha = try load(script, force: true)
            let again = try pipeline(lost.map { Self.evalsha(sha, calls[$0]) })
            for (index, reply) in zip(lost, again) { replies[index] = reply }
        }
        return (commandReplies, replies)
    }

    /// Sends one call of a script without reading its reply (``RedisConnection/send(_:)``): the caller works while
    /// the server runs it, then reads the reply with ``reply(to:)`` before any other call on this connection.
    public func send(_ script: RedisScript, keys: [RedisArgument] = [], arguments: [RedisArgument] = [])
        throws(RedisError) -> RedisScript.Sent
    {
        let call = RedisScript.Call(keys: keys, arguments: arguments)
        try send([Self.evalsha(try load(script, force: false), call)])
        return RedisScript.Sent(script: script, call: call)
    }

    /// The reply to a call sent by ``send(_:keys:arguments:)``, as ``run(_:keys:arguments:)`` returns it: if the
    /// server had lost the script, it is loaded again and the call repeated.
    public func reply(to sent: RedisScript.Sent) throws(RedisError) -> RedisReply {
        var reply = try readSent()
        if reply.errorMessage?.hasPrefix("NOSCRIPT") == true {
            reply = try pipeline([Self.evalsha(try load(sent.script, force: true), sent.call)])[0]
        }
        return try reply.orThrow(sent.script)
    }

    /// The script's SHA1 on this connection's server, loading it first if needed.
    private func load(_ script: RedisScript, force: Bool) throws(RedisError) -> String {
        if !force, let loaded = loadedScripts[script.name], loaded.source == script.source { return loaded.sha }
        let reply: RedisReply
        do throws(RedisError) {
            reply = try command("SCRIPT", "LOAD", RedisArgument(script.source))
        } catch  where error.code == .server {
            throw RedisError(code: .script, message: "loading script \(script.name) failed", cause: error.cause)
        }
        guard let sha = reply.string, sha.utf8.count == 40 else {
            throw RedisError(code: .script, message: "SCRIPT LOAD of \(script.name) returned \(reply)")
        }
        loadedScripts[script.name] = (script.source, sha)
        return sha
    }

    private static func evalsha(_ sha: String, _ call: RedisScript.Call) -> [RedisArgument] {
        ["EVALSHA", RedisArgument(sha), RedisArgument(call.keys.count)] + call.keys + call.arguments
    }
}

extension RedisReply {
    /// The reply itself, or a ``RedisError/Code-swift.struct/script`` error for an error reply.
    func orThrow(_ script: RedisScript) throws(RedisError) -> RedisReply {
        if case .error(let text) = self {
            throw RedisError(code: .script, message: "script \(script.name) failed", cause: text)
        }
        return self
    }
}
