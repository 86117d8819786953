import SwiftqCore

/// Where a Redis server is and how to log in: a parsed broker or result-backend URL.
///
/// Accepted forms, as Celery users write them for kombu and redis-py:
/// - `redis://[[user]:password@]host[:port][/db]` (TCP; `host` may be an IPv6 literal in brackets),
/// - `redis+socket:///path/to.sock?db=N&password=…` (kombu's unix-socket form),
/// - `unix:///path/to.sock?db=N&password=…` (redis-py's form; `unix://[[user]:password@]/path` works too).
///
/// The port defaults to 6379 and the database to 0. The user name, password, socket path and query values are
/// percent-decoded, so a password containing `@`, `:` or `/` is written `%40`, `%3A`, `%2F`. `rediss://` is
/// refused with an explanation: Debian 12's hiredis 0.14 has no TLS. Unknown query parameters are refused too,
/// because silently ignoring an option (a timeout, `ssl_cert_reqs`) would hide a misconfiguration.
public struct RedisURL: Sendable, Equatable, CustomStringConvertible {
    /// How to reach the server.
    public enum Endpoint: Sendable, Equatable {
        /// A TCP host name or address, and port.
        case tcp(host: String, port: Int)
        /// A unix-domain socket path.
        case unix(path: String)
    }

    /// The default Redis TCP port.
    public static let defaultPort = 6379
    /// The longest unix socket path `sockaddr_un` holds; hiredis 0.14 would silently cut a longer one.
    public static let maximumSocketPathLength = 107

    /// How to reach the server.
    public var endpoint: Endpoint
    /// The ACL user for `AUTH user password`; `nil` authenticates as the default user (`AUTH password`).
    public var username: String?
    /// The password; `nil` sends no `AUTH`.
    public var password: String?
    /// The database number for `SELECT`.
    public var database: Int

    /// Creates a URL from its parts.
    public init(endpoint: Endpoint, username: String? = nil, password: String? = nil, database: Int = 0) {
        self.endpoint = endpoint
        self.username = username
        self.password = password
        self.database = database
    }

    /// Parses a `redis://`, `redis+socket://` or `unix://` URL.
    ///
    /// Every error is a ``RedisError`` with code ``RedisError/Code-swift.struct/invalidURL`` whose message names
    /// the problem; the password never appears in it.
    public init(parsing text: String) throws(RedisError) {
        try self.init(parsing: text, allowingSentinel: false)
    }

    /// Parses a server URL, or with `allowingSentinel` one `sentinel://` element of a sentinel list (TCP only, port
    /// 26379 by default): ``RedisSentinelURL`` reads its lists with this.
    init(parsing text: String, allowingSentinel: Bool) throws(RedisError) {
        guard let schemeEnd = text.firstRange(of: "://") else {
            throw Self.invalid(text, "expected redis://host[:port][/db] or redis+socket:///path/to.sock")
        }
        let scheme = text[..<schemeEnd.lowerBound].lowercased()
        var rest = Substring(text[schemeEnd.upperBound...])
        if rest.contains("#") { throw Self.invalid(text, "a URL fragment ('#') is not allowed; percent-encode '#'") }
        var query: Substring = ""
        if let mark = rest.firstIndex(of: "?") {
            query = rest[rest.index(after: mark)...]
            rest = rest[..<mark]
        }
        let parameters = try Self.parseQuery(query, url: text)

        var username: String?
        var password: String?
        var pathDatabase: Int?
        let endpoint: Endpoint
        switch scheme {
        case "sentinel" where !allowingSentinel:
            throw Self.invalid(
                text,
                "sentinel:// names Redis Sentinels, not a server: use it as broker.url or result_backend.url "
                    + "together with master_name"
            )
        case "redis", "sentinel":
            let slash = rest.firstIndex(of: "/") ?? rest.endIndex
            var authority = rest[..<slash]
            let path = rest[slash...]
            if let at = authority.lastIndex(of: "@") {
                (username, password) = try Self.parseUserInfo(authority[..<at], url: text)
                authority = authority[authority.index(after: at)...]
            }
            let (host, port) = try Self.parseHostPort(
                authority,
                url: text,
                defaultPort: scheme == "sentinel" ? RedisSentinelURL.defaultPort : Self.defaultPort
            )
            endpoint = .tcp(host: host, port: port)
            if path.count > 1 {
                guard let number = Int(path.dropFirst()), number >= 0 else {
                    throw Self.invalid(
                        text,
                        "the database after '/' must be a number 0 or more, not '\(path.dropFirst())'"
                    )
                }
                pathDatabase = number
            }
        case "redis+socket", "unix":
            if !rest.hasPrefix("/") {
                guard let at = Self.lastIndex(of: "@/", in: rest) else {
                    throw Self.invalid(
                        text,
                        "expected an absolute socket path, as in \(scheme):///run/redis/redis.sock"
                    )
                }
                (username, password) = try Self.parseUserInfo(rest[..<at], url: text)
                rest = rest[rest.index(after: at)...]
            }
            let path = try Self.percentDecoded(rest, part: "socket path", url: text)
            if path.utf8.count > Self.maximumSocketPathLength {
                throw Self.invalid(
                    text,
                    "the socket path is \(path.utf8.count) bytes; unix sockets allow at most "
                        + "\(Self.maximumSocketPathLength)"
                )
            }
            if path == "/" { throw Self.invalid(text, "the socket path is missing") }
            endpoint = .unix(path: path)
        case "rediss":
            throw Self.invalid(
                text,
                "TLS is not supported: hiredis 0.14 on Debian 12 has no TLS; use a local stunnel or redis+socket"
            )
        default:
            throw Self.invalid(text, "unsupported scheme '\(scheme)'; use redis://, redis+socket:// or unix://")
        }

        for (key, value) in parameters {
            switch key {
            case "db":
                guard let number = Int(value), number >= 0 else {
                    throw Self.invalid(text, "db= must be a number 0 or more, not '\(value)'")
                }
                if let pathDatabase, pathDatabase != number {
                    throw Self.invalid(text, "the database is given twice (/\(pathDatabase) and db=\(number))")
                }
                pathDatabase = number
            case "password":
                if password != nil { throw Self.invalid(text, "the password is given twice (user info and query)") }
                password = value
            case "username":
                if username != nil { throw Self.invalid(text, "the user name is given twice (user info and query)") }
                username = value
            default:
                throw Self.invalid(
                    text,
                    "unknown query parameter '\(key)'; only db, password and username are accepted"
                )
            }
        }
        if username != nil && password == nil {
            throw Self.invalid(
                text,
                "a user name without a password; write redis://:PASSWORD@host for a password alone, "
                    + "or redis://USER:PASSWORD@host"
            )
        }
        self.init(endpoint: endpoint, username: username, password: password, database: pathDatabase ?? 0)
    }

    /// The URL with the password replaced by `***`, for logs. TCP URLs are written in full
    /// (`redis://:***@host:6379/0`), unix sockets as `redis+socket:///path?db=N`.
    public var redacted: String {
        var credentials = ""
        if password != nil { credentials = (username ?? "") + ":***@" }
        switch endpoint {
        case .tcp(let host, let port):
            let shownHost = host.contains(":") ? "[\(host)]" : host
            return "redis://\(credentials)\(shownHost):\(port)/\(database)"
        case .unix(let path):
            return "redis+socket://\(credentials)\(path)?db=\(database)"
        }
    }

    /// The same as ``redacted``: a URL is never printed with its password.
    public var description: String { redacted }
}

// MARK: - Parsing helpers

extension RedisURL {
    static func invalid(_ url: String, _ reason: String) -> RedisError {
        RedisError(code: .invalidURL, message: "invalid Redis URL '\(redactedForError(url))': \(reason)")
    }

    /// The URL text as given, with anything that may be a password masked, for error messages.
    static func redactedForError(_ url: String) -> String {
        var text = Substring(url)
        var result = ""
        if let schemeEnd = text.firstRange(of: "://") {
            result += text[..<schemeEnd.upperBound]
            text = text[schemeEnd.upperBound...]
        }
        var query: Substring?
        if let mark = text.firstIndex(of: "?") {
            query = text[text.index(after: mark)...]
            text = text[..<mark]
        }
        if let at = text.lastIndex(of: "@") {
            let info = text[..<at]
            if let colon = info.firstIndex(of: ":") {
                result += info[...colon] + "***"
            } else {
                result += "***"
            }
            result += text[at...]
        } else {
            result += text
        }
        if let query {
            let masked = query.split(separator: "&", omittingEmptySubsequences: false).map { pair in
                pair.lowercased().hasPrefix("password=") ? "password=***" : String(pair)
            }
            result += "?" + masked.joined(separator: "&")
        }
        return result
    }

    private static func parseQuery(_ query: Substring, url: String) throws(RedisError) -> [(String, String)] {
        var result: [(String, String)] = []
        for pair in query.split(separator: "&") {
            let key: Substring
            let value: Substring
            if let equals = pair.firstIndex(of: "=") {
                key = pair[..<equals]
                value = pair[pair.index(after: equals)...]
            } else {
                key = pair
                value = ""
            }
            let name = try percentDecoded(key, part: "query parameter name", url: url)
            result.append((name, try percentDecoded(value, part: "value of \(name)", url: url)))
        }
        return result
    }

    private static func parseUserInfo(_ info: Substring, url: String) throws(RedisError) -> (String?, String?) {
        guard let colon = info.firstIndex(of: ":") else {
            let user = try percentDecoded(info, part: "user name", url: url)
            return (user.isEmpty ? nil : user, nil)
        }
        let user = try percentDecoded(info[..<colon], part: "user name", url: url)
        let password = try percentDecoded(info[info.index(after: colon)...], part: "password", url: url)
        return (user.isEmpty ? nil : user, password)
    }

    private static func parseHostPort(
        _ authority: Substring,
        url: String,
        defaultPort: Int
    ) throws(RedisError) -> (String, Int) {
        var host: Substring
        var portText: Substring?
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else {
                throw invalid(url, "an IPv6 address must be closed with ']'")
            }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw invalid(url, "unexpected '\(after)' after the IPv6 address") }
                portText = after.dropFirst()
            }
        } else if let colon = authority.firstIndex(of: ":") {
            if authority[authority.index(after: colon)...].contains(":") {
                throw invalid(url, "write an IPv6 address in brackets, as in redis://[::1]:6379/0")
            }
            host = authority[..<colon]
            portText = authority[authority.index(after: colon)...]
        } else {
            host = authority
        }
        if host.isEmpty { host = "localhost" }
        var port = defaultPort
        if let portText {
            guard let number = Int(portText), (1...65535).contains(number) else {
                throw invalid(url, "the port must be a number from 1 to 65535, not '\(portText)'")
            }
            port = number
        }
        return (try percentDecoded(host, part: "host", url: url), port)
    }

    private static func lastIndex(of needle: String, in text: Substring) -> Substring.Index? {
        text.ranges(of: needle).last?.lowerBound
    }

    /// Decodes `%XX` escapes; the result must be UTF-8. `+` is kept as is (it is not a space in a URL's user info
    /// or path, and redis-py does not turn it into one in query values either).
    private static func percentDecoded(_ text: Substring, part: String, url: String) throws(RedisError) -> String {
        do {
            return try PercentDecoding.decode(text)
        } catch {
            throw invalid(url, "the \(part) \(error)")
        }
    }
}
