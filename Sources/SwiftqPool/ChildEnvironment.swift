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
    ]
    /// Variables passed on by prefix (the locale categories).
    package static let allowedPrefixes = ["LC_"]

    /// `environment` (`KEY=VALUE` strings) reduced to the allow-list, with ``ChildProcess/parentPIDVariable``
    /// set to this process's pid, so the child can tell its parent's death from a parent that is PID 1.
    package static func filtered(_ environment: [String], extra: [String] = []) -> [String] {
        var result = environment.filter { entry in
            let name = entry.split(separator: "=", maxSplits: 1).first.map(String.init) ?? entry
            return allowedNames.contains(name) || allowedPrefixes.contains { name.hasPrefix($0) }
        }
        result.append("\(ChildProcess.parentPIDVariable)=\(ChildProcess.currentPID)")
        result += extra
        return result
    }

    /// This process's environment, filtered for a child.
    package static var forChild: [String] { filtered(ChildProcess.currentEnvironment) }
}
