/// kombu's failover URL lists as the configuration accepts them: `;`-separated `amqp://` hosts (tried in turn) and
/// `sentinel://` sentinels (asked for the master named by `master_name`). Only the text is checked here; the
/// transports parse each element with their own URL types.
enum FailoverURLs {
    /// The elements of a `;`-separated list, trimmed; one element for a plain URL.
    static func elements(_ url: String) -> [String] {
        url.split(separator: ";", omittingEmptySubsequences: false).map { String($0).trimmingWhitespace() }
    }

    /// The scheme of one element (`amqp`, `sentinel`), lowercased; `nil` without `://`.
    static func scheme(_ element: String) -> String? {
        element.firstRange(of: "://").map { element[..<$0.lowerBound].lowercased() }
    }

    /// What is wrong with a URL list, or `nil` when it is fine (a single URL is always fine here).
    static func problem(in url: String, section: String) -> String? {
        let parts = elements(url)
        let first = scheme(parts[0]) ?? ""
        if first == "sentinel" {
            for (index, element) in parts.enumerated() {
                if element.isEmpty {
                    return "sentinel \(index + 1) of the list is empty: separate sentinels with one ';', as in "
                        + "sentinel://h1:26379;sentinel://h2:26379"
                }
                guard scheme(element) == "sentinel" else {
                    return "sentinel \(index + 1) of the list is not a sentinel:// URL: every element must be one"
                }
                if !hasHost(element) {
                    return "sentinel \(index + 1) names no host: the list of sentinels is empty there; write "
                        + "sentinel://HOST[:PORT] for each sentinel"
                }
            }
            return nil
        }
        guard parts.count > 1 else { return nil }
        guard first == "amqp" || first == "amqps" else {
            return "a ';'-separated list of URLs is a failover list: amqp:// hosts for RabbitMQ, or sentinel:// "
                + "sentinels (with \(section).master_name) for Redis; \(first.isEmpty ? "this" : first + "://") "
                + "URLs cannot be listed"
        }
        for (index, element) in parts.enumerated() {
            if element.isEmpty {
                return "host \(index + 1) of the failover list is empty: separate URLs with one ';'"
            }
            guard scheme(element) == first else {
                return "host \(index + 1) of the failover list is not an \(first):// URL: every element must use "
                    + "the first one's scheme"
            }
        }
        return nil
    }

    /// Whether a `scheme://…` element has a host between its user info and its port, path or query.
    static func hasHost(_ element: String) -> Bool {
        guard let schemeEnd = element.firstRange(of: "://") else { return false }
        var authority = element[schemeEnd.upperBound...]
        if let end = authority.firstIndex(where: { $0 == "/" || $0 == "?" }) { authority = authority[..<end] }
        if let at = authority.lastIndex(of: "@") { authority = authority[authority.index(after: at)...] }
        return !authority.isEmpty && !authority.hasPrefix(":")
    }
}

extension Configuration {
    /// `master_name` belongs with a `sentinel://` URL and nothing else: one without the other is reported at the
    /// key that is there, since kombu would fail late (`'master_name' transport option must be specified`) or
    /// silently ignore the name.
    static func sentinelDiagnostics(
        _ configuration: Configuration,
        file: String,
        keyMarks: [String: YAMLMark],
        sources: [String: String] = [:],
        reported: [ConfigurationDiagnostic]
    ) -> [ConfigurationDiagnostic] {
        var diagnostics: [ConfigurationDiagnostic] = []
        // A key already reported as invalid kept its default: comparing it would only add a confusing second message.
        let invalidKeys = Set(reported.compactMap(\.keyPath))
        func check(_ url: String?, _ masterName: String?, section: String) {
            let urlKey = "\(section).url"
            let nameKey = "\(section).master_name"
            guard !invalidKeys.contains(urlKey), !invalidKeys.contains(nameKey) else { return }
            let urlName = sources[urlKey] ?? urlKey
            let isSentinel = url.map { FailoverURLs.scheme(FailoverURLs.elements($0)[0]) == "sentinel" } ?? false
            if isSentinel && masterName == nil {
                let mark = keyMarks[urlKey]
                diagnostics.append(
                    ConfigurationDiagnostic(
                        file: file,
                        line: mark?.line,
                        column: mark?.column,
                        keyPath: urlKey,
                        message: "\(urlName) lists Redis Sentinels but \(nameKey) is not set: name the master they "
                            + "monitor (kombu's transport option master_name)"
                    )
                )
            } else if !isSentinel, let masterName {
                let mark = keyMarks[nameKey]
                diagnostics.append(
                    ConfigurationDiagnostic(
                        file: file,
                        line: mark?.line,
                        column: mark?.column,
                        keyPath: nameKey,
                        message: "\(nameKey) is \(masterName.debugDescription), but \(urlName) is not a sentinel:// "
                            + "URL; remove \(nameKey) or list the sentinels in \(urlName)"
                    )
                )
            }
        }
        check(configuration.broker.url, configuration.broker.masterName, section: "broker")
        check(configuration.resultBackend.url, configuration.resultBackend.masterName, section: "result_backend")
        return diagnostics
    }
}

extension ConfigurationDecoder {
    /// A Redis master name as sentinels know it: not empty, no whitespace.
    mutating func masterName(_ node: YAMLNode, at keyPath: String) -> String? {
        guard let name = text(node, at: keyPath, expected: "the master's name, as the sentinels monitor it") else {
            return nil
        }
        guard !name.isEmpty, !name.unicodeScalars.contains(where: \.properties.isWhitespace) else {
            report(
                "expected the master's name, as the sentinels monitor it (no spaces), got \(name.debugDescription)",
                at: node,
                keyPath: keyPath
            )
            return nil
        }
        return name
    }
}
