import OrderedCollections
import SwiftqCore

#if canImport(Glibc)
import Glibc
#endif

/// One remote-control command of the table swiftq serves (Celery's `celery/worker/control.py` `Panel`), with its
/// arguments typed. The same table is answered over the broker (pidbox) and on the control socket.
///
/// Parsed from Celery's wire form (`method` and `arguments`, celery-wire-protocol.md §5.4) by
/// ``init(method:arguments:)``: what a stock `celery inspect`/`celery control`, Flower or `app.control` sends.
package enum ControlCommand: Equatable, Sendable {
    // Inspect (read-only).
    case ping
    case stats
    case active(safe: Bool)
    case reserved
    case scheduled
    case revoked
    case registered(taskInfoItems: [String], builtins: Bool)
    case activeQueues
    case conf(withDefaults: Bool)
    case report
    case clock
    case queryTask(ids: [String])
    /// Mingle: another node starting up (or asking) sends its revoked ids and wants ours.
    case hello(fromNode: String, revoked: [String])

    // Control (state-changing).
    case revoke(ids: [String], terminate: Bool, signal: Int32)
    /// `shown` is the headers as Celery's replies print them: the object as sent, or the CLI's `header=value` list
    /// as the dict Celery makes of it (the last value of a header).
    case revokeByStampedHeaders(
        headers: OrderedDictionary<String, [JSONValue]>,
        shown: JSONValue,
        terminate: Bool,
        signal: Int32
    )
    case poolGrow(Int)
    case poolShrink(Int)
    case autoscale(max: Int?, min: Int?)
    case addConsumer(queue: String)
    case cancelConsumer(queue: String)
    case enableEvents
    case disableEvents
    /// An event receiver's wake-up call; Celery answers `null` and sends a `worker-heartbeat` event.
    case heartbeat
    case shutdown(message: String?)
    /// Owned by the rate limiter (another change wires it): parsed here so that the table has its place, answered
    /// as not available until then.
    case rateLimit(task: String, rate: String)
    /// Owned by the per-task time limits (wired with the rate limiter): parsed, answered as not available yet.
    case timeLimit(task: String, soft: Double?, hard: Double?)

    /// A request the command table cannot take: the reply Celery would give (`{"error": "KeyError('x')"}` for an
    /// unknown method, `TypeError(…)` for wrong arguments).
    package struct Refusal: Error, Equatable, Sendable {
        package var error: String
        package var reply: JSONValue { ["error": .string(error)] }
    }

    /// The method names the table knows, with Celery's aliases.
    package static let aliases: [String: String] = [
        "dump_conf": "conf", "dump_schedule": "scheduled", "dump_reserved": "reserved", "dump_active": "active",
        "dump_revoked": "revoked", "dump_tasks": "registered",
    ]

    /// Whether the command only reads state (`celery inspect`); the others change it (`celery control`).
    package var isReadOnly: Bool {
        switch self {
        case .ping, .stats, .active, .reserved, .scheduled, .revoked, .registered, .activeQueues, .conf, .report,
            .clock, .queryTask, .heartbeat:
            true
        // `hello` merges the sender's revokes: a state change, refused where control is read-only.
        case .hello, .revoke, .revokeByStampedHeaders, .poolGrow, .poolShrink, .autoscale, .addConsumer,
            .cancelConsumer, .enableEvents, .disableEvents, .shutdown, .rateLimit, .timeLimit:
            false
        }
    }

    /// Celery's method name of the command.
    package var method: String {
        switch self {
        case .ping: "ping"
        case .stats: "stats"
        case .active: "active"
        case .reserved: "reserved"
        case .scheduled: "scheduled"
        case .revoked: "revoked"
        case .registered: "registered"
        case .activeQueues: "active_queues"
        case .conf: "conf"
        case .report: "report"
        case .clock: "clock"
        case .queryTask: "query_task"
        case .hello: "hello"
        case .revoke: "revoke"
        case .revokeByStampedHeaders: "revoke_by_stamped_headers"
        case .poolGrow: "pool_grow"
        case .poolShrink: "pool_shrink"
        case .autoscale: "autoscale"
        case .addConsumer: "add_consumer"
        case .cancelConsumer: "cancel_consumer"
        case .enableEvents: "enable_events"
        case .disableEvents: "disable_events"
        case .heartbeat: "heartbeat"
        case .shutdown: "shutdown"
        case .rateLimit: "rate_limit"
        case .timeLimit: "time_limit"
        }
    }

    /// Parses Celery's `method` and `arguments` (an object, or null for none).
    package init(method: String, arguments: JSONValue?) throws(Refusal) {
        let name = Self.aliases[method] ?? method
        let arguments = Arguments(method: name, value: arguments)
        switch name {
        case "ping": self = .ping
        case "stats": self = .stats
        case "active": self = .active(safe: try arguments.bool("safe") ?? false)
        case "reserved": self = .reserved
        case "scheduled": self = .scheduled
        case "revoked": self = .revoked
        case "registered":
            self = .registered(
                taskInfoItems: try arguments.strings("taskinfoitems") ?? [],
                builtins: try arguments.bool("builtins") ?? false
            )
        case "active_queues": self = .activeQueues
        case "conf": self = .conf(withDefaults: try arguments.bool("with_defaults") ?? false)
        case "report": self = .report
        case "clock": self = .clock
        case "query_task": self = .queryTask(ids: try arguments.strings("ids") ?? [])
        case "hello":
            guard let from = try arguments.string("from_node") else {
                throw arguments.missing("from_node")
            }
            self = .hello(fromNode: from, revoked: try arguments.strings("revoked") ?? [])
        case "revoke", "terminate":
            self = .revoke(
                ids: try arguments.strings("task_id") ?? [],
                terminate: name == "terminate" ? true : (try arguments.bool("terminate") ?? false),
                signal: try arguments.signal("signal")
            )
        case "revoke_by_stamped_headers":
            let headers = try arguments.stampedHeaders("headers")
            self = .revokeByStampedHeaders(
                headers: headers,
                shown: arguments.field("headers")?.objectValue.map(JSONValue.object)
                    ?? .object(headers.compactMapValues(\.last)),
                terminate: try arguments.bool("terminate") ?? false,
                signal: try arguments.signal("signal")
            )
        case "pool_grow": self = .poolGrow(try arguments.count("n"))
        case "pool_shrink": self = .poolShrink(try arguments.count("n"))
        case "autoscale": self = .autoscale(max: try arguments.int("max"), min: try arguments.int("min"))
        case "add_consumer":
            guard let queue = try arguments.string("queue"), !queue.isEmpty else { throw arguments.missing("queue") }
            self = .addConsumer(queue: queue)
        case "cancel_consumer":
            guard let queue = try arguments.string("queue"), !queue.isEmpty else { throw arguments.missing("queue") }
            self = .cancelConsumer(queue: queue)
        case "enable_events": self = .enableEvents
        case "disable_events": self = .disableEvents
        case "heartbeat": self = .heartbeat
        case "shutdown": self = .shutdown(message: try arguments.string("msg"))
        case "rate_limit":
            guard let task = try arguments.string("task_name") else { throw arguments.missing("task_name") }
            self = .rateLimit(task: task, rate: try arguments.string("rate_limit") ?? "")
        case "time_limit":
            guard let task = try arguments.string("task_name") else { throw arguments.missing("task_name") }
            self = .timeLimit(task: task, soft: try arguments.double("soft"), hard: try arguments.double("hard"))
        default:
            throw Refusal(error: "KeyError(\(PythonRepr.repr(.string(method))))")
        }
    }

    /// A signal as Celery's `platforms.signals.signum` takes it: a number, or a name with or without `SIG`, any case.
    /// Nil for an unknown one.
    package static func signalNumber(_ value: JSONValue?) -> Int32? {
        switch value {
        case nil, .null?: return SIGTERM
        case .int(let number)?: return (1...64).contains(number) ? Int32(number) : nil
        case .string(let text)?:
            if let number = Int32(text) { return (1...64).contains(number) ? number : nil }
            var name = text.uppercased()
            if name.hasPrefix("SIG") { name.removeFirst(3) }
            return signalNames[name]
        default: return nil
        }
    }

    package static let signalNames: [String: Int32] = [
        "HUP": SIGHUP, "INT": SIGINT, "QUIT": SIGQUIT, "ILL": SIGILL, "TRAP": SIGTRAP, "ABRT": SIGABRT,
        "IOT": SIGABRT, "BUS": SIGBUS, "FPE": SIGFPE, "KILL": SIGKILL, "USR1": SIGUSR1, "SEGV": SIGSEGV,
        "USR2": SIGUSR2, "PIPE": SIGPIPE, "ALRM": SIGALRM, "TERM": SIGTERM, "CHLD": SIGCHLD, "CONT": SIGCONT,
        "STOP": SIGSTOP, "TSTP": SIGTSTP, "TTIN": SIGTTIN, "TTOU": SIGTTOU, "URG": SIGURG, "XCPU": SIGXCPU,
        "XFSZ": SIGXFSZ, "VTALRM": SIGVTALRM, "PROF": SIGPROF, "WINCH": SIGWINCH, "IO": SIGIO, "POLL": SIGIO,
        "PWR": SIGPWR, "SYS": SIGSYS,
    ]

    /// The arguments object, read field by field with Celery's leniency (a missing or null field is the default).
    private struct Arguments {
        let method: String
        let value: JSONValue?

        func field(_ key: String) -> JSONValue? {
            guard let value = value?[key], !value.isNull else { return nil }
            return value
        }

        func wrong(_ key: String, _ expected: String) -> Refusal {
            Refusal(error: "TypeError(\(PythonRepr.repr(.string("\(method)(): \(key) must be \(expected)"))))")
        }

        func missing(_ key: String) -> Refusal {
            Refusal(
                error: "TypeError(\(PythonRepr.repr(.string("\(method)() missing required argument: '\(key)'"))))"
            )
        }

        func string(_ key: String) throws(Refusal) -> String? {
            guard let field = field(key) else { return nil }
            guard let text = field.stringValue else { throw wrong(key, "a string") }
            return text
        }

        func bool(_ key: String) throws(Refusal) -> Bool? {
            guard let field = field(key) else { return nil }
            switch field {
            case .bool(let flag): return flag
            case .int(let number): return number != 0
            case .string(let text):
                // Celery's strtobool, for arguments typed on the command line.
                switch text.lowercased() {
                case "1", "true", "yes", "y", "on": return true
                case "0", "false", "no", "n", "off", "": return false
                default: throw wrong(key, "a boolean")
                }
            default: throw wrong(key, "a boolean")
            }
        }

        func int(_ key: String) throws(Refusal) -> Int? {
            guard let field = field(key) else { return nil }
            switch field {
            case .int(let number): return Int(number)
            case .double(let number) where number == number.rounded() && abs(number) < 1e15: return Int(number)
            case .string(let text):
                guard let number = Int(text) else { throw wrong(key, "an integer") }
                return number
            default: throw wrong(key, "an integer")
            }
        }

        /// `n` of `pool_grow`/`pool_shrink`: 1 by default, at least 1.
        func count(_ key: String) throws(Refusal) -> Int {
            let number = try int(key) ?? 1
            guard number >= 1 else { throw wrong(key, "a positive integer") }
            return number
        }

        func double(_ key: String) throws(Refusal) -> Double? {
            guard let field = field(key) else { return nil }
            if let number = field.doubleValue { return number }
            if let text = field.stringValue, let number = Double(text) { return number }
            throw wrong(key, "a number")
        }

        /// One string or a list of strings (Celery's `maybe_list`).
        func strings(_ key: String) throws(Refusal) -> [String]? {
            guard let field = field(key) else { return nil }
            if let text = field.stringValue { return [text] }
            guard let items = field.arrayValue else { throw wrong(key, "a string or a list of strings") }
            var strings: [String] = []
            for item in items {
                guard let text = item.stringValue else { throw wrong(key, "a string or a list of strings") }
                strings.append(text)
            }
            return strings
        }

        func signal(_ key: String) throws(Refusal) -> Int32 {
            guard let number = ControlCommand.signalNumber(field(key)) else {
                throw Refusal(
                    error:
                        "TypeError(\(PythonRepr.repr(.string("\(method)(): unknown signal \(field(key).map { PythonRepr.repr($0) } ?? "None")"))))"
                )
            }
            return number
        }

        /// `{"header": value or [values]}`, or `["header=value", …]` as the CLI sends it.
        func stampedHeaders(_ key: String) throws(Refusal) -> OrderedDictionary<String, [JSONValue]> {
            guard let field = field(key) else { throw missing(key) }
            var headers: OrderedDictionary<String, [JSONValue]> = [:]
            if let object = field.objectValue {
                for (header, stamps) in object { headers[header] = stamps.arrayValue ?? [stamps] }
                return headers
            }
            let items = field.arrayValue ?? (field.stringValue.map { [.string($0)] } ?? [])
            guard !items.isEmpty || field.arrayValue != nil else { throw wrong(key, "an object or a list") }
            for item in items {
                guard let text = item.stringValue, let equals = text.firstIndex(of: "=") else {
                    throw wrong(key, "an object or a list of \"header=value\"")
                }
                headers[String(text[..<equals]), default: []].append(
                    .string(String(text[text.index(after: equals)...]))
                )
            }
            return headers
        }
    }
}
