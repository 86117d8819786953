import ArgumentParser
import SwiftqControl
import SwiftqCore

#if canImport(Glibc)
import Glibc
#endif

/// Exit codes of `swiftqctl` (part of its interface; see swiftqctl(1)).
enum CtlExit {
    static let success: Int32 = 0
    /// The daemon answered with an error.
    static let commandFailed: Int32 = 1
    /// Bad usage.
    static let usage: Int32 = 2
    /// The daemon is not reachable, or refused this caller (EX_UNAVAILABLE).
    static let unavailable: Int32 = 69
}

/// Options every command shares.
struct ConnectionOptions: ParsableArguments {
    @Option(
        help:
            "Control socket path (default: control.socket of --config, else $SWIFTQ_SOCKET, else /run/swiftq/swiftqd.sock)."
    )
    var socket: String?

    @Option(name: .shortAndLong, help: "Read the socket path from this swiftqd configuration file.")
    var config: String?

    @Option(help: "Seconds to wait for the reply.")
    var timeout: Double = 30

    func validate() throws {
        guard timeout.isFinite, timeout > 0, timeout <= 86400 else {
            throw ValidationError("--timeout must be a number of seconds between 0 and 86400, got \(timeout)")
        }
        if socket != nil && config != nil {
            throw ValidationError("give --socket or --config, not both")
        }
    }

    /// Resolves the socket path: explicit options first, then the environment, then the default.
    func socketPath() throws -> String {
        if let socket { return socket }
        if let config {
            do {
                // Only the socket is needed: no password file is read, so a caller who may not read them can
                // still use --config.
                return try Configuration.load(contentsOf: config, readingPasswordFiles: false).control.socket
            } catch {
                throw CtlFailure(code: CtlExit.usage, message: "swiftqctl: cannot use --config:\n\(error)")
            }
        }
        if let fromEnvironment = getenv("SWIFTQ_SOCKET") { return String(cString: fromEnvironment) }
        return Configuration.Control().socket
    }

    /// Connects, sends one command, returns its result; failures are mapped to exit codes.
    func call(_ command: String, arguments: [String: JSONValue] = [:]) throws -> JSONValue {
        let path = try socketPath()
        do {
            let client = try ControlClient(path: path)
            return try client.call(command, arguments: arguments, timeout: .milliseconds(Int64(timeout * 1000)))
        } catch {
            switch error.code {
            case .unavailable, .permissionDenied, .timeout:
                throw CtlFailure(code: CtlExit.unavailable, message: "swiftqctl: \(error.message)")
            default:
                throw CtlFailure(code: CtlExit.commandFailed, message: "swiftqctl: \(command) failed: \(error.message)")
            }
        }
    }
}

/// A failure that ends `swiftqctl` with a specific exit code.
struct CtlFailure: Error {
    var code: Int32
    var message: String
}

struct Swiftqctl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "swiftqctl",
        abstract: "Control a running swiftqd through its control socket.",
        discussion: "Exit codes: 0 ok, 1 the command failed, 2 usage, 69 swiftqd unreachable or refused.",
        version: "swiftqctl 0.1.0",
        subcommands: [
            Ping.self, Metrics.self, Stats.self, Reload.self, Shutdown.self, Revoke.self, Inspect.self, Pool.self,
            Autoscale.self, Queue.self, RateLimit.self, TimeLimit.self, Call.self, ResultCommand.self, Beat.self,
            Dead.self, Broadcast.self,
        ]
    )
}

struct Ping: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Check that swiftqd answers.")
    @OptionGroup var connection: ConnectionOptions

    func run() throws {
        let started = ContinuousClock.now
        let result = try connection.call("ping")
        let elapsed = started.duration(to: .now)
        let pid = result["pid"]?.intValue.map(String.init) ?? "?"
        print("pong from swiftqd (pid \(pid)) in \(formatMilliseconds(elapsed))")
        if result["healthy"]?.boolValue == false {
            let problems = result["problems"]?.arrayValue?.compactMap(\.stringValue) ?? []
            throw CtlFailure(
                code: CtlExit.commandFailed,
                message: "swiftqd is unhealthy:\n" + problems.map { "  " + $0 }.joined(separator: "\n")
            )
        }
    }
}

struct Metrics: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the metrics in Prometheus's text format (what /metrics serves)."
    )
    @OptionGroup var connection: ConnectionOptions

    func run() throws {
        let result = try connection.call("metrics")
        print(result["text"]?.stringValue ?? "", terminator: "")
    }
}

struct Stats: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the process table, restarts, reloads and resource usage."
    )
    @OptionGroup var connection: ConnectionOptions
    @Flag(help: "Print the raw JSON reply.")
    var json = false

    func run() throws {
        let result = try connection.call("stats")
        if json {
            print(result.jsonString)
        } else {
            print(StatsTable.render(result), terminator: "")
        }
    }
}

struct Reload: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Re-read and apply the configuration file (like SIGHUP); fails if the file is invalid."
    )
    @OptionGroup var connection: ConnectionOptions

    func run() throws {
        let result = try connection.call("reload")
        print("reloaded: \(result["status"]?.stringValue ?? "ok")")
    }
}

struct Shutdown: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Stop swiftqd: warm (running tasks finish) unless --cold."
    )
    @OptionGroup var connection: ConnectionOptions
    @Flag(help: "Cold shutdown: kill running tasks (their messages go back to the broker).")
    var cold = false

    func run() throws {
        let result = try connection.call("shutdown", arguments: ["mode": .string(cold ? "cold" : "warm")])
        print("swiftqd is stopping (\(result["stopping"]?.stringValue ?? "warm"))")
    }
}

func formatMilliseconds(_ duration: Duration) -> String {
    let (seconds, attoseconds) = duration.components
    let milliseconds = Double(seconds) * 1000 + Double(attoseconds) / 1e15
    return "\((milliseconds * 100).rounded() / 100) ms"
}

@main
enum SwiftqctlMain {
    static func main() {
        let arguments = hoistGlobalOptions(broadcastFirst(Array(CommandLine.arguments.dropFirst())))
        var command: ParsableCommand
        do {
            command = try Swiftqctl.parseAsRoot(arguments)
        } catch {
            let code = Swiftqctl.exitCode(for: error)
            let message = Swiftqctl.fullMessage(for: error)
            if code == .success {
                print(message)
                exit(CtlExit.success)
            }
            printError(message)
            exit(CtlExit.usage)
        }
        if command is Swiftqctl {
            // No command given: that is a usage error, not a request for help.
            printError(Swiftqctl.helpMessage())
            exit(CtlExit.usage)
        }
        // A closed peer must be an EPIPE error, not a silent death (the daemon closes the connection after
        // refusing a caller).
        signal(SIGPIPE, SIG_IGN)
        do {
            try command.run()
            exit(CtlExit.success)
        } catch let failure as CtlFailure {
            printError(failure.message)
            exit(failure.code)
        } catch {
            let message = Swiftqctl.fullMessage(for: error)
            if Swiftqctl.exitCode(for: error) == .success {
                print(message)
                exit(CtlExit.success)
            }
            printError(message)
            exit(CtlExit.usage)
        }
    }
}

/// Writes a line to standard error.
func printError(_ message: String) {
    let bytes = Array((message + "\n").utf8)
    bytes.withUnsafeBytes { buffer in
        var offset = 0
        while offset < buffer.count {
            let written = write(2, buffer.baseAddress! + offset, buffer.count - offset)
            if written <= 0 { return }
            offset += written
        }
    }
}

/// `swiftqctl --broadcast [OPTIONS] COMMAND …` is the `broadcast` command: the flag becomes the command word.
func broadcastFirst(_ arguments: [String]) -> [String] {
    guard let index = arguments.firstIndex(of: "--broadcast") else { return arguments }
    var rest = arguments
    rest.remove(at: index)
    return ["broadcast"] + rest
}

/// `swiftqctl [--socket PATH] [--config FILE] [--timeout S] COMMAND …`: the connection options may come
/// before the command, as people type them; argument-parser wants them after it, so move them there.
func hoistGlobalOptions(_ arguments: [String]) -> [String] {
    let withValue: Set<String> = ["--socket", "--config", "-c", "--timeout", "--broker", "--backend"]
    var hoisted: [String] = []
    var index = 0
    while index < arguments.count {
        let argument = arguments[index]
        if withValue.contains(argument), index + 1 < arguments.count {
            hoisted += [argument, arguments[index + 1]]
            index += 2
        } else if let name = argument.split(separator: "=", maxSplits: 1).first, argument.contains("="),
            withValue.contains(String(name))
        {
            hoisted.append(argument)
            index += 1
        } else {
            break
        }
    }
    guard index < arguments.count, !hoisted.isEmpty else { return arguments }
    return [arguments[index]] + hoisted + arguments[(index + 1)...]
}
