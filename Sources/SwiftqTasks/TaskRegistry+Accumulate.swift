import SwiftqCore

extension TaskRegistry {
    /// Celery's built-in `celery.accumulate(*args, index=None)`: `args[index]`, or all the args as a list without an
    /// index. A group that replaces a task (``TaskReplace``) becomes a chord with `accumulate.s(index=0)` as its body,
    /// which hands on the list of the group's results.
    static let accumulateTaskName = "celery.accumulate"

    func accumulateHandler(named name: String) -> TaskHandler? {
        guard name == Self.accumulateTaskName else { return nil }
        return { invocation, _ in
            for key in invocation.kwargs.keys where key != "index" {
                throw TaskFailure.typeError("accumulate() got an unexpected keyword argument '\(key)'")
            }
            guard let index = invocation.kwargs["index"], !index.isNull else { return .array(invocation.args) }
            guard let position = index.intValue, index.boolValue == nil else {
                throw TaskFailure.typeError("tuple indices must be integers or slices, not \(index.typeName)")
            }
            let count = Int64(invocation.args.count)
            guard position < count, position >= -count else {
                throw TaskFailure(type: "IndexError", message: "tuple index out of range")
            }
            return invocation.args[Int(position < 0 ? position + count : position)]
        }
    }
}
