import OrderedCollections
import SwiftqCore

/// The messages that travel on swiftq's internal channels, one JSON object per ``ChannelFrame``, told
/// apart by their `"type"`.
///
/// Consumer → pool child: `execute`, `log_level`, `ping`. Pool child → consumer: `hello`, `result`, `error`.
/// Supervisor → consumer: `configure`, `attach_slot` (+1 descriptor), `slot_exited`, `retire_slot`,
/// `stats`, `shutdown`. Consumer → supervisor: `ready`, `heartbeat`, `stats`, `slot_retired`, `drained`.
/// These are internal (both ends are the same binary) but documented and tested at the frame level,
/// because the tests drive a pool child over its channel directly.
enum ChannelMessage {
    /// The `"type"` field of a message.
    static func type(of message: JSONValue) -> String? {
        message["type"]?.stringValue
    }

    /// Builds a message object with `type` first.
    static func make(_ type: String, _ fields: OrderedDictionary<String, JSONValue> = [:]) -> JSONValue {
        var object: OrderedDictionary<String, JSONValue> = ["type": .string(type)]
        for (key, value) in fields { object[key] = value }
        return .object(object)
    }

    /// An exit status as JSON, for `slot_exited` and `stats`.
    static func json(_ status: ExitStatusDescription) -> JSONValue {
        var object: OrderedDictionary<String, JSONValue> = ["description": .string(status.text)]
        object["code"] = status.code.map { .int(Int64($0)) } ?? .null
        object["signal"] = status.signal.map { .int(Int64($0)) } ?? .null
        return .object(object)
    }
}

/// The parts of an exit status that the channels and `stats` carry.
struct ExitStatusDescription {
    var text: String
    var code: Int32?
    var signal: Int32?
}
