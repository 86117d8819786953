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
            #expect(mentioned.contains(keyPath), "the sample does not mention \(keyPath)")
        }
    }

    @Test func knownKeyPathsListEverySection() {
        #expect(
            Configuration.knownKeyPaths == [
                "broker.url",
                "result_backend.url",
                "worker.hostname",
                "worker.queues",
                "worker.concurrency",
                "worker.prefetch_multiplier",
                "worker.shutdown_timeout",
                "worker.restart_backoff_max",
                "control.socket",
                "control.mode",
                "control.group",
                "control.allow_uids",
                "control.allow_gids",
                "control.max_request_bytes",
                "logging.level",
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

    /// `section.key` for each `key:` line (commented out or not) under a top-level `section:` line.
    static func keyPaths(mentionedIn text: String) -> Set<String> {
        var keyPaths: Set<String> = []
        var section: String?
        for line in text.split(separator: "\n") {
            if let key = key(in: line, indented: false) {
                section = key
            } else if let section, let key = key(in: line, indented: true) {
                keyPaths.insert("\(section).\(key)")
            }
        }
        return keyPaths
    }

    /// The key of a `key:` or `key: value` line, optionally behind `# `; indented or at column 1.
    private static func key(in line: Substring, indented: Bool) -> String? {
        let content = line.drop { $0 == " " }
        guard indented == (content.count < line.count) else {
            return nil
        }
        var rest = content
        if rest.hasPrefix("#") {
            rest = rest.dropFirst().drop { $0 == " " }
        }
        guard let colon = rest.firstIndex(of: ":") else {
            return nil
        }
        let key = rest[..<colon]
        let after = rest[rest.index(after: colon)...]
        guard !key.isEmpty, key.allSatisfy({ $0.isLowercase || $0 == "_" }), after.isEmpty || after.first == " " else {
            return nil
        }
        return String(key)
    }
}
