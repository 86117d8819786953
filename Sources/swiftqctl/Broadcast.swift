import ArgumentParser
import OrderedCollections
import SwiftqClient
import SwiftqCore

/// `swiftqctl --broadcast [--destination NODE…] [--timeout S] COMMAND`: the command sent through the broker to every
/// worker (Python Celery's and swiftqd's, as `celery inspect`/`control` do), each node's reply printed.
struct Broadcast: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Send a command through the broker to every worker (swiftqctl --broadcast COMMAND).",
        discussion: "COMMAND is ping, stats, inspect WHAT, revoke ID… [--terminate [--signal SIG]], pool grow|shrink "
            + "N, queue add|cancel QUEUE or shutdown. Replies come from every node that answers within --timeout."
    )
    @OptionGroup var broker: BrokerOptions
    @Option(help: "Only this node (repeatable); the reply wait ends once every named node answered.")
    var destination: [String] = []
    @Option(help: "Seconds to wait for replies.")
    var timeout: Double = 1
    @Flag(help: "Print the replies as one JSON object, by node.")
    var json = false
    @Argument(
        parsing: .captureForPassthrough,
        help: ArgumentHelp("The command and its arguments.", valueName: "command")
    )
    var words: [String] = []

    func validate() throws {
        guard timeout.isFinite, timeout > 0, timeout <= 3600 else {
            throw ValidationError("--timeout must be between 0 and 3600 seconds")
        }
        _ = try Self.request(words)
    }

    /// The Celery method and arguments for the command words.
    static func request(_ words: [String]) throws -> (method: String, arguments: OrderedDictionary<String, JSONValue>) {
        guard let first = words.first else { throw ValidationError("give a command, e.g. inspect ping") }
        let rest = Array(words.dropFirst())
        switch first {
        case "ping", "stats", "shutdown":
            guard rest.isEmpty else { throw ValidationError("\(first) takes no arguments") }
            return (first, [:])
        case "inspect":
            guard rest.count == 1 else { throw ValidationError("expected: inspect WHAT") }
            if rest[0] == "ping" || rest[0] == "stats" { return (rest[0], [:]) }
            guard let method = Inspect.methods[rest[0]] else {
                throw ValidationError("unknown inspect target \(rest[0].debugDescription)")
            }
            return (method, [:])
        case "revoke":
            var ids: [String] = []
            var terminate = false
            var signal: String?
            var index = 0
            while index < rest.count {
                switch rest[index] {
                case "--terminate": terminate = true
                case "--signal":
                    guard index + 1 < rest.count, ControlCommandSignals.number(rest[index + 1]) != nil else {
                        throw ValidationError("--signal needs a signal name or number")
                    }
                    signal = rest[index + 1]
                    index += 1
                default: ids.append(rest[index])
                }
                index += 1
            }
            guard !ids.isEmpty else { throw ValidationError("give at least one task id") }
            var arguments: OrderedDictionary<String, JSONValue> = ["task_id": .array(ids.map(JSONValue.string))]
            if terminate {
                arguments["terminate"] = true
                arguments["signal"] = .string(signal ?? "SIGTERM")
            }
            return ("revoke", arguments)
        case "pool":
            guard rest.count == 2, ["grow", "shrink"].contains(rest[0]), let count = Int(rest[1]), count >= 1 else {
                throw ValidationError("expected: pool grow|shrink N")
            }
            return ("pool_\(rest[0])", ["n": .int(Int64(count))])
        case "queue":
            guard rest.count == 2, ["add", "cancel"].contains(rest[0]) else {
                throw ValidationError("expected: queue add|cancel QUEUE")
            }
            return (rest[0] == "add" ? "add_consumer" : "cancel_consumer", ["queue": .string(rest[1])])
        default:
            throw ValidationError("unknown command \(first.debugDescription) for --broadcast")
        }
    }

    func run() throws {
        let (method, arguments) = try Self.request(words)
        let url = try broker.urls().broker
        let replies: OrderedDictionary<String, JSONValue>
        do {
            replies = try RemoteControl.broadcast(
                broker: url,
                method: method,
                arguments: arguments,
                destination: destination,
                timeout: .milliseconds(Int64(timeout * 1000))
            )
        } catch {
            throw CtlFailure(code: CtlExit.unavailable, message: "swiftqctl: \(error.message)")
        }
        if json {
            print(JSONValue.object(replies).jsonString)
        } else {
            for (node, reply) in replies {
                let text =
                    reply["ok"]?.stringValue ?? reply["error"].map { "error: \($0.stringValue ?? $0.jsonString)" }
                    ?? reply.jsonString
                print("\(node): \(text)")
            }
        }
        guard !replies.isEmpty || method == "shutdown" else {
            throw CtlFailure(code: CtlExit.commandFailed, message: "swiftqctl: no nodes replied within \(timeout) s")
        }
    }
}
