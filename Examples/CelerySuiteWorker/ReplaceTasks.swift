import OrderedCollections
import SwiftqCore
import SwiftqRedis
import SwiftqTasks

/// The suite's tasks that replace themselves (`self.replace(sig)`), on ``TaskReplace``.
extension SuiteTasks {
    /// `t.integration.tasks.<name>.s(*args, **kwargs)`.
    static func sig(
        _ name: String,
        _ args: [JSONValue] = [],
        kwargs: OrderedDictionary<String, JSONValue> = [:],
        immutable: Bool = false
    ) -> TaskSignature {
        TaskSignature("\(module).\(name)", args: args, kwargs: kwargs, immutable: immutable)
    }

    /// `redis_echo.s()`, or `redis_echo.si(link_msg)` with a message.
    static func echoLink(_ message: JSONValue) -> TaskSignature {
        message.isNull ? sig("redis_echo") : sig("redis_echo", [message], immutable: true)
    }

    static func registerReplacing(into registry: inout TaskRegistry) {
        registry.task("add_replaced") { invocation, _ in
            let call = try PythonCall(invocation, [("x", nil), ("y", nil)])
            throw TaskReplace(sig("add", [call["x"], call["y"]]))
        }
        registry.task("fail_replaced") { invocation, _ in
            let call = try PythonCall(invocation, [], variadic: true)
            throw TaskReplace(sig("fail", call.rest, immutable: true))
        }
        registry.task("add_replaced_with_chain") { invocation, _ in
            let call = try PythonCall(invocation, [("x", nil), ("y", nil)])
            throw TaskReplace(.chain([sig("add", [call["x"], call["y"]]), sig("identity")]))
        }
        registry.task("replace_with_chain") { invocation, _ in
            let call = try PythonCall(invocation, [], variadic: true, keywordOnly: [("link_msg", .null)])
            var steps = TaskSignature.chain([sig("identity", call.rest), sig("identity")])
            steps.link(echoLink(call["link_msg"]))
            throw TaskReplace(steps)
        }
        registry.task("replace_with_chain_which_raises") { invocation, _ in
            let call = try PythonCall(invocation, [], variadic: true, keywordOnly: [("link_msg", .null)])
            var steps = TaskSignature.chain([sig("identity", call.rest), sig("raise_error")])
            steps.linkError(echoLink(call["link_msg"]))
            throw TaskReplace(steps)
        }
        registry.task("replace_with_empty_chain") { invocation, _ in
            _ = try PythonCall(invocation, [], variadic: true)
            throw TaskReplace(.chain([]))
        }
        registry.task("replace_with_chain_which_contains_a_group") { invocation, _ in
            _ = try PythonCall(invocation, [])
            throw TaskReplace(.chain([sig("add", [1, 2]), .group([sig("add", [1]), sig("add", [1])])]))
        }
        registry.task("add_to_all") { invocation, _ in
            let call = try PythonCall(invocation, [("nums", nil), ("val", nil)])
            guard let nums = call["nums"].arrayValue else {
                throw TaskFailure.typeError("'\(Python.typeName(call["nums"]))' object is not iterable")
            }
            throw TaskReplace(.group(nums.map { sig("add", [$0, call["val"]]) }))
        }
        registry.task("record_replaced_task_nesting") { invocation, _ in
            let call = try PythonCall(invocation, [("replacements", nil), ("nesting", .null)])
            var nesting = call["nesting"].isNull ? [] : call["nesting"].arrayValue ?? []
            nesting.append(.int(Int64(invocation.request.replacedTaskNesting)))
            guard Python.isTrue(call["replacements"]) else { return .array(nesting) }
            var next = sig("record_replaced_task_nesting", [try Python.add(call["replacements"], -1), .array(nesting)])
            // Keeps the caller's result queue for the rpc:// backend, as the Python task does.
            next.options["reply_to"] = text(invocation.request.replyTo)
            throw TaskReplace(next)
        }
        // `second_order_replace1`/`2`: echo, then replace with a chain ending in the task itself with state=True.
        for (name, letter, inner) in [
            ("second_order_replace1", "A", sig("second_order_replace2")),
            ("second_order_replace2", "B", sig("redis_echo", ["In/Out C"])),
        ] {
            registry.task(name) { invocation, _ in
                let state = try PythonCall(invocation, [("state", false)])["state"]
                guard !Python.isTrue(state) else {
                    try redisCommand("RPUSH", "redis-echo", RedisArgument("Out \(letter)"))
                    return .null
                }
                try redisCommand("RPUSH", "redis-echo", RedisArgument("In \(letter)"))
                throw TaskReplace(.chain([inner, sig(name, kwargs: ["state": true], immutable: true)]))
            }
        }
        // `StampedTaskOnReplace.on_replace` stamps the replacement with `StampOnReplace` before it is sent.
        registry.task("replace_with_stamped_task") { invocation, _ in
            let replaceWith = try PythonCall(invocation, [("replace_with", .null)])["replace_with"]
            var replacement = sig("replaced_with_me").json
            if !replaceWith.isNull {
                guard let given = TaskSignature(json: replaceWith) else {
                    throw TaskFailure.typeError("signature() needs a signature dict, got \(replaceWith)")
                }
                replacement = given.json
            }
            throw TaskReplace(json: stamped(replacement, ["StampOnReplace": "This is the replaced task"]))
        }
    }

    /// Celery's `sig.stamp(visitor)` for a visitor returning `stamps`: each stamp an option of the signature, its
    /// name in `stamped_headers` (stamps already there are kept).
    static func stamped(_ signature: JSONValue, _ stamps: OrderedDictionary<String, JSONValue>) -> JSONValue {
        guard var object = signature.objectValue else { return signature }
        var options = object["options"]?.objectValue ?? [:]
        var names = (options["stamped_headers"]?.arrayValue ?? []).compactMap(\.stringValue)
        for (name, value) in stamps {
            options[name] = value
            if !names.contains(name) { names.append(name) }
        }
        options["stamped_headers"] = .array(names.map(JSONValue.string))
        object["options"] = .object(options)
        return .object(object)
    }
}
