import Foundation
import SwiftqCore
import Testing

/// The annotated sample `etc/swiftq/config.yaml` ships as documentation: it must parse, keep every default, and
/// mention every key the parser knows.
@Suite("Configuration: annotated sample")
struct ConfigurationSampleTests {
    static var samplePath: String {
        URL(filePath: #filePath)
            .deletingLastPathComponent()  // SwiftqCoreTests
            .deletingLastPathComponent()  // Tests
            .deletingLastPathComponent()  // package root
            .appending(path: "etc/swiftq/config.yaml")
            .path
    }

    @Test func sampleParsesToTheDefaults() throws {
        let configuration = try Configuration.load(contentsOf: Self.samplePath)
        #expect(configuration == Configuration())
    }

    @Test func sampleMentionsEveryKnownKey() throws {
        let text = try String(contentsOfFile: Self.samplePath, encoding: .utf8)
        let mentioned = Self.keyPaths(mentionedIn: text)
        for keyPath in Configuration.knownKeyPaths {
            #expect(
                mentioned.contains(keyPath.split(separator: ".").map(String.init)),
                "the sample does not mention \(keyPath)"
            )
        }
        for pattern in Configuration.patternKeyPaths {
            #expect(
                mentioned.contains { Self.path($0, matches: pattern) },
                "the sample does not show an example of \(pattern)"
            )
        }
    }

    @Test func knownKeyPathsListEverySection() {
        #expect(
            Configuration.knownKeyPaths == [
                "broker.url",
                "broker.master_name",
                "broker.visibility_timeout",
                "broker.heartbeat",
                "broker.connect_timeout",
                "broker.tls_ca_file",
                "broker.tls_cert_file",
                "broker.tls_key_file",
                "broker.tls_verify",
                "broker.queue_max_priority",
                "broker.queue_type",
                "broker.global_qos",
                "broker.consumer_timeout",
                "broker.password_file",
                "result_backend.url",
                "result_backend.master_name",
                "result_backend.expires",
                "result_backend.extended",
                "result_backend.password_file",
                "worker.hostname",
                "worker.queues",
                "worker.default_queue",
                "worker.concurrency",
                "worker.prefetch_multiplier",
                "worker.pool",
                "worker.acks_late",
                "worker.track_started",
                "worker.reject_on_worker_lost",
                "worker.shutdown_timeout",
                "worker.restart_backoff_max",
                "worker.max_tasks_per_child",
                "worker.max_memory_per_child",
                "worker.child_prefetch",
                "worker.child_prefetch_max_runtime",
                "worker.poison_threshold",
                "worker.dead_letter_queue",
                "worker.revokes_max",
                "worker.revokes_expire",
                "worker.state_db",
                "worker.mingle",
                "worker.pass_environment",
                "control.socket",
                "control.mode",
                "control.group",
                "control.allow_uids",
                "control.allow_gids",
                "control.admin_uids",
                "control.admin_gids",
                "control.broadcast",
                "control.max_request_bytes",
                "logging.level",
                "beat.enabled",
                "beat.timezone",
                "beat.state",
                "beat.lock_timeout",
                "beat.lock_name",
                "events.enabled",
                "events.heartbeat",
                "events.heartbeat_interval",
                "metrics.listen",
                "metrics.queue_depth_interval",
                "health.broker_grace",
            ]
        )
        #expect(
            Configuration.patternKeyPaths == [
                "tasks.<name>.exec", "tasks.<name>.timeout", "tasks.<name>.max_retries",
                "tasks.<name>.default_retry_delay", "tasks.<name>.retry_backoff", "tasks.<name>.retry_backoff_max",
                "tasks.<name>.retry_jitter", "tasks.<name>.autoretry", "tasks.<name>.soft_time_limit",
                "tasks.<name>.time_limit", "tasks.<name>.rate_limit", "tasks.<name>.acks_late",
                "tasks.<name>.reject_on_worker_lost", "tasks.<name>.acks_on_failure_or_timeout",
            ]
        )
    }

    /// Every known key is really read: giving it a mapping yields a type error for that key, not "unknown key".
    @Test(arguments: Configuration.knownKeyPaths)
    func knownKeyIsDecoded(keyPath: String) throws {
        let parts = keyPath.split(separator: ".")
        let yaml = "\(parts[0]):\n  \(parts[1]):\n    unexpected: mapping\n"
        do {
            _ = try Configuration.parse(yaml, file: "config.yaml")
            Issue.record("\(keyPath) accepted a mapping")
        } catch {
            #expect(error.diagnostics.map(\.keyPath) == [keyPath])
            #expect(error.diagnostics.first?.message.hasSuffix("got a mapping") == true)
            #expect(error.diagnostics.first?.line == 3)
        }
    }

    /// The same for keys with a name chosen in the file, under a task named `reports.render`; the other keys of the
    /// task are set validly, so the only problem is the mapping.
    @Test(arguments: Configuration.patternKeyPaths)
    func patternKeyIsDecoded(pattern: String) throws {
        let parts = pattern.split(separator: ".")
        try #require(parts.count == 3 && parts[1] == "<name>")
        let others = ["exec: [/bin/true]", "timeout: 1m"].filter { !$0.hasPrefix("\(parts[2]):") }
        let yaml = """
            \(parts[0]):
              reports.render:
                \(others.joined(separator: "\n    "))
                \(parts[2]):
                  unexpected: mapping
            """
        do {
            _ = try Configuration.parse(yaml, file: "config.yaml")
            Issue.record("\(pattern) accepted a mapping")
        } catch {
            #expect(error.diagnostics.map(\.keyPath) == ["\(parts[0]).reports.render.\(parts[2])"])
            #expect(error.diagnostics.first?.message.hasSuffix("got a mapping") == true)
            // tasks:, the name, the other keys, the key, then its mapping.
            #expect(error.diagnostics.first?.line == 2 + others.count + 2)
        }
    }

    /// Whether a key path found in a file fits a pattern such as `tasks.<name>.exec`: `<name>` stands for any one
    /// key (which may contain dots, like `reports.render`).
    static func path(_ path: [String], matches pattern: String) -> Bool {
        let parts = pattern.split(separator: ".").map(String.init)
        return path.count == parts.count
            && zip(path, parts).allSatisfy { key, part in part.hasPrefix("<") || key == part }
    }

    /// The key path of each `key:` line, commented out or not, by indentation: in a commented-out line the `# ` is
    /// not counted, so `  #   exec:` sits one level below `  # reports.render:`.
    static func keyPaths(mentionedIn text: String) -> Set<[String]> {
        var keyPaths: Set<[String]> = []
        var open: [(indent: Int, key: String)] = []
        for line in text.split(separator: "\n") {
            guard let (indent, key, opensBlock) = key(in: line) else {
                continue
            }
            open.removeAll { $0.indent >= indent }
            keyPaths.insert(open.map(\.key) + [key])
            if opensBlock {
                open.append((indent, key))
            }
        }
        return keyPaths
    }

    /// The indentation and key of a `key:` or `key: value` line, optionally behind `# `, and whether it has no value
    /// (so it may open a block). Keys are lowercase words, digits, `_` and `.`; prose lines do not qualify.
    private static func key(in line: Substring) -> (indent: Int, key: String, opensBlock: Bool)? {
        var content = line.drop { $0 == " " }
        var indent = line.count - content.count
        if content.hasPrefix("#") {
            let uncommented = content.dropFirst().drop { $0 == " " }
            indent += max(content.count - uncommented.count - 2, 0)
            content = uncommented
        }
        guard let colon = content.firstIndex(of: ":") else {
            return nil
        }
        let key = content[..<colon]
        let after = content[content.index(after: colon)...]
        guard let first = key.first, first.isLowercase,
            key.allSatisfy({ $0.isLowercase || $0.isNumber || $0 == "_" || $0 == "." }),
            after.isEmpty || after.first == " "
        else {
            return nil
        }
        let value = after.drop { $0 == " " }
        return (indent, String(key), value.isEmpty || value.hasPrefix("#"))
    }
}
