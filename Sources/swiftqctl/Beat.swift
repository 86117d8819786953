import ArgumentParser
import SwiftqControl
import SwiftqCore

/// `swiftqctl beat`: the schedule and the lease; `swiftqctl beat run <entry>`: one run now.
///
/// One command with an optional action rather than subcommands, so the connection options may come anywhere
/// (`swiftqctl --socket S beat run nightly`).
struct Beat: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the beat entries (schedule, time zone, last and next run) and the lock holder.",
        discussion: "With `run <entry>`: publish one run of that entry now, outside its schedule."
    )
    @OptionGroup var connection: ConnectionOptions
    @Flag(help: "Print the raw JSON reply.")
    var json = false
    @Argument(help: ArgumentHelp("Nothing to list, or run and an entry name.", valueName: "run entry"))
    var action: [String] = []

    func validate() throws {
        guard action.isEmpty || (action.count == 2 && action[0] == "run") else {
            throw ValidationError("expected nothing, or: run <entry>")
        }
    }

    func run() throws {
        if action.count == 2 {
            _ = try connection.call("beat", arguments: ["run": .string(action[1])])
            print("published one run of \(action[1])")
            return
        }
        let result = try connection.call("beat")
        if json {
            print(result.jsonString)
            return
        }
        print(Self.render(result), terminator: "")
    }

    static func utc(_ seconds: Double?) -> String {
        guard let seconds else { return "-" }
        return CivilTime(secondsSinceEpoch: Int64(seconds.rounded(.down))).description + "Z"
    }

    static func render(_ result: JSONValue) -> String {
        var text = "node         \(result["node"]?.stringValue ?? "?")\n"
        let holding = result["holder"]?.boolValue == true
        text += "lock holder  \(result["lock_holder"]?.stringValue ?? "none")\(holding ? " (this node)" : "")\n"
        if let error = result["error"]?.stringValue { text += "error        \(error)\n" }
        text += "\n"
        var rows = [["NAME", "TASK", "SCHEDULE", "TIMEZONE", "LAST RUN (UTC)", "NEXT RUN (LOCAL)", "NEXT RUN (UTC)"]]
        for entry in result["entries"]?.arrayValue ?? [] {
            rows.append([
                entry["name"]?.stringValue ?? "?",
                entry["task"]?.stringValue ?? "?",
                entry["schedule"]?.stringValue ?? "?",
                entry["timezone"]?.stringValue ?? "?",
                utc(entry["last_run"]?.doubleValue),
                entry["next_run_local"]?.stringValue ?? "-",
                entry["next_run_utc"]?.stringValue ?? "-",
            ])
        }
        var widths = [Int](repeating: 0, count: rows[0].count)
        for row in rows { for (index, cell) in row.enumerated() { widths[index] = max(widths[index], cell.count) } }
        for row in rows {
            let cells = row.enumerated().map { index, cell in
                index == row.count - 1 ? cell : cell + String(repeating: " ", count: widths[index] - cell.count)
            }
            text += cells.joined(separator: "  ") + "\n"
        }
        return text
    }
}
