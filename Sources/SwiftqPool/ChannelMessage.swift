import OrderedCollections
import SwiftqCore
import SwiftqPlatform

/// The messages that travel on swiftq's internal channels, one JSON object per ``ChannelFrame``, told
/// apart by their `"type"`.
///
/// Consumer → pool child: `execute`, `log_level`. Pool child → consumer: `hello`, `result`, `error`.
/// Supervisor → consumer: `configure`, `stats`, `dump`, `shutdown`. Consumer → supervisor: `ready`, `heartbeat`
/// and `pool` (each with the pool's `stats` rows), `stats`, `broker_state`, `failed`, `drained`. The pool
/// children are the consumer's own (``PreforkPool``): no message hands their channels or exits around.
/// These are internal (both ends are the same binary) but documented and tested at the frame level,
/// because the tests drive a pool child over its channel directly. Code builds and reads them only through the
/// typed enums (``SupervisorMessage``, ``ConsumerMessage``, ``PoolRequest``, ``PoolReply``); this is their common
/// object builder.
package enum ChannelMessage {
    /// The `"type"` field of a message.
    package static func type(of message: JSONValue) -> String? {
        message["type"]?.stringValue
    }

    /// Builds a message object with `type` first.
    package static func make(_ type: String, _ fields: OrderedDictionary<String, JSONValue> = [:]) -> JSONValue {
        var object: OrderedDictionary<String, JSONValue> = ["type": .string(type)]
        for (key, value) in fields { object[key] = value }
        return .object(object)
    }

}

package extension ExitStatus {
    /// As JSON, for `slot_exited` and `stats`: a description, and the exit code or the signal.
    var json: JSONValue {
        switch self {
        case .exited(let code):
            .object(["description": .string(description), "code": .int(Int64(code)), "signal": .null])
        case .signaled(let signal, _):
            .object(["description": .string(description), "code": .null, "signal": .int(Int64(signal))])
        }
    }
}
