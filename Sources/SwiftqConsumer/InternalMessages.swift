import OrderedCollections
import SwiftqCore
import SwiftqPool

/// What the supervisor tells the consumer, one case per message with its fields typed: a typo or a missing
/// field is a compile error, not a `message["slot"]?.intValue` that quietly yields nil. One encoder
/// (``json``) and one decoder (``init(decoding:)``), shared by both ends (the same binary).
///
/// On the wire still a JSON object with `"type"` first, in a ``ChannelFrame`` (a binary header is the next
/// step; the consumer ↔ pool child messages are still ``ChannelMessage`` objects).
package enum SupervisorMessage: Equatable, Sendable {
    /// The resolved configuration as YAML text (and the file it came from, for messages), and the daemon's
    /// random id (a consumer's Redis reservations are owned by `<node>#<daemonID>.<random>`).
    case configure(yaml: String, file: String, daemonID: String)
    /// A `stats` query; the answer is ``ConsumerMessage/stats(request:consumer:)`` with the same `request`.
    case stats(request: Int64)
    /// SIGUSR1: log the state.
    case dump
    /// Warm (with the shutdown timeout in seconds) or cold.
    case shutdown(cold: Bool, timeout: Double?)
    /// A consumer-owned command of the control table from the control socket (Celery's method and arguments); the
    /// answer is ``ConsumerMessage/controlReply(request:reply:)`` with the same `request`.
    case control(request: Int64, method: String, arguments: JSONValue)
}

/// What the consumer tells the supervisor (see ``SupervisorMessage``).
package enum ConsumerMessage: Equatable, Sendable {
    /// Every bootstep started; `pool` is the pool's `stats` rows.
    case ready(slots: Int, pool: [JSONValue])
    /// Every ``Consumer/heartbeatInterval``, with the pool's rows.
    /// `fetchIdle`: seconds since the fetch path last made progress; `fetchStarved`: it has room while the broker
    /// holds messages for it (the supervisor's stall detection).
    case heartbeat(busy: Int, pool: [JSONValue], fetchIdle: Double?, fetchStarved: Bool)
    /// A pool slot's child exited or came up: the pool's rows at once (crash loops reach `STATUS=` promptly).
    case pool([JSONValue])
    /// The answer to ``SupervisorMessage/stats(request:)``.
    case stats(request: Int64, consumer: JSONValue)
    /// The broker connection went up or down.
    case brokerState(connected: Bool, detail: String)
    /// A bootstep failed; the consumer exits.
    case failed(message: String)
    /// A warm shutdown finished its running tasks.
    case drained
    /// The answer to ``SupervisorMessage/control(request:method:arguments:)``: Celery's reply, nil when the command
    /// has none (`shutdown`).
    case controlReply(request: Int64, reply: JSONValue?)
    /// A remote `shutdown` (pidbox or socket): the supervisor stops the daemon warm, as for SIGTERM.
    case shutdownRequested(reason: String)
}

package extension SupervisorMessage {
    var json: JSONValue {
        switch self {
        case .configure(let yaml, let file, let daemonID):
            ChannelMessage.make(
                "configure",
                ["yaml": .string(yaml), "file": .string(file), "daemon_id": .string(daemonID)]
            )
        case .stats(let request): ChannelMessage.make("stats", ["request": .int(request)])
        case .dump: ChannelMessage.make("dump")
        case .shutdown(let cold, let timeout):
            ChannelMessage.make(
                "shutdown",
                ["mode": cold ? "cold" : "warm", "timeout": timeout.map { .double($0) } ?? .null]
            )
        case .control(let request, let method, let arguments):
            ChannelMessage.make(
                "control",
                ["request": .int(request), "method": .string(method), "arguments": arguments]
            )
        }
    }

    init(decoding message: JSONValue) throws(ChannelDecodeError) {
        let reader = try FieldReader(message)
        switch reader.type {
        case "configure":
            self = .configure(
                yaml: try reader.string("yaml"),
                file: try reader.string("file"),
                daemonID: try reader.string("daemon_id")
            )
        case "stats": self = .stats(request: try reader.int("request"))
        case "dump": self = .dump
        case "shutdown":
            let mode = try reader.string("mode")
            guard mode == "warm" || mode == "cold" else { throw reader.wrong("mode", "\"warm\" or \"cold\"") }
            self = .shutdown(cold: mode == "cold", timeout: try reader.optionalDouble("timeout"))
        case "control":
            self = .control(
                request: try reader.int("request"),
                method: try reader.string("method"),
                arguments: try reader.value("arguments")
            )
        default: throw reader.unknown
        }
    }
}

package extension ConsumerMessage {
    var json: JSONValue {
        switch self {
        case .ready(let slots, let pool):
            ChannelMessage.make("ready", ["slots": .int(Int64(slots)), "pool": .array(pool)])
        case .heartbeat(let busy, let pool, let fetchIdle, let fetchStarved):
            ChannelMessage.make(
                "heartbeat",
                [
                    "busy": .int(Int64(busy)), "pool": .array(pool),
                    "fetch_idle": fetchIdle.map { .double($0) } ?? .null, "fetch_starved": .bool(fetchStarved),
                ]
            )
        case .pool(let rows): ChannelMessage.make("pool", ["pool": .array(rows)])
        case .stats(let request, let consumer):
            ChannelMessage.make("stats", ["request": .int(request), "consumer": consumer])
        case .brokerState(let connected, let detail):
            ChannelMessage.make("broker_state", ["connected": .bool(connected), "detail": .string(detail)])
        case .failed(let message): ChannelMessage.make("failed", ["message": .string(message)])
        case .drained: ChannelMessage.make("drained")
        case .controlReply(let request, let reply):
            ChannelMessage.make(
                "control_reply",
                ["request": .int(request), "has_reply": .bool(reply != nil), "reply": reply ?? .null]
            )
        case .shutdownRequested(let reason):
            ChannelMessage.make("shutdown_requested", ["reason": .string(reason)])
        }
    }

    init(decoding message: JSONValue) throws(ChannelDecodeError) {
        let reader = try FieldReader(message)
        switch reader.type {
        case "ready": self = .ready(slots: Int(try reader.int("slots")), pool: try reader.array("pool"))
        case "heartbeat":
            self = .heartbeat(
                busy: Int(try reader.int("busy")),
                pool: try reader.array("pool"),
                fetchIdle: try reader.optionalDouble("fetch_idle"),
                fetchStarved: try reader.bool("fetch_starved")
            )
        case "pool": self = .pool(try reader.array("pool"))
        case "stats": self = .stats(request: try reader.int("request"), consumer: try reader.value("consumer"))
        case "broker_state":
            self = .brokerState(connected: try reader.bool("connected"), detail: try reader.string("detail"))
        case "failed": self = .failed(message: try reader.string("message"))
        case "drained": self = .drained
        case "control_reply":
            self = .controlReply(
                request: try reader.int("request"),
                // Not `nil`: JSONValue is nil-literal expressible, and that would read as JSON null.
                reply: try reader.bool("has_reply") ? try reader.value("reply") : JSONValue?.none
            )
        case "shutdown_requested": self = .shutdownRequested(reason: try reader.string("reason"))
        default: throw reader.unknown
        }
    }
}
