import SwiftqCore
import SwiftqTasks

/// A task's recorded effects (``TaskEffect``) in a `result` reply's `effects` list, one object each with its `type`:
/// `apply` and `add_to_chord` with the frozen `signature`, `store_result` with `task_id`, `state`, `result` and
/// `traceback`. A signature that is not an object with a task name is refused here, so the consumer only ever gets
/// signatures it can send.
extension PoolReply {
    static func effectJSON(_ effect: TaskEffect) -> JSONValue {
        switch effect {
        case .apply(let signature):
            return ChannelMessage.make("apply", ["signature": signature])
        case .addToChord(let signature):
            return ChannelMessage.make("add_to_chord", ["signature": signature])
        case .storeResult(let taskID, let state, let result, let traceback):
            return ChannelMessage.make(
                "store_result",
                [
                    "task_id": .string(taskID), "state": .string(state), "result": result,
                    "traceback": traceback.map(JSONValue.string) ?? .null,
                ]
            )
        }
    }

    static func effect(_ json: JSONValue) throws(ChannelDecodeError) -> TaskEffect {
        let reader = try FieldReader(json)
        func signature() throws(ChannelDecodeError) -> JSONValue {
            let value = try reader.value("signature")
            guard value["task"]?.stringValue != nil else { throw reader.wrong("signature", "a signature object") }
            return value
        }
        switch reader.type {
        case "apply":
            return .apply(try signature())
        case "add_to_chord":
            return .addToChord(try signature())
        case "store_result":
            let traceback = reader.object["traceback"] ?? .null
            guard traceback.isNull || traceback.stringValue != nil else { throw reader.wrong("traceback", "a string") }
            return .storeResult(
                taskID: try reader.string("task_id"),
                state: try reader.string("state"),
                result: try reader.value("result"),
                traceback: traceback.stringValue
            )
        default:
            throw reader.unknown
        }
    }
}
