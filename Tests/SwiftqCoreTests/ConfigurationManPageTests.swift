import Foundation
import SwiftqCore
import Testing

/// `man/swiftq.yaml.5` is the reference for the file: it must have an entry for every key the parser knows.
@Suite("Configuration: man page")
struct ConfigurationManPageTests {
    static var manPagePath: String {
        URL(filePath: #filePath)
            .deletingLastPathComponent()  // SwiftqCoreTests
            .deletingLastPathComponent()  // Tests
            .deletingLastPathComponent()  // package root
            .appending(path: "man/swiftq.yaml.5")
            .path
    }

    @Test func manPageHasAnEntryForEveryKey() throws {
        let text = try String(contentsOfFile: Self.manPagePath, encoding: .utf8)
        let entries = Self.entries(in: text)
        for keyPath in Configuration.knownKeyPaths + Configuration.patternKeyPaths {
            #expect(entries.contains(Self.entry(for: keyPath)), "the man page has no .It Cm entry for \(keyPath)")
        }
    }

    @Test func patternKeysAreWrittenWithTheNameAsAnArgument() {
        #expect(Self.entry(for: "tasks.<name>.exec") == "tasks. Ns Ar name Ns Cm .exec")
        #expect(Self.entry(for: "worker.acks_late") == "worker.acks_late")
    }

    /// How a key path appears after `.It Cm`: a variable part `<name>` is set as `Ar name` between `Ns` macros, so
    /// `tasks.<name>.exec` renders as tasks.name.exec with name underlined.
    static func entry(for keyPath: String) -> String {
        keyPath.replacing(/<([a-z_]+)>/) { match in " Ns Ar \(match.1) Ns Cm " }
    }

    /// The macro arguments of each `.It Cm` line up to a trailing `Pq` (the value type), e.g. `worker.concurrency`
    /// for `.It Cm worker.concurrency Pq integer, 1 to 1024`.
    static func entries(in text: String) -> Set<String> {
        var entries: Set<String> = []
        for line in text.split(separator: "\n") where line.hasPrefix(".It Cm ") {
            var entry = line.dropFirst(".It Cm ".count)
            if let type = entry.range(of: " Pq ") {
                entry = entry[..<type.lowerBound]
            }
            entries.insert(String(entry))
        }
        return entries
    }
}
