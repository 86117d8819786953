/// Where a Redis connection goes: one fixed server, or whichever server the sentinels name master *now*.
///
/// Every connection is made through ``connect(connectTimeout:commandTimeout:clientName:)``, so a reconnect after a
/// lost connection, a `READONLY` reply (an old master demoted to replica) or a failover asks the sentinels again
/// and follows the promotion. What the master said before the failover and had not yet replicated is gone with it:
/// Redis replicates asynchronously (see docs/ARCHITECTURE.md, "Broker failover").
public enum RedisTarget: Sendable, Equatable, CustomStringConvertible {
    /// A server at a fixed address (`redis://`, `redis+socket://`, `unix://`).
    case server(RedisURL)
    /// The master the sentinels monitor under a name (`sentinel://…;sentinel://…` with `master_name`).
    case sentinel(RedisSentinelURL)

    /// Parses a broker or result-backend URL: a sentinel list with `masterName`, or a server URL (which must then
    /// come without `masterName`, which would otherwise be silently ignored).
    public init(parsing url: String, masterName: String? = nil) throws(RedisError) {
        if RedisSentinelURL.isSentinel(url) {
            self = .sentinel(try RedisSentinelURL(parsing: url, masterName: masterName))
            return
        }
        if url.contains(";") {
            throw RedisError(
                code: .invalidURL,
                message: "invalid Redis URL '\(RedisURL.redactedForError(url))': a ';'-separated list of redis:// URLs "
                    + "is not supported; for Redis failover list the sentinels (sentinel://h1;sentinel://h2) and set "
                    + "master_name"
            )
        }
        if let masterName, !masterName.isEmpty {
            throw RedisError(
                code: .invalidURL,
                message: "master_name '\(masterName)' is set but '\(RedisURL.redactedForError(url))' is not a "
                    + "sentinel:// URL; remove master_name or list the sentinels"
            )
        }
        self = .server(try RedisURL(parsing: url))
    }

    /// The database every connection selects.
    public var database: Int {
        switch self {
        case .server(let url): url.database
        case .sentinel(let sentinel): sentinel.database
        }
    }

    /// Whether `other` is the same server (or the same sentinels' master) with the same credentials, in any
    /// database: then one connection reaches the keys of both, a script selecting the other's database.
    public func isSameServer(as other: RedisTarget) -> Bool {
        switch (self, other) {
        case (.server(var mine), .server(let theirs)):
            mine.database = theirs.database
            return mine == theirs
        case (.sentinel(var mine), .sentinel(let theirs)):
            mine.database = theirs.database
            return mine == theirs
        default:
            return false
        }
    }

    /// The target without passwords, for logs.
    public var redacted: String {
        switch self {
        case .server(let url): url.redacted
        case .sentinel(let sentinel): sentinel.redacted
        }
    }

    public var description: String { redacted }

    /// The server to connect to now: the fixed one, or the master the first sentinel that knows `masterName` names.
    ///
    /// - Throws: ``RedisError/Code-swift.struct/connect`` naming every sentinel asked and its answer, when none
    ///   named a master.
    public func resolve(connectTimeout: Duration = .seconds(5)) throws(RedisError) -> RedisURL {
        switch self {
        case .server(let url):
            return url
        case .sentinel(let sentinel):
            return try RedisSentinelResolver.master(of: sentinel, timeout: connectTimeout)
        }
    }

    /// A logged-in connection to the server (``resolve(connectTimeout:)``). Through sentinels, the server is also
    /// asked its `ROLE`: a sentinel may still name a master that was just demoted, and writing to it would only
    /// earn `READONLY` replies.
    public func connect(
        connectTimeout: Duration = .seconds(5),
        commandTimeout: Duration? = .seconds(30),
        clientName: String? = nil
    ) throws(RedisError) -> RedisConnection {
        let url = try resolve(connectTimeout: connectTimeout)
        let connection = try RedisConnection(
            url: url,
            connectTimeout: connectTimeout,
            commandTimeout: commandTimeout,
            clientName: clientName
        )
        guard case .sentinel(let sentinel) = self else { return connection }
        let role = try connection.command("ROLE").array?.first?.string
        guard role == "master" else {
            throw RedisError(
                code: .connect,
                message: "the sentinels named \(url.redacted) master of '\(sentinel.masterName)', but it says it is "
                    + "\(role ?? "of no known role") (a failover is under way)"
            )
        }
        return connection
    }
}

/// Asks sentinels for the address of a master (`SENTINEL get-master-addr-by-name`).
enum RedisSentinelResolver {
    static func master(of sentinel: RedisSentinelURL, timeout: Duration) throws(RedisError) -> RedisURL {
        var answers: [String] = []
        for address in sentinel.sentinels {
            let reply: RedisReply
            do {
                // Sentinels are asked without the master's credentials or database (kombu and Celery do the same).
                let connection = try RedisConnection(
                    url: RedisURL(endpoint: .tcp(host: address.host, port: address.port)),
                    connectTimeout: timeout,
                    commandTimeout: timeout
                )
                reply = try connection.command(
                    "SENTINEL",
                    "get-master-addr-by-name",
                    RedisArgument(sentinel.masterName)
                )
            } catch {
                answers.append("\(address): \(error.cause ?? error.message)")
                continue
            }
            guard let parts = reply.array, parts.count == 2, let host = parts[0].string,
                let port = parts[1].string.flatMap(Int.init), (1...65535).contains(port)
            else {
                answers.append("\(address): does not know a master named '\(sentinel.masterName)'")
                continue
            }
            return sentinel.master(host: host, port: port)
        }
        throw RedisError(
            code: .connect,
            message: "no sentinel named a master for '\(sentinel.masterName)'",
            cause: answers.joined(separator: "; ")
        )
    }
}
