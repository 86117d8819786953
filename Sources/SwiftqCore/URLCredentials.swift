/// The password inside a broker or result-backend URL: whether there is one, putting one in, and masking it.
///
/// Works on the text of any `scheme://[user[:password]@]rest` URL without understanding the rest, so it serves
/// Redis (`redis://:pw@host/0`, `unix://:pw@/path`, `?password=pw`) and AMQP (`amqp://user:pw@host//`) alike, and
/// keeps everything it does not touch byte for byte. Passwords it puts in are percent-encoded, as every URL
/// parser of the project (and kombu's) percent-decodes them.
public enum URLCredentials {
    /// What replaces a password in masked output (`redis://:***@host:6379/0`), as kombu's `maybe_sanitize_url`
    /// does with `**`.
    public static let mask = "***"

    /// Whether `url` carries a password, in its user info (`user:pw@`, `:pw@`) or as a `password=` query parameter.
    public static func hasPassword(_ url: String) -> Bool {
        if let list = failoverList(url) { return list.contains(where: hasPassword) }
        guard let parts = Parts(url) else {
            return false
        }
        if let userInfo = parts.userInfo, let colon = userInfo.firstIndex(of: ":"),
            userInfo.index(after: colon) < userInfo.endIndex
        {
            return true
        }
        return parts.queryItems.contains { $0.key == "password" }
    }

    /// `url` with `password` (percent-encoded) in its user info, keeping the user name if there is one.
    /// `url` must not already have a password (see ``hasPassword(_:)``).
    public static func settingPassword(_ password: String, in url: String) -> String {
        if let list = failoverList(url) {
            // AMQP hosts each log in with it; for sentinels, kombu reads the master's password from the first.
            let isSentinel = list[0].lowercased().hasPrefix("sentinel://")
            return list.enumerated().map { index, element in
                isSentinel && index > 0 ? element : settingPassword(password, in: element)
            }.joined(separator: ";")
        }
        guard let parts = Parts(url) else {
            return url
        }
        var user = Substring("")
        if let userInfo = parts.userInfo {
            user = userInfo.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)[0]
        }
        return parts.prefix + user + ":" + percentEncoded(password) + "@" + parts.rest
    }

    /// `url` with the password in its user info and any `password=` query value replaced by ``mask``, for output
    /// that people read (`--print-config`, logs).
    public static func masked(_ url: String) -> String {
        if let list = failoverList(url) { return list.map(masked).joined(separator: ";") }
        guard let parts = Parts(url) else {
            return url
        }
        var result = String(parts.prefix)
        if let userInfo = parts.userInfo {
            if let colon = userInfo.firstIndex(of: ":") {
                result += userInfo[...colon] + mask + "@"
            } else {
                result += userInfo + "@"
            }
        }
        guard let question = parts.rest.firstIndex(of: "?") else {
            return result + parts.rest
        }
        result += parts.rest[...question]
        let query = parts.rest[parts.rest.index(after: question)...]
        let items = query.split(separator: "&", omittingEmptySubsequences: false).map { item in
            item.split(separator: "=", maxSplits: 1).first == "password" ? "password=\(mask)" : String(item)
        }
        return result + items.joined(separator: "&")
    }

    /// The elements of kombu's `;`-separated failover list (`amqp://h1//;amqp://h2//`, `sentinel://a;sentinel://b`),
    /// or `nil` for a single URL.
    private static func failoverList(_ url: String) -> [String]? {
        let list = url.split(separator: ";", omittingEmptySubsequences: false).map(String.init)
        return list.count > 1 ? list : nil
    }

    /// Every byte outside RFC 3986's unreserved characters as `%XX`, so `@`, `:`, `/` and `%` in a password
    /// cannot end the user info early.
    static func percentEncoded(_ text: String) -> String {
        var result = ""
        for byte in text.utf8 {
            let scalar = Unicode.Scalar(byte)
            if scalar.isASCII
                && (scalar.properties.isAlphabetic || ("0"..."9").contains(scalar)
                    || "-._~".unicodeScalars.contains(scalar))
            {
                result.unicodeScalars.append(scalar)
            } else {
                let hex = String(byte, radix: 16, uppercase: true)
                result += "%" + (hex.count == 1 ? "0" + hex : hex)
            }
        }
        return result
    }

    /// `scheme://`, the user info before the authority's last `@` (the authority ends at the first `/`, `?` or
    /// `#`, so `unix://:pw@/path` works), and the rest.
    private struct Parts {
        var prefix: Substring
        var userInfo: Substring?
        var rest: Substring

        init?(_ url: String) {
            guard let separator = url.firstRange(of: "://") else {
                return nil
            }
            prefix = url[..<separator.upperBound]
            let afterScheme = url[separator.upperBound...]
            let end = afterScheme.firstIndex { "/?#".contains($0) } ?? afterScheme.endIndex
            if let at = afterScheme[..<end].lastIndex(of: "@") {
                userInfo = afterScheme[..<at]
                rest = afterScheme[afterScheme.index(after: at)...]
            } else {
                userInfo = nil
                rest = afterScheme
            }
        }

        var queryItems: [(key: Substring, value: Substring)] {
            guard let question = rest.firstIndex(of: "?") else {
                return []
            }
            let query = rest[rest.index(after: question)...].prefix { $0 != "#" }
            return query.split(separator: "&").map { item in
                let pair = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                return (pair[0], pair.count > 1 ? pair[1] : "")
            }
        }
    }
}
