import SwiftqCore
import SwiftqRedis
import SwiftqTasks
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

extension TaskRegistry {
    mutating func task(_ name: String, _ body: @escaping TaskHandler) {
        register("\(SuiteTasks.module).\(name)", handler: body)
    }
}

/// The suite's `ExpectedException(*args)`, defined in the tasks module so the client recreates it.
func expectedException(_ arguments: [JSONValue]) -> TaskFailure {
    var failure = TaskFailure(
        type: "ExpectedException",
        message: arguments.map { $0.stringValue ?? $0.description }.joined(separator: ", "),
        module: SuiteTasks.module
    )
    failure.arguments = arguments
    return failure
}

/// A connection to the suite's Redis (`REDIS_HOST`, `REDIS_PORT`, as `get_redis_connection()` reads them). Pool
/// children see them because dev/celery_suite_plugin.py lists them in `worker.pass_environment`.
func suiteRedis() throws(TaskFailure) -> RedisConnection {
    let host = getenv("REDIS_HOST").map { String(cString: $0) } ?? "localhost"
    let port = getenv("REDIS_PORT").map { String(cString: $0) } ?? "6379"
    do {
        return try RedisConnection(url: RedisURL(parsing: "redis://\(host):\(port)/0"))
    } catch {
        throw TaskFailure(type: "ConnectionError", message: error.message, module: "redis.exceptions")
    }
}

func redisCommand(_ arguments: RedisArgument...) throws(TaskFailure) {
    let connection = try suiteRedis()
    do {
        _ = try connection.command(arguments)
    } catch {
        throw TaskFailure(type: "ResponseError", message: error.message, module: "redis.exceptions")
    }
}

func pause(_ seconds: JSONValue, _ environment: TaskEnvironment) throws(TaskFailure) {
    guard let value = seconds.doubleValue ?? seconds.intValue.map(Double.init), value.isFinite, value >= 0 else {
        throw TaskFailure.typeError("sleep() needs a non-negative number of seconds, got \(seconds)")
    }
    // Python's `time.sleep` in a task gets `SoftTimeLimitExceeded` raised at the soft time limit.
    if !environment.sleep(.nanoseconds(Int64(value * 1e9))) && environment.isPastSoftTimeLimit {
        throw TaskFailure.softTimeLimitExceeded
    }
}

/// The suite's tasks, registered under `t.integration.tasks.*` (and `celery.ping`).
enum SuiteTasks {
    static let module = "t.integration.tasks"

    /// A request field as Python has it: the text, or `None`.
    static func text(_ value: String?) -> JSONValue { value.map(JSONValue.string) ?? .null }

    /// A time limit as Python's request has it: whole seconds as an int (as declared), `None` without one.
    static func seconds(_ value: Double?) -> JSONValue {
        guard let value else { return .null }
        return value == value.rounded() && abs(value) < 1e15 ? .int(Int64(value)) : .double(value)
    }

    /// `retry`'s attempt count in this process (Python keeps it on the task object).
    static let attempts = Mutex(0)

    static func register(into registry: inout TaskRegistry) {
        // `celery.contrib.testing.tasks.ping`, which the suite's session worker fixture sends before any test.
        registry.register("celery.ping") { invocation, _ in
            _ = try PythonCall(invocation, [])
            return "pong"
        }

        registry.task("identity") { invocation, _ in try PythonCall(invocation, [("x", nil)])["x"] }
        registry.task("add") { invocation, _ in
            let call = try PythonCall(invocation, [("x", nil), ("y", nil), ("z", .null)])
            let sum = try Python.add(call["x"], call["y"])
            return Python.isTrue(call["z"]) ? try Python.add(sum, call["z"]) : sum
        }
        registry.task("mul") { invocation, _ in
            let call = try PythonCall(invocation, [("x", nil), ("y", nil)])
            return try Python.multiply(call["x"], call["y"])
        }
        for name in ["add_not_typed", "add_ignore_result", "add_with_result"] {
            registry.task(name) { invocation, _ in
                let call = try PythonCall(invocation, [("x", nil), ("y", nil)])
                return try Python.add(call["x"], call["y"])
            }
        }
        registry.task("write_to_file_and_return_int") { invocation, _ in
            let call = try PythonCall(invocation, [("file_name", nil), ("i", nil)])
            guard let path = call["file_name"].stringValue else {
                throw TaskFailure.typeError(
                    "expected str, bytes or os.PathLike object, not \(Python.typeName(call["file_name"]))"
                )
            }
            let line = Array((try Python.redisText(call["i"]) + "\n").utf8)
            let descriptor = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
            guard descriptor >= 0 else {
                throw TaskFailure(type: "OSError", message: "[Errno \(errno)] cannot open '\(path)'")
            }
            defer { close(descriptor) }
            guard line.withUnsafeBytes({ write(descriptor, $0.baseAddress, $0.count) }) == line.count else {
                throw TaskFailure(type: "OSError", message: "[Errno \(errno)] cannot write '\(path)'")
            }
            return call["i"]
        }
        registry.task("raise_error") { _, _ in throw TaskFailure.valueError("deliberate error") }
        registry.task("delayed_sum") { invocation, environment in
            let call = try PythonCall(invocation, [("numbers", nil), ("pause_time", 1)])
            try pause(call["pause_time"], environment)
            return try Python.sum(call["numbers"])
        }
        registry.task("delayed_sum_with_soft_guard") { invocation, environment in
            let call = try PythonCall(invocation, [("numbers", nil), ("pause_time", 1)])
            do {
                try pause(call["pause_time"], environment)
            } catch let failure as TaskFailure where failure.type == TaskFailure.softTimeLimitExceeded.type {
                return 0  // `except SoftTimeLimitExceeded: return 0`
            }
            return try Python.sum(call["numbers"])
        }
        registry.task("tsum") { invocation, _ in try Python.sum(try PythonCall(invocation, [("nums", nil)])["nums"]) }
        registry.task("xsum") { invocation, _ in
            let nums = try PythonCall(invocation, [("nums", nil)])["nums"]
            guard let items = nums.arrayValue else {
                throw TaskFailure.typeError("'\(Python.typeName(nums))' object is not iterable")
            }
            var total: JSONValue = 0
            for item in items { total = try Python.add(total, item.arrayValue != nil ? try Python.sum(item) : item) }
            return total
        }
        registry.task("sum_and_record") { invocation, _ in
            let call = try PythonCall(invocation, [("values", nil), ("redis_key", nil)])
            let result = try Python.sum(call["values"])
            try redisCommand(
                "RPUSH",
                RedisArgument(try Python.redisText(call["redis_key"])),
                RedisArgument(invocation.id)
            )
            return result
        }
        registry.task("print_unicode") { invocation, _ in
            let call = try PythonCall(
                invocation,
                [("log_message", "håå®ƒ valmuefrø"), ("print_message", "hiöäüß")]
            )
            print("WARNING \(call["log_message"].stringValue ?? call["log_message"].description)")
            print(call["print_message"].stringValue ?? call["print_message"].description)
            return .null
        }
        registry.task("return_exception") { invocation, _ in
            .array([try PythonCall(invocation, [("e", nil)])["e"], true])
        }
        registry.task("sleeping") { invocation, environment in
            try pause(try PythonCall(invocation, [("i", nil)], extraKeywords: true)["i"], environment)
            return .null
        }
        registry.task("redis_echo") { invocation, _ in
            let call = try PythonCall(invocation, [("message", nil), ("redis_key", "redis-echo")])
            try redisCommand(
                "RPUSH",
                RedisArgument(try Python.redisText(call["redis_key"])),
                RedisArgument(try Python.redisText(call["message"]))
            )
            return .null
        }
        registry.task("redis_count") { invocation, _ in
            let call = try PythonCall(invocation, [("redis_key", "redis-count")])
            try redisCommand("INCR", RedisArgument(try Python.redisText(call["redis_key"])))
            return .null
        }
        registry.task("fail") { invocation, _ in
            let call = try PythonCall(invocation, [], variadic: true)
            throw expectedException(["Task expected to fail"] + call.rest)
        }
        // UnpickleableException(foo, bar) keeps only foo in its args, as Python stores it.
        registry.task("fail_unpickleable") { invocation, _ in
            let call = try PythonCall(invocation, [("foo", nil), ("bar", nil)])
            var failure = TaskFailure(
                type: "UnpickleableException",
                message: call["foo"].description,
                module: SuiteTasks.module
            )
            failure.arguments = [call["foo"]]
            throw failure
        }
        registry.task("errback_old_style") { invocation, _ in
            let requestID = try PythonCall(invocation, [("request_id", nil)])["request_id"]
            try redisCommand("INCR", RedisArgument(try Python.redisText(requestID)))
            return requestID
        }
        registry.task("errback_old_style_with_args") { invocation, _ in
            let call = try PythonCall(invocation, [("request_id", nil), ("label", nil)])
            try redisCommand(
                "RPUSH",
                RedisArgument(try Python.redisText(call["request_id"])),
                RedisArgument(try Python.redisText(call["label"]))
            )
            return .null
        }
        // New-style errbacks, `(request, exc, tb)`: the task API's registerErrback hands them the failed task.
        registry.registerErrback("\(SuiteTasks.module).errback_new_style") { failed, invocation, _ in
            _ = try PythonCall(invocation, [])
            try redisCommand("INCR", RedisArgument(failed.id))
            return .string(failed.id)
        }
        registry.registerErrback("\(SuiteTasks.module).errback_new_style_with_args") { failed, invocation, _ in
            let label = try PythonCall(invocation, [("label", nil)])["label"]
            try redisCommand("RPUSH", RedisArgument(failed.id), RedisArgument(try Python.redisText(label)))
            return .null
        }
        registry.task("replaced_with_me") { invocation, _ in
            _ = try PythonCall(invocation, [])
            return true
        }
        // pydantic=True: the argument arrives as a dict and the result is the model's model_dump().
        for name in ["add_pydantic", "add_pydantic_string_annotations"] {
            registry.task(name) { invocation, _ in
                let data = try PythonCall(invocation, [("data", nil)])["data"]
                guard let x = data["x"]?.intValue, let y = data["y"]?.intValue else {
                    throw TaskFailure(
                        type: "ValidationError",
                        message: "2 validation errors for AddParameterModel: x and y must be integers, got \(data)",
                        module: "pydantic_core._pydantic_core"
                    )
                }
                return ["result": .int(x + y)]
            }
        }
        registry.task("soft_time_limit_must_exceed_time_limit") { invocation, _ in
            _ = try PythonCall(invocation, [])
            return .null
        }

        // `(root_id, parent_id, i)` from the request context (TaskInvocation.request).
        registry.task("ids") { invocation, _ in
            let i = try PythonCall(invocation, [("i", nil)])["i"]
            return [Self.text(invocation.request.rootID), Self.text(invocation.request.parentID), i]
        }
        registry.task("collect_ids") { invocation, _ in
            let call = try PythonCall(invocation, [("res", nil), ("i", nil)])
            let ids: JSONValue = [
                Self.text(invocation.request.rootID), Self.text(invocation.request.parentID), call["i"],
            ]
            return [call["res"], ids]
        }

        // The request context (TaskInvocation.request), the retry, reject and ignore errors of the task API.
        // Task declarations Python makes in decorators (max_retries, default_retry_delay, time limits, acks_late)
        // are per-task settings in swiftqd's configuration: dev/celery_suite_plugin.py writes them.
        registry.task("redis_echo_group_id") { invocation, _ in
            let call = try PythonCall(invocation, [("_", nil), ("redis_key", "redis-group-ids")])
            try redisCommand(
                "RPUSH",
                RedisArgument(try Python.redisText(call["redis_key"])),
                RedisArgument(try Python.redisText(Self.text(invocation.request.group)))
            )
            return .null
        }
        registry.task("return_request_eta") { invocation, _ in
            _ = try PythonCall(invocation, [])
            return Self.text(invocation.request.eta)
        }
        for name in ["return_request_time_limits", "task_with_declared_time_limits"] {
            registry.task(name) { invocation, _ in
                _ = try PythonCall(invocation, [])
                return [
                    "time_limit": Self.seconds(invocation.request.timeLimit),
                    "soft_time_limit": Self.seconds(invocation.request.softTimeLimit),
                ]
            }
        }
        // `retry(return_value=None)`: with a value, succeeds on the fourth run in this process (Python keeps the
        // count on the task object, which is per pool child as here).
        registry.task("retry") { invocation, _ in
            let returnValue = try PythonCall(invocation, [("return_value", .null)])["return_value"]
            if Python.isTrue(returnValue) {
                let done = SuiteTasks.attempts.withLock { attempt in
                    if attempt >= 3 {
                        attempt = 0
                        return true
                    }
                    attempt += 1
                    return false
                }
                if done { return returnValue }
            }
            throw TaskRetry(countdown: 5, cause: expectedException([]))
        }
        registry.task("retry_unpickleable") { invocation, _ in
            let call = try PythonCall(invocation, [("foo", nil), ("bar", nil)], keywordOnly: [("retry_kwargs", nil)])
            var cause = TaskFailure(
                type: "UnpickleableException",
                message: call["foo"].description,
                module: SuiteTasks.module
            )
            cause.arguments = [call["foo"]]
            let options = call["retry_kwargs"]
            throw TaskRetry(
                countdown: options["countdown"]?.doubleValue,
                maxRetries: options["max_retries"]?.intValue.map { Int(clamping: $0) },
                cause: cause
            )
        }
        registry.task("retry_once") { invocation, _ in
            let call = try PythonCall(
                invocation,
                [],
                variadic: true,
                keywordOnly: [("expires", .null), ("max_retries", 1), ("countdown", 0.1)]
            )
            if invocation.retries > 0 { return .int(Int64(invocation.retries)) }
            throw TaskRetry(
                countdown: call["countdown"].doubleValue,
                maxRetries: call["max_retries"].intValue.map { Int(clamping: $0) }
            )
        }
        for name in ["retry_once_ignore_result", "retry_once_with_result"] {
            registry.task(name) { invocation, _ in
                _ = try PythonCall(invocation, [])
                if invocation.retries > 0 { return .int(Int64(invocation.retries)) }
                throw TaskRetry(countdown: 0)
            }
        }
        registry.register("auto_retry_class_task") { invocation, _ in
            _ = try PythonCall(invocation, [])
            if invocation.retries > 0 { return .int(Int64(invocation.retries)) }
            // autoretry_for=(ValueError,), retry_backoff, max_retries=1: the task's settings (autoretry).
            throw TaskFailure.valueError("")
        }
        registry.task("retry_once_headers") { invocation, _ in
            let call = try PythonCall(
                invocation,
                [],
                variadic: true,
                keywordOnly: [("max_retries", 1), ("countdown", 0.1)]
            )
            if invocation.retries > 0 { return invocation.request.headers.map(JSONValue.object) ?? .null }
            throw TaskRetry(
                countdown: call["countdown"].doubleValue,
                maxRetries: call["max_retries"].intValue.map { Int(clamping: $0) }
            )
        }
        registry.task("reject_then_succeed") { invocation, _ in
            _ = try PythonCall(invocation, [])
            if invocation.request.deliveryInfo["redelivered"]?.boolValue != true { throw TaskReject(requeue: true) }
            return "second-pass"
        }
        registry.task("reject_without_requeue") { invocation, _ in
            _ = try PythonCall(invocation, [])
            throw TaskReject("rejected", requeue: false)
        }

        registry.task("return_priority") { invocation, _ in
            _ = try PythonCall(invocation, [], variadic: true)
            let priority = invocation.request.deliveryInfo["priority"] ?? .null
            return .string("Priority: " + PythonRepr.repr(priority))
        }
        registry.task("return_properties") { invocation, _ in
            _ = try PythonCall(invocation, [])
            return .object(invocation.request.properties)
        }
        registry.task("retry_once_priority") { invocation, _ in
            let call = try PythonCall(
                invocation,
                [],
                variadic: true,
                keywordOnly: [("expires", 60.0), ("max_retries", 1), ("countdown", 0.1)]
            )
            if invocation.retries > 0 { return invocation.request.deliveryInfo["priority"] ?? .null }
            throw TaskRetry(
                countdown: call["countdown"].doubleValue,
                maxRetries: call["max_retries"].intValue.map { Int(clamping: $0) }
            )
        }

        registerReplacing(into: &registry)
        registerRetrying(into: &registry)
        registerEffects(into: &registry)
    }
}
