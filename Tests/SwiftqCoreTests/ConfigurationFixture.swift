import Foundation
import SwiftqCore

/// Locates the configuration fixtures copied into the test bundle (`Fixtures/config/*.yaml`).
enum ConfigurationFixture {
    static func path(_ name: String) throws -> String {
        guard let fixtures = Bundle.module.url(forResource: "Fixtures", withExtension: nil) else {
            throw FixtureMissing(name: "Fixtures")
        }
        let url = fixtures.appending(path: "config").appending(path: name)
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw FixtureMissing(name: name)
        }
        return url.path
    }

    /// The diagnostics of a fixture that must be rejected; throws if it is accepted.
    static func diagnostics(_ name: String) throws -> [ConfigurationDiagnostic] {
        let path = try path(name)
        do {
            _ = try Configuration.load(contentsOf: path)
        } catch {
            return error.diagnostics
        }
        throw UnexpectedlyAccepted(name: name)
    }

    struct FixtureMissing: Error, CustomStringConvertible {
        var name: String
        var description: String { "fixture \(name) not found in the test bundle" }
    }

    struct UnexpectedlyAccepted: Error, CustomStringConvertible {
        var name: String
        var description: String { "fixture \(name) was accepted" }
    }
}
