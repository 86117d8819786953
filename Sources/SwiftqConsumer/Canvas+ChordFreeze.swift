import OrderedCollections
import SwiftqCore

extension Canvas {
    /// A chord header member as Celery's `chord.run` freezes it (`group._freeze_group_tasks` → `freeze(group_id=,
    /// chord=, group_index=)`) before a worker publishes it: whatever finishes last in the member reports to the
    /// chord. A plain task gets the chord's `group_id` (unless it has one: Celery keeps it), the body as `chord` and
    /// its `group_index`; a chain passes all three to its last step; a group to each of its tasks, with their own
    /// positions as `group_index`; a chord to its body, so that a chord nested in a chain in a header counts for the
    /// outer chord once its own body is done, as a Python worker makes it.
    static func frozenForChord(_ json: JSONValue, groupID: String, body: JSONValue, groupIndex: Int) -> JSONValue {
        guard var object = json.objectValue, let signature = Signature(json) else { return json }
        func replacing(_ key: String, in container: String, with value: JSONValue) {
            var kwargs = object[container]?.objectValue ?? [:]
            kwargs[key] = value
            object[container] = .object(kwargs)
        }
        switch signature.subtaskType {
        case "chain":
            var tasks = signature.kwargs["tasks"]?.arrayValue ?? []
            guard let last = tasks.indices.last else { return json }
            tasks[last] = frozenForChord(tasks[last], groupID: groupID, body: body, groupIndex: groupIndex)
            replacing("tasks", in: "kwargs", with: .array(tasks))
        case "group":
            let tasks = (signature.kwargs["tasks"]?.arrayValue ?? []).enumerated().map { index, member in
                frozenForChord(member, groupID: groupID, body: body, groupIndex: index)
            }
            replacing("tasks", in: "kwargs", with: .array(tasks))
        case "chord":
            guard let inner = signature.kwargs["body"], !inner.isNull else { return json }
            replacing(
                "body",
                in: "kwargs",
                with: frozenForChord(inner, groupID: groupID, body: body, groupIndex: groupIndex)
            )
        default:
            object = withOptions(object) { options in
                if options["group_id"]?.stringValue?.isEmpty ?? true { options["group_id"] = .string(groupID) }
                options["chord"] = body
                options["group_index"] = .int(Int64(groupIndex))
            }
        }
        return .object(object)
    }

    /// How many completions a chord header member counts for (Celery's `chord._descend`, whose sum is the size
    /// `set_chord_size` stores): a task 1, a group the sum of its tasks, a chain its last step that counts, a chord
    /// its body.
    static func chordSize(_ json: JSONValue) -> Int {
        guard let signature = Signature(json) else { return json.arrayValue?.count ?? 0 }
        switch signature.subtaskType {
        case "group":
            return (signature.kwargs["tasks"]?.arrayValue ?? []).reduce(0) { $0 + chordSize($1) }
        case "chain":
            for step in (signature.kwargs["tasks"]?.arrayValue ?? []).reversed() {
                let size = chordSize(step)
                if size > 0 { return size }
            }
            return 0
        case "chord":
            return signature.kwargs["body"].map(chordSize) ?? 0
        default:
            return 1
        }
    }
}
