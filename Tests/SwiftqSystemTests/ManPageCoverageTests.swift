import Foundation
import SwiftqCore
import Testing

/// The man pages document the command lines as the binaries define them: the command and option lists come from
/// argument-parser's own description (`--experimental-dump-help`), so a new command or option cannot ship without
/// its entry. (Configuration keys are checked against swiftq.yaml(5) in `ConfigurationManPageTests`.)
@Suite struct ManPageCoverageTests {
    struct Command {
        var name: String
        /// Long option names without dashes (`socket`, `json`).
        var longOptions: [String]
        var subcommands: [Command]
    }

    /// The command tree of a binary, read from `--experimental-dump-help`.
    static func commandTree(_ binary: String) throws -> Command {
        let result = try runCommand(binary, ["--experimental-dump-help"])
        #expect(result.status == 0, "\(result.stderr)")
        let root = try JSONValue(parsing: result.stdout)
        guard let command = root["command"] else {
            throw TestSetupError("no command in \(binary) --experimental-dump-help")
        }
        return Self.command(command)
    }

    private static func command(_ json: JSONValue) -> Command {
        let arguments = json["arguments"]?.arrayValue ?? []
        let longOptions = arguments.flatMap { argument in
            (argument["names"]?.arrayValue ?? []).compactMap { name in
                name["kind"]?.stringValue == "long" ? name["name"]?.stringValue : nil
            }
        }
        return Command(
            name: json["commandName"]?.stringValue ?? "",
            longOptions: longOptions,
            subcommands: (json["subcommands"]?.arrayValue ?? []).map(command)
        )
    }

    static func page(_ name: String) throws -> String {
        try String(contentsOfFile: CommandLineTests.repositoryRoot + "/man/" + name, encoding: .utf8)
    }

    /// `--name` in mdoc is `Fl -name`, as a word of a macro line.
    static func mentionsOption(_ option: String, in page: String) -> Bool {
        page.split(separator: "\n").contains { line in
            line.hasPrefix(".") && line.split(separator: " ").map(String.init).contains("-" + option)
                && line.contains("Fl -\(option)")
        }
    }

    @Test func everySwiftqctlCommandHasAnEntryInSwiftqctl1() throws {
        let tree = try Self.commandTree(Binaries.swiftqctl)
        let page = try Self.page("swiftqctl.1")
        let entries = page.split(separator: "\n").filter { $0.hasPrefix(".It Cm ") }.compactMap { line in
            line.split(separator: " ").dropFirst(2).first.map(String.init)
        }
        #expect(tree.subcommands.count >= 7, "\(tree.subcommands.map(\.name))")
        for command in tree.subcommands {
            #expect(entries.contains(command.name), "swiftqctl.1 has no .It Cm \(command.name) entry")
            for option in command.longOptions {
                #expect(Self.mentionsOption(option, in: page), "swiftqctl.1 never mentions \(command.name) --\(option)")
            }
        }
    }

    @Test func everySwiftqdOptionHasAnEntryInSwiftqd8() throws {
        let tree = try Self.commandTree(Binaries.swiftqd)
        let page = try Self.page("swiftqd.8")
        let entries = page.split(separator: "\n").filter { $0.hasPrefix(".It Fl ") }
        #expect(tree.longOptions.contains("print-config") && tree.longOptions.contains("socket"))
        for option in tree.longOptions {
            #expect(
                entries.contains { $0.split(separator: " ").map(String.init).contains("-" + option) },
                "swiftqd.8 has no .It Fl -\(option) entry"
            )
        }
    }

    @Test func everyEnvironmentOverrideIsDocumented() throws {
        for name in ["swiftqd.8", "swiftq.yaml.5"] {
            let page = try Self.page(name)
            for override in Configuration.environmentOverrides {
                #expect(page.contains(".It Ev \(override.variable)\n"), "\(name) has no entry for \(override.variable)")
            }
        }
    }
}
