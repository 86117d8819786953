import OrderedCollections
import SwiftqCore

extension TaskRegistry {
    /// Celery's built-in `celery.map` and `celery.starmap`, which every Celery worker has: `xmap(task, it)` and
    /// `xstarmap(task, it)` call the task named by the signature `task` in this process once per item of `it`
    /// (`task(item)`, `task(*item)`), in order, and return the list of results. As in Celery, only the task's
    /// name is taken from the signature (its partial arguments and options are not used), and the first failure
    /// fails the whole call. The task must be registered in this binary (exec tasks cannot be called this way).
    static let mapTaskNames: Set<String> = ["celery.map", "celery.starmap"]

    /// The handler of a built-in map task, resolved against this registry (so it sees every task registered).
    func mapHandler(named name: String) -> TaskHandler? {
        guard Self.mapTaskNames.contains(name) else { return nil }
        let spreads = name == "celery.starmap"
        return { [self] invocation, environment in
            try self.map(invocation, environment: environment, spreads: spreads)
        }
    }

    private func map(_ invocation: TaskInvocation, environment: TaskEnvironment, spreads: Bool) throws -> JSONValue {
        let function = spreads ? "xstarmap" : "xmap"
        var bound: [String: JSONValue] = [:]
        for (index, value) in invocation.args.enumerated() {
            guard index < 2 else {
                throw TaskFailure.typeError(
                    "\(function)() takes 2 positional arguments but \(invocation.args.count) were given"
                )
            }
            bound[index == 0 ? "task" : "it"] = value
        }
        for (key, value) in invocation.kwargs {
            guard key == "task" || key == "it" else {
                throw TaskFailure.typeError("\(function)() got an unexpected keyword argument '\(key)'")
            }
            guard bound[key] == nil else {
                throw TaskFailure.typeError("\(function)() got multiple values for argument '\(key)'")
            }
            bound[key] = value
        }
        guard let signature = bound["task"], let items = bound["it"] else {
            let missing = ["task", "it"].filter { bound[$0] == nil }.map { "'\($0)'" }.joined(separator: " and ")
            throw TaskFailure.typeError("\(function)() missing required positional argument: \(missing)")
        }
        guard let taskName = signature["task"]?.stringValue ?? signature.stringValue else {
            throw TaskFailure.typeError(
                "\(function)() needs a task signature (an object with \"task\"), got \(signature)"
            )
        }
        guard let list = items.arrayValue else {
            throw TaskFailure.typeError("'\(items.typeName)' object is not iterable")
        }
        guard let handler = handler(named: taskName) else { throw TaskFailure.notRegistered(taskName) }
        var results: [JSONValue] = []
        results.reserveCapacity(list.count)
        for item in list {
            var call = invocation
            call.name = taskName
            call.kwargs = [:]
            if spreads {
                guard let arguments = item.arrayValue else {
                    throw TaskFailure.typeError(
                        "\(taskName)() argument after * must be an iterable, not \(item.typeName)"
                    )
                }
                call.args = arguments
            } else {
                call.args = [item]
            }
            results.append(try handler(call, environment))
        }
        return .array(results)
    }
}
