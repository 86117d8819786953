import ArgumentParser
import OrderedCollections
import SwiftqClient
import SwiftqCore

#if canImport(Glibc)
import Glibc
#endif

/// Where `call` and `result` find the broker and the result backend.
struct BrokerOptions: ParsableArguments {
    @Option(help: "Broker URL (default: broker.url of --config, else $SWIFTQ_BROKER_URL).")
    var broker: String?

    @Option(help: "Result backend URL (default: result_backend.url of --config, else $SWIFTQ_RESULT_BACKEND_URL).")
    var backend: String?

    @Option(name: .shortAndLong, help: "Read the URLs from this swiftqd configuration file.")
    var config: String?

    /// The configuration named by `--config`, if any.
    func configuration() throws -> Configuration? {
        guard let config else { return nil }
        do {
            return try Configuration.load(contentsOf: config)
        } catch {
            throw CtlFailure(code: CtlExit.usage, message: "swiftqctl: cannot use --config:\n\(error)")
        }
    }

    /// The broker and backend URLs, `embedded` resolved to the embedded broker's socket.
    func urls() throws -> (broker: String, backend: String?) {
        let configuration = try configuration()
        func environment(_ name: String) -> String? { getenv(name).map { String(cString: $0) } }
        func resolve(_ url: String?, database: Int) -> String? {
            guard let url else { return nil }
            guard url == "embedded" else { return url }
            return Configuration.EmbeddedBroker.url(for: configuration ?? Configuration(), database: database)
        }
        guard
            let broker = resolve(
                broker ?? configuration?.broker.url ?? environment("SWIFTQ_BROKER_URL"),
                database: 0
            )
        else {
            throw CtlFailure(code: CtlExit.usage, message: "swiftqctl: give --broker URL or --config FILE")
        }
        let backend = resolve(
            backend ?? configuration?.resultBackend.url ?? environment("SWIFTQ_RESULT_BACKEND_URL"),
            database: 1
        )
        return (broker, backend)
    }

    func client() throws -> CeleryClient {
        let (broker, backend) = try urls()
        do {
            return try CeleryClient(broker: broker, backend: backend)
        } catch {
            throw CtlFailure(code: CtlExit.unavailable, message: "swiftqctl: \(error.message)")
        }
    }
}

struct Call: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Send a task, as a Celery client would, and optionally wait for its result.",
        discussion: """
            Each ARG is read as JSON when it parses as JSON (2, 2.5, true, null, [1,2], {"a":1}) and as a \
            string otherwise. Without --wait, prints the task id.
            """
    )

    @Argument(help: "The task name, e.g. swiftq.add.")
    var task: String

    @Argument(help: "Positional arguments.")
    var arguments: [String] = []

    @Option(help: "Keyword arguments as a JSON object.")
    var kwargs: String?

    @Option(help: "The queue to send to.")
    var queue: String = "celery"

    @Option(help: "Run no earlier than this many seconds from now.")
    var countdown: Double?

    @Option(help: "Priority, 0 (highest) to 9 (lowest) on Redis.")
    var priority: Int?

    @Flag(help: "Wait for the result and print it (exit 1 if the task failed).")
    var wait = false

    @Option(help: "With --wait: seconds to wait for the result.")
    var timeout: Double = 30

    @OptionGroup var brokerOptions: BrokerOptions

    func validate() throws {
        guard timeout.isFinite, timeout > 0 else { throw ValidationError("--timeout must be positive") }
        if let priority, !(0...9).contains(priority) { throw ValidationError("--priority must be 0 to 9") }
    }

    func run() throws {
        let args = arguments.map { text in (try? JSONValue(parsing: text)) ?? .string(text) }
        var keywordArguments: OrderedDictionary<String, JSONValue> = [:]
        if let kwargs {
            guard case .object(let object)? = try? JSONValue(parsing: kwargs) else {
                throw CtlFailure(code: CtlExit.usage, message: "swiftqctl: --kwargs must be a JSON object")
            }
            keywordArguments = object
        }
        let client = try brokerOptions.client()
        let result: AsyncResult
        do {
            result = try client.send(
                task,
                args: args,
                kwargs: keywordArguments,
                options: SendOptions(queue: queue, priority: priority, countdown: countdown)
            )
        } catch {
            throw CtlFailure(code: CtlExit.unavailable, message: "swiftqctl: \(error.message)")
        }
        guard wait else {
            print(result.id)
            return
        }
        do {
            print(try result.get(timeout: .milliseconds(Int64(timeout * 1000))).jsonString)
        } catch {
            switch error.code {
            case .taskFailed:
                throw CtlFailure(
                    code: CtlExit.commandFailed,
                    message: "\(task) [\(result.id)] failed: \(error.message)"
                )
            case .timeout, .noBackend:
                throw CtlFailure(code: CtlExit.commandFailed, message: "swiftqctl: \(error.message)")
            case .connection:
                throw CtlFailure(code: CtlExit.unavailable, message: "swiftqctl: \(error.message)")
            }
        }
    }
}

struct ResultCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "result",
        abstract: "Show the state and result of a task by id."
    )

    @Argument(help: "The task id.")
    var id: String

    @Flag(help: "Print the stored result meta as JSON.")
    var json = false

    @OptionGroup var brokerOptions: BrokerOptions

    func run() throws {
        let client = try brokerOptions.client()
        let meta: JSONValue?
        do {
            meta = try client.result(id: id).meta()
        } catch {
            throw CtlFailure(code: CtlExit.unavailable, message: "swiftqctl: \(error.message)")
        }
        guard let meta else {
            print(json ? #"{"status":"PENDING"}"# : "PENDING")
            return
        }
        if json {
            print(meta.jsonString)
            return
        }
        let status = meta["status"]?.stringValue ?? "?"
        print("\(status)  \(meta["result"]?.jsonString ?? "null")")
        if let traceback = meta["traceback"]?.stringValue { print(traceback, terminator: "") }
    }
}
