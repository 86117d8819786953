import OrderedCollections
import SwiftqCore
import SwiftqTasks

/// The suite's tasks that retry with new arguments (`self.retry(args=…, kwargs=…)`), on ``TaskRetry``'s `args` and
/// `kwargs`.
extension SuiteTasks {
    /// The arguments Celery 5.7's `Task.retry` sends the next run, for a task whose parameters are `parameters` (all
    /// positional-or-keyword): new positional arguments drop the inherited keywords they now fill; a new keyword
    /// replaces the inherited positional argument of that name, in its place. What is not given is inherited.
    static func retryArguments(
        parameters: [String],
        invocation: TaskInvocation,
        args newArgs: [JSONValue]?,
        kwargs newKwargs: OrderedDictionary<String, JSONValue>?
    ) -> (args: [JSONValue], kwargs: OrderedDictionary<String, JSONValue>) {
        if let newArgs, newKwargs == nil, !invocation.kwargs.isEmpty {
            var kwargs = invocation.kwargs
            for name in parameters.prefix(newArgs.count) { kwargs.removeValue(forKey: name) }
            return (newArgs, kwargs)
        }
        if let newKwargs, newArgs == nil, !invocation.args.isEmpty, invocation.args.count <= parameters.count {
            var args = invocation.args
            var kwargs = newKwargs
            for (index, name) in parameters.prefix(args.count).enumerated() {
                if let value = kwargs.removeValue(forKey: name) { args[index] = value }
            }
            return (args, kwargs)
        }
        return (newArgs ?? invocation.args, newKwargs ?? invocation.kwargs)
    }

    static func registerRetrying(into registry: inout TaskRegistry) {
        registry.task("retry_with_args_after_kwargs") { invocation, _ in
            let call = try PythonCall(invocation, [("foo", nil), ("bar", nil), ("label", .null)])
            guard invocation.retries > 0 else {
                let next = retryArguments(
                    parameters: ["foo", "bar", "label"],
                    invocation: invocation,
                    args: [try Python.add(call["foo"], 1), try Python.add(call["bar"], 1)],
                    kwargs: nil
                )
                throw TaskRetry(countdown: 0, args: next.args, kwargs: next.kwargs)
            }
            return [
                "foo": call["foo"], "bar": call["bar"], "label": call["label"],
                "retries": .int(Int64(invocation.retries)), "is_eager": false,
            ]
        }
        registry.task("retry_with_kwargs_after_args") { invocation, _ in
            let call = try PythonCall(invocation, [("foo", nil), ("bar", nil)])
            guard invocation.retries > 0 else {
                let next = retryArguments(
                    parameters: ["foo", "bar"],
                    invocation: invocation,
                    args: nil,
                    kwargs: ["foo": try Python.add(call["foo"], 1)]
                )
                throw TaskRetry(countdown: 0, args: next.args, kwargs: next.kwargs)
            }
            return [
                "foo": call["foo"], "bar": call["bar"], "retries": .int(Int64(invocation.retries)), "is_eager": false,
            ]
        }
    }
}
