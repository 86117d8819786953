import SwiftqCore

/// Where a RabbitMQ broker is and how to log in: a parsed `amqp://` or `amqps://` broker URL.
///
/// The form and the defaults are kombu's and py-amqp's, so a Celery user's `broker_url` means the same here:
/// `amqp://[user[:password]@]host[:port][/vhost][?heartbeat=S&connect_timeout=S]`.
/// - user and password default to `guest`/`guest`, the host to `localhost`, the port to 5672 (`amqp`) or 5671
///   (`amqps`, which means TLS);
/// - the vhost is the path without its first `/`, percent-decoded: no path or `/` means vhost `/`, `//` means vhost
///   `/` too (the form Celery's docs use), `/%2f` is `/`, `/prod` is `prod`, `/a%2Fb` is `a/b`;
/// - user, password and host are percent-decoded as well (write `@` in a password as `%40`); an IPv6 host is written
///   in brackets, `amqp://[::1]:5672//`;
/// - `heartbeat` and `connect_timeout` are seconds (fractions allowed, `heartbeat=0` turns heartbeats off). Any
///   other query parameter is refused, because silently ignoring an option would hide a misconfiguration.
public struct AMQPURL: Sendable, Equatable, CustomStringConvertible {
    /// The broker's host name or address (without IPv6 brackets).
    public var host: String
    /// The TCP port.
    public var port: Int
    /// The user name for the PLAIN login.
    public var user: String
    /// The password for the PLAIN login; never printed (see ``redacted``).
    public var password: String
    /// The virtual host, already percent-decoded: `/` by default.
    public var virtualHost: String
    /// Whether to connect with TLS (`amqps://`).
    public var usesTLS: Bool
    /// The `heartbeat` query parameter, when given.
    public var heartbeat: Duration?
    /// The `connect_timeout` query parameter, when given.
    public var connectTimeout: Duration?

    /// The default port for `amqp://`.
    public static let defaultPort = 5672
    /// The default port for `amqps://`.
    public static let defaultTLSPort = 5671

    /// Creates a URL from its parts.
    public init(
        host: String = "localhost",
        port: Int? = nil,
        user: String = "guest",
        password: String = "guest",
        virtualHost: String = "/",
        usesTLS: Bool = false,
        heartbeat: Duration? = nil,
        connectTimeout: Duration? = nil
    ) {
        self.host = host
        self.port = port ?? (usesTLS ? Self.defaultTLSPort : Self.defaultPort)
        self.user = user
        self.password = password
        self.virtualHost = virtualHost
        self.usesTLS = usesTLS
        self.heartbeat = heartbeat
        self.connectTimeout = connectTimeout
    }

    /// Parses an `amqp://` or `amqps://` URL.
    ///
    /// - Throws: ``AMQPError`` of kind ``AMQPError/Kind-swift.enum/invalidURL(_:)`` naming the wrong part (scheme,
    ///   port, percent escape, query parameter); the password never appears in it.
    public init(parsing text: String) throws(AMQPError) {
        // Errors quote the URL with its password masked.
        let shown = Self.maskPassword(text)
        guard let schemeEnd = text.firstRange(of: "://") else {
            throw AMQPError.invalidURL(shown, "expected amqp://user:password@host:port/vhost (or amqps://)")
        }
        let scheme = text[..<schemeEnd.lowerBound].lowercased()
        switch scheme {
        case "amqp": usesTLS = false
        case "amqps": usesTLS = true
        default:
            throw AMQPError.invalidURL(shown, "unknown scheme '\(scheme)': use amqp:// or amqps://")
        }
        var rest = Substring(text[schemeEnd.upperBound...])
        if rest.contains("#") {
            throw AMQPError.invalidURL(shown, "a URL fragment ('#') is not allowed; percent-encode '#' as %23")
        }
        var query: Substring = ""
        if let mark = rest.firstIndex(of: "?") {
            query = rest[rest.index(after: mark)...]
            rest = rest[..<mark]
        }

        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        var authority = rest[..<slash]
        let path = rest[slash...]
        user = "guest"
        password = "guest"
        if let at = authority.lastIndex(of: "@") {
            let userInfo = authority[..<at]
            authority = authority[authority.index(after: at)...]
            if let colon = userInfo.firstIndex(of: ":") {
                user = try Self.decode(userInfo[..<colon], "user name", shown)
                password = try Self.decode(userInfo[userInfo.index(after: colon)...], "password", shown)
            } else {
                user = try Self.decode(userInfo, "user name", shown)
            }
        }

        var hostText = authority
        var portText: Substring?
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else {
                throw AMQPError.invalidURL(shown, "an IPv6 address must end with ']'")
            }
            hostText = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else {
                    throw AMQPError.invalidURL(shown, "expected ':port' after the IPv6 address, got '\(after)'")
                }
                portText = after.dropFirst()
            }
        } else if let colon = authority.lastIndex(of: ":") {
            hostText = authority[..<colon]
            portText = authority[authority.index(after: colon)...]
        }
        let decodedHost = try Self.decode(hostText, "host", shown)
        host = decodedHost.isEmpty ? "localhost" : decodedHost
        if let portText, !portText.isEmpty {
            guard let number = Int(portText), (1...65535).contains(number) else {
                throw AMQPError.invalidURL(shown, "the port must be a number from 1 to 65535, not '\(portText)'")
            }
            port = number
        } else {
            port = usesTLS ? Self.defaultTLSPort : Self.defaultPort
        }

        // kombu: the vhost is the path after its first '/', and an empty one is the default "/".
        let vhost = try Self.decode(path.dropFirst(), "vhost", shown)
        virtualHost = vhost.isEmpty ? "/" : vhost

        heartbeat = nil
        connectTimeout = nil
        for pair in query.split(separator: "&", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = try Self.decode(parts[0], "query parameter name", shown)
            let value = parts.count > 1 ? try Self.decode(parts[1], "query parameter \(name)", shown) : ""
            switch name {
            case "heartbeat":
                heartbeat = try Self.seconds(value, name, shown)
            case "connect_timeout":
                connectTimeout = try Self.seconds(value, name, shown)
            default:
                throw AMQPError.invalidURL(
                    shown,
                    "unknown query parameter '\(name)' (swiftq reads heartbeat and connect_timeout; TLS files are "
                        + "set in the configuration's broker.tls, not in the URL)"
                )
            }
        }
    }

    /// The URL with the password replaced by `****`, for logs: `amqp://guest:****@rabbit:5672/prod`. The vhost `/`
    /// is written `//` as in Celery's docs; other characters that need it are percent-encoded.
    public var redacted: String {
        let scheme = usesTLS ? "amqps" : "amqp"
        let shownHost = host.contains(":") ? "[\(host)]" : host
        return
            "\(scheme)://\(Self.encode(user)):****@\(shownHost):\(port)/\(Self.encode(virtualHost, keepSlash: false))"
    }

    /// The same as ``redacted``: a URL is never printed with its password.
    public var description: String { redacted }

    /// `host:port`, for messages (IPv6 in brackets).
    var endpoint: String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    // MARK: - Helpers

    private static func seconds(_ value: String, _ name: String, _ url: String) throws(AMQPError) -> Duration {
        guard let number = Double(value), number.isFinite, number >= 0, number <= 86_400 else {
            throw AMQPError.invalidURL(url, "\(name) must be a number of seconds from 0 to 86400, not '\(value)'")
        }
        return .milliseconds(Int64((number * 1000).rounded()))
    }

    /// Percent-decodes `text` as UTF-8; `+` stays a plus (kombu unquotes with `unquote`, not `unquote_plus`).
    private static func decode(_ text: Substring, _ part: String, _ url: String) throws(AMQPError) -> String {
        do {
            return try PercentDecoding.decode(text)
        } catch {
            throw AMQPError.invalidURL(url, "the \(part) \(error)")
        }
    }

    /// Percent-encodes everything but unreserved characters (and `/` when `keepSlash`). The vhost `/` is written as
    /// `/` so that the URL ends in `//`, as Celery users write it.
    private static func encode(_ text: String, keepSlash: Bool = false) -> String {
        if text == "/" { return "/" }
        var result = ""
        for byte in text.utf8 {
            let scalar = Unicode.Scalar(byte)
            let unreserved =
                (byte < 0x80 && (scalar.properties.isAlphabetic || ("0"..."9").contains(Character(scalar))))
                || "-._~".utf8.contains(byte) || (keepSlash && byte == UInt8(ascii: "/"))
            if unreserved {
                result.unicodeScalars.append(scalar)
            } else {
                result += "%" + (byte < 16 ? "0" : "") + String(byte, radix: 16, uppercase: true)
            }
        }
        return result
    }

    /// The URL text with whatever is between `user:` and `@` replaced by `****`, for error messages about a URL that
    /// did not parse.
    static func maskPassword(_ text: String) -> String {
        guard let schemeEnd = text.firstRange(of: "://") else { return text }
        let rest = text[schemeEnd.upperBound...]
        let authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        guard let at = authority.lastIndex(of: "@"), let colon = authority[..<at].firstIndex(of: ":") else {
            return text
        }
        return String(text[..<authority.index(after: colon)]) + "****" + String(text[at...])
    }
}
