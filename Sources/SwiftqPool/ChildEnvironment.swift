import SwiftqPlatform

/// The environment every process swiftqd starts gets: an allow-list of swiftqd's own, plus the spawner's pid.
///
/// swiftqd's environment may hold secrets (`SWIFTQ_BROKER_URL` and `SWIFTQ_RESULT_BACKEND_URL` with passwords,
/// as the README recommends, or anything a unit file sets). Children never need them: the consumer gets the
/// resolved configuration over its channel, and pool children and exec-task programs must not see broker
/// credentials at all. So nothing is inherited unless it is on this list (documented in swiftqd(8) and the
/// README): what a program needs to find its tools, its home, its locale and time zone and a temporary
/// directory, and swiftqd's own logging settings.
package enum ChildEnvironment {
    /// Variables passed on by exact name.
    package static let allowedNames: Set<String> = [
        "PATH", "HOME", "LANG", "LANGUAGE", "TZ", "USER", "LOGNAME", "TMPDIR",
        // How swiftq's own processes log: the level, and whether stderr is the journal (a device:inode pair).
        "SWIFTQ_LOG_LEVEL", "JOURNAL_STREAM", "SWIFTQ_JOURNAL_SOCKET",
        // Where OpenSSL finds CA certificates (amqps:// and a TLS-speaking exec task rely on the system store).
        "SSL_CERT_FILE", "SSL_CERT_DIR",
        // Test hook of the consumer's transports (swiftqd(8), ENVIRONMENT): a pause before canvas publishes.
        "SWIFTQ_TEST_PAUSE_BEFORE_PUBLISH",
        // `worker.pass_environment`, carried down so that each generation passes the same variables on.
        passVariable,
    ]
    /// Holds `worker.pass_environment` (comma-separated) for the processes below the supervisor: the consumer and
    /// the pool children filter their own children's environment with it, without being told the configuration.
    package static let passVariable = "SWIFTQ_PASS_ENVIRONMENT"
    /// Variables passed on by prefix (the locale categories).
    package static let allowedPrefixes = ["LC_"]

    /// `environment` (`KEY=VALUE` strings) reduced to the allow-list, with ``ChildProcess/parentPIDVariable``
    /// set to this process's pid, so the child can tell its parent's death from a parent that is PID 1.
    ///
    /// `pass` (`worker.pass_environment`: names, or prefixes ending in `*`) adds the user's own variables; when it is
    /// nil, the list this process was given in ``passVariable`` applies (and is passed on with the rest).
    package static func filtered(_ environment: [String], extra: [String] = [], pass: [String]? = nil) -> [String] {
        let patterns = pass ?? inheritedPatterns(environment)
        var result = environment.filter { entry in
            let name = entry.split(separator: "=", maxSplits: 1).first.map(String.init) ?? entry
            if name == passVariable { return pass == nil }
            return allowedNames.contains(name) || allowedPrefixes.contains { name.hasPrefix($0) }
                || patterns.contains { matches(name, $0) }
        }
        if let pass, !pass.isEmpty { result.append("\(passVariable)=\(pass.joined(separator: ","))") }
        result.append("\(ChildProcess.parentPIDVariable)=\(ChildProcess.currentPID)")
        result += extra
        return result
    }

    /// Whether a variable's name is `pattern`, or starts with it when it ends in `*`.
    static func matches(_ name: String, _ pattern: String) -> Bool {
        if pattern.hasSuffix("*") { return name.hasPrefix(pattern.dropLast()) }
        return name == pattern
    }

    /// The patterns in `environment`'s ``passVariable``, if any.
    static func inheritedPatterns(_ environment: [String]) -> [String] {
        let prefix = passVariable + "="
        guard let entry = environment.first(where: { $0.hasPrefix(prefix) }) else { return [] }
        return entry.dropFirst(prefix.count).split(separator: ",").map(String.init).filter { !$0.isEmpty }
    }

    /// This process's environment, filtered for a child.
    package static var forChild: [String] { filtered(ChildProcess.currentEnvironment) }
}
