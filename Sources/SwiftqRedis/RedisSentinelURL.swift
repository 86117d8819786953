/// A Redis deployment reached through Redis Sentinel: the sentinels to ask, the name of the master they monitor, and
/// how to log in to that master. Written as kombu's `SentinelChannel` and Celery's `SentinelBackend` read it:
///
/// `sentinel://[[user]:password@]host[:port][/db];sentinel://host2[:port2];…` with the transport option `master_name`
/// (`broker.master_name` / `result_backend.master_name` in swiftq's YAML).
///
/// - Each `;`-separated element is one sentinel (port 26379 by default); they are asked in order.
/// - The user name, password and database are the *master's*, as kombu and Celery use them (the sentinels are asked
///   without credentials); they are taken from the first element. A later element may repeat them, but not contradict
///   them, since kombu would silently use the first.
/// - An element without a host (`sentinel://`, `sentinel://:26379`) or an empty element (`;;`) is refused: kombu
///   would quietly ask `localhost`, which hides a missing address.
public struct RedisSentinelURL: Sendable, Equatable, CustomStringConvertible {
    /// One sentinel's address.
    public struct Address: Sendable, Equatable, CustomStringConvertible {
        public var host: String
        public var port: Int

        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }

        /// `host:port`, IPv6 in brackets.
        public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
    }

    /// Redis Sentinel's default port.
    public static let defaultPort = 26379

    /// The sentinels, in the order they are asked.
    public var sentinels: [Address]
    /// The name the sentinels monitor the master under (`sentinel monitor <name> …`).
    public var masterName: String
    /// The master's ACL user, or `nil`.
    public var username: String?
    /// The master's password, or `nil`.
    public var password: String?
    /// The master's database.
    public var database: Int

    public init(
        sentinels: [Address],
        masterName: String,
        username: String? = nil,
        password: String? = nil,
        database: Int = 0
    ) {
        self.sentinels = sentinels
        self.masterName = masterName
        self.username = username
        self.password = password
        self.database = database
    }

    /// Whether `text` is a sentinel URL (its scheme is `sentinel`), whatever else it says.
    public static func isSentinel(_ text: String) -> Bool {
        trimmed(Substring(text)).lowercased().hasPrefix("sentinel://")
    }

    /// Parses a `;`-separated list of `sentinel://` URLs. Every error is a ``RedisError`` with code
    /// ``RedisError/Code-swift.struct/invalidURL``; passwords never appear in it.
    public init(parsing text: String, masterName: String?) throws(RedisError) {
        let shown = text.split(separator: ";", omittingEmptySubsequences: false)
            .map { RedisURL.redactedForError(String($0)) }.joined(separator: ";")
        func invalid(_ reason: String) -> RedisError {
            RedisError(code: .invalidURL, message: "invalid Redis Sentinel URL '\(shown)': \(reason)")
        }
        guard let masterName, !masterName.isEmpty else {
            throw invalid(
                "master_name is not set: name the master the sentinels monitor (kombu's transport option "
                    + "master_name; broker.master_name or result_backend.master_name in the configuration)"
            )
        }
        var sentinels: [Address] = []
        var first: RedisURL?
        for (index, raw) in text.split(separator: ";", omittingEmptySubsequences: false).enumerated() {
            let element = Self.trimmed(raw)
            let position = "sentinel \(index + 1)"
            guard !element.isEmpty else {
                throw invalid(
                    "\(position) is empty; separate sentinels with one ';', as in sentinel://h1;sentinel://h2"
                )
            }
            guard element.lowercased().hasPrefix("sentinel://") else {
                throw invalid("\(position) is not a sentinel:// URL; every element of the list must be one")
            }
            guard Self.hasHost(element) else {
                throw invalid("\(position) names no host; write sentinel://HOST[:PORT] for each sentinel")
            }
            let url = try RedisURL(parsing: element, allowingSentinel: true)
            guard case .tcp(let host, let port) = url.endpoint else {
                throw invalid("\(position) is not a TCP address")
            }
            if let first {
                let agrees =
                    (url.password == nil || url.password == first.password)
                    && (url.username == nil || url.username == first.username)
                    && (url.database == 0 || url.database == first.database)
                guard agrees else {
                    throw invalid(
                        "\(position) gives another user, password or database than the first; the first one's are "
                            + "used for the master, so give them there only"
                    )
                }
            } else {
                first = url
            }
            let address = Address(host: host, port: port)
            if !sentinels.contains(address) { sentinels.append(address) }
        }
        guard let first else { throw invalid("no sentinel is given") }
        self.init(
            sentinels: sentinels,
            masterName: masterName,
            username: first.username,
            password: first.password,
            database: first.database
        )
    }

    private static func trimmed(_ text: Substring) -> String {
        String(
            text.drop(while: { $0 == " " || $0 == "\t" }).reversed().drop(while: { $0 == " " || $0 == "\t" }).reversed()
        )
    }

    /// Whether a `sentinel://…` element has a host between its user info and its port, path or query.
    private static func hasHost(_ element: String) -> Bool {
        guard let schemeEnd = element.firstRange(of: "://") else { return false }
        var authority = element[schemeEnd.upperBound...]
        if let end = authority.firstIndex(where: { $0 == "/" || $0 == "?" }) { authority = authority[..<end] }
        if let at = authority.lastIndex(of: "@") { authority = authority[authority.index(after: at)...] }
        return !authority.isEmpty && !authority.hasPrefix(":")
    }

    /// The master at `host:port` with this URL's credentials and database.
    public func master(host: String, port: Int) -> RedisURL {
        RedisURL(endpoint: .tcp(host: host, port: port), username: username, password: password, database: database)
    }

    /// The list without the password, for logs: `sentinel://:***@h1:26379/0;sentinel://h2:26379/0 (master mymaster)`.
    public var redacted: String {
        let credentials = password == nil ? "" : (username ?? "") + ":***@"
        let list = sentinels.enumerated().map { index, address in
            "sentinel://\(index == 0 ? credentials : "")\(address)/\(database)"
        }
        return list.joined(separator: ";") + " (master \(masterName))"
    }

    public var description: String { redacted }
}
