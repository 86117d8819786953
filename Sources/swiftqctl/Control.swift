import ArgumentParser
import SwiftqControl
import SwiftqCore

/// `swiftqctl revoke`, `inspect`, `pool`, `queue`: the consumer's remote-control table (Celery's commands) over the
/// control socket. Replies are Celery's; `--json` prints them as they are, otherwise as tables.
struct Revoke: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Revoke tasks: they never start on this worker (reserved, held for ETA, or arriving later).",
        discussion: "With --terminate, a task already running is ended with the signal (SIGTERM by default) and "
            + "stored as REVOKED."
    )
    @OptionGroup var connection: ConnectionOptions
    @Flag(help: "Also end the tasks that are running now.")
    var terminate = false
    @Option(help: "Signal for --terminate: a name (TERM, SIGKILL) or a number.")
    var signal: String?
    @Flag(help: "Print the raw JSON reply.")
    var json = false
    @Argument(help: "Task ids.")
    var ids: [String]

    func validate() throws {
        guard !ids.isEmpty else { throw ValidationError("give at least one task id") }
        if signal != nil && !terminate { throw ValidationError("--signal needs --terminate") }
        if let signal, ControlCommandSignals.number(signal) == nil {
            throw ValidationError("unknown signal \(signal.debugDescription)")
        }
    }

    func run() throws {
        var arguments: [String: JSONValue] = ["task_id": .array(ids.map(JSONValue.string))]
        if terminate {
            arguments["terminate"] = true
            arguments["signal"] = .string(signal ?? "SIGTERM")
        }
        let result = try connection.call("revoke", arguments: arguments)
        print(json ? result.jsonString : (result["ok"]?.stringValue ?? result.jsonString))
    }
}

/// Signal names as Celery accepts them, checked before anything is sent.
enum ControlCommandSignals {
    static let names: Set<String> = [
        "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "IOT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2", "PIPE",
        "ALRM", "TERM", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG", "XCPU", "XFSZ", "VTALRM", "PROF",
        "WINCH", "IO", "POLL", "PWR", "SYS",
    ]

    static func number(_ text: String) -> String? {
        if let number = Int(text) { return (1...64).contains(number) ? text : nil }
        var name = text.uppercased()
        if name.hasPrefix("SIG") { name.removeFirst(3) }
        return names.contains(name) ? name : nil
    }
}

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the worker's tasks, revokes, registered tasks, queues, settings or a report.",
        discussion: "WHAT is one of: " + Inspect.methods.keys.sorted().joined(separator: ", ") + "."
    )
    /// swiftqctl's word → Celery's method.
    static let methods: [String: String] = [
        "active": "active", "reserved": "reserved", "scheduled": "scheduled", "revoked": "revoked",
        "registered": "registered", "queues": "active_queues", "conf": "conf", "report": "report",
    ]
    @OptionGroup var connection: ConnectionOptions
    @Flag(help: "Print the raw JSON reply.")
    var json = false
    @Argument(help: ArgumentHelp("What to show.", valueName: "what"))
    var what: String

    func validate() throws {
        guard Self.methods[what] != nil else {
            throw ValidationError(
                "unknown inspect target \(what.debugDescription); expected one of "
                    + Self.methods.keys.sorted().joined(separator: ", ")
            )
        }
    }

    func run() throws {
        let result = try connection.call(Self.methods[what]!)
        print(json ? result.jsonString : Self.render(what, result), terminator: json ? "\n" : "")
    }

    static func render(_ what: String, _ result: JSONValue) -> String {
        switch what {
        case "active", "reserved":
            let items = result.arrayValue ?? []
            guard !items.isEmpty else { return "no \(what) tasks\n" }
            var rows = [["ID", "NAME", "ARGS", "STARTED", "PID"]]
            for item in items {
                rows.append([
                    item["id"]?.stringValue ?? "?",
                    item["name"]?.stringValue ?? "?",
                    shortened(item["args"]?.jsonString ?? "[]"),
                    item["time_start"]?.doubleValue.map { Beat.utc($0) } ?? "-",
                    item["worker_pid"]?.intValue.map(String.init) ?? "-",
                ])
            }
            return StatsTable.table(rows).joined(separator: "\n") + "\n"
        case "scheduled":
            let items = result.arrayValue ?? []
            guard !items.isEmpty else { return "no scheduled tasks\n" }
            var rows = [["ETA", "ID", "NAME", "ARGS"]]
            for item in items {
                rows.append([
                    item["eta"]?.stringValue ?? "-",
                    item["request"]?["id"]?.stringValue ?? "?",
                    item["request"]?["name"]?.stringValue ?? "?",
                    shortened(item["request"]?["args"]?.jsonString ?? "[]"),
                ])
            }
            return StatsTable.table(rows).joined(separator: "\n") + "\n"
        case "revoked", "registered":
            let items = result.arrayValue?.compactMap(\.stringValue) ?? []
            guard !items.isEmpty else { return "none\n" }
            return items.joined(separator: "\n") + "\n"
        case "queues":
            var rows = [["QUEUE", "EXCHANGE", "ROUTING KEY"]]
            for item in result.arrayValue ?? [] {
                rows.append([
                    item["name"]?.stringValue ?? "?",
                    item["exchange"]?["name"]?.stringValue ?? "?",
                    item["routing_key"]?.stringValue ?? "?",
                ])
            }
            return StatsTable.table(rows).joined(separator: "\n") + "\n"
        case "conf":
            let object = result.objectValue ?? [:]
            let width = object.keys.map(\.count).max() ?? 0
            return object.map { key, value in
                key + String(repeating: " ", count: width - key.count) + "  " + (value.stringValue ?? value.jsonString)
            }
            .joined(separator: "\n") + "\n"
        default:
            return (result["ok"]?.stringValue ?? result.jsonString) + "\n"
        }
    }

    static func shortened(_ text: String) -> String {
        text.count > 40 ? String(text.prefix(39)) + "…" : text
    }
}

struct Pool: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Grow or shrink the pool by N children (until the next reload applies worker.concurrency).",
        discussion: "The prefetch window follows the pool's size."
    )
    @OptionGroup var connection: ConnectionOptions
    @Flag(help: "Print the raw JSON reply.")
    var json = false
    @Argument(help: ArgumentHelp("grow or shrink, then N.", valueName: "grow|shrink n"))
    var action: [String] = []

    func validate() throws {
        guard action.count == 2, ["grow", "shrink"].contains(action[0]), let count = Int(action[1]), count >= 1 else {
            throw ValidationError("expected: grow <n> or shrink <n>, with n a positive integer")
        }
    }

    func run() throws {
        let result = try connection.call("pool_\(action[0])", arguments: ["n": .int(Int64(action[1])!)])
        print(json ? result.jsonString : (result["ok"]?.stringValue ?? result.jsonString))
    }
}

struct Queue: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Start (add) or stop (cancel) consuming from a queue, until the daemon restarts."
    )
    @OptionGroup var connection: ConnectionOptions
    @Flag(help: "Print the raw JSON reply.")
    var json = false
    @Argument(help: ArgumentHelp("add or cancel, then the queue.", valueName: "add|cancel queue"))
    var action: [String] = []

    func validate() throws {
        guard action.count == 2, ["add", "cancel"].contains(action[0]), !action[1].isEmpty else {
            throw ValidationError("expected: add <queue> or cancel <queue>")
        }
    }

    func run() throws {
        let method = action[0] == "add" ? "add_consumer" : "cancel_consumer"
        let result = try connection.call(method, arguments: ["queue": .string(action[1])])
        print(json ? result.jsonString : (result["ok"]?.stringValue ?? result.jsonString))
    }
}

struct Autoscale: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Let the pool grow under a backlog and shrink when idle, between MAX and MIN children.",
        discussion: "Until the daemon restarts; pool grow and shrink are refused meanwhile, as in Celery."
    )
    @OptionGroup var connection: ConnectionOptions
    @Flag(help: "Print the raw JSON reply.")
    var json = false
    @Argument(help: "The most children.")
    var max: Int
    @Argument(help: "The fewest children.")
    var min: Int = 0

    func validate() throws {
        guard max >= 1, min >= 0, min <= max else { throw ValidationError("expected 1 <= max and 0 <= min <= max") }
    }

    func run() throws {
        let result = try connection.call("autoscale", arguments: ["max": .int(Int64(max)), "min": .int(Int64(min))])
        print(json ? result.jsonString : (result["ok"]?.stringValue ?? result.jsonString))
    }
}

/// Prints a Celery-style reply (`{"ok": …}` or `{"error": …}`); an error exits 1.
private func printCeleryReply(_ result: JSONValue, json: Bool) throws {
    if json {
        print(result.jsonString)
    } else if let ok = result["ok"]?.stringValue {
        print(ok)
    } else if result["error"] == nil {
        print(result.jsonString)
    }
    if let error = result["error"]?.stringValue {
        if !json { printError(error) }
        throw ExitCode(1)
    }
}

struct RateLimit: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rate-limit",
        abstract: "Set a task's rate limit (10/s, 100/m, 5/h; 0 turns it off), as Celery's rate_limit.",
        discussion: "Until the next reload or restart, when tasks.<name>.rate_limit applies again."
    )
    @OptionGroup var connection: ConnectionOptions
    @Flag(help: "Print the raw JSON reply.")
    var json = false
    @Argument(help: "The task name.")
    var task: String
    @Argument(help: "The rate: N/s, N/m, N/h or N (per second); 0 for none.")
    var rate: String

    func run() throws {
        let result = try connection.call(
            "rate_limit",
            arguments: ["task_name": .string(task), "rate_limit": .string(rate)]
        )
        try printCeleryReply(result, json: json)
    }
}

struct TimeLimit: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "time-limit",
        abstract: "Set a task's soft and hard time limits in seconds, as Celery's time_limit.",
        discussion: "A message's own timelimit header still wins. Until the next reload or restart."
    )
    @OptionGroup var connection: ConnectionOptions
    @Flag(help: "Print the raw JSON reply.")
    var json = false
    @Argument(help: "The task name.")
    var task: String
    @Argument(help: "Soft limit in seconds (the task is told and may clean up).")
    var soft: Double
    @Argument(help: "Hard limit in seconds (the child is killed and replaced).")
    var hard: Double?

    func validate() throws {
        guard soft > 0, hard.map({ $0 > 0 }) ?? true else { throw ValidationError("time limits must be positive") }
    }

    func run() throws {
        var arguments: [String: JSONValue] = ["task_name": .string(task), "soft": .double(soft)]
        if let hard { arguments["hard"] = .double(hard) }
        try printCeleryReply(try connection.call("time_limit", arguments: arguments), json: json)
    }
}
