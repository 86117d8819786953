import SwiftqCore
import SwiftqPlatform

/// Async Swift tasks: each call runs in a Swift `Task` while the pool child waits for it, and the task's soft time
/// limit is that `Task`'s cancellation, so `Task.sleep`, `URLSession` and friends stop with `CancellationError`
/// and the handler may clean up (and return a result, or rethrow).
///
/// ```swift
/// registry.register("feeds.fetch") { (url: String) async throws in
///     do { return try await fetch(url) } catch is CancellationError { return "partial" }
/// }
/// ```
/// A handler that lets `CancellationError` out after the soft limit fails with Celery's `SoftTimeLimitExceeded`.
/// The hard limit kills the pool child as for any task.
extension TaskRegistry {
    /// Registers an async raw handler under `name`.
    public mutating func register(
        _ name: String,
        handler: @escaping @Sendable (TaskInvocation, TaskEnvironment) async throws -> JSONValue
    ) {
        register(name) { invocation, environment in
            try Self.runAsync(environment) { try await handler(invocation, environment) }
        }
    }

    /// Registers an async task whose positional arguments decode, in order, into the closure's parameters.
    public mutating func register<each Argument: Decodable & SendableMetatype, Output: Encodable & SendableMetatype>(
        _ name: String,
        _ body: @escaping @Sendable (repeat each Argument) async throws -> Output
    ) {
        register(name) { invocation, environment in
            try Self.runAsync(environment) {
                let decoded = try Self.decodePositional(name, invocation, as: (repeat each Argument).self)
                return try JSONValueCoding.encode(try await body(repeat each decoded), for: name)
            }
        }
    }

    /// Runs `body` in a `Task` and waits for it on this thread; cancels it when the soft deadline passes.
    static func runAsync(
        _ environment: TaskEnvironment,
        _ body: @escaping @Sendable () async throws -> JSONValue
    ) throws -> JSONValue {
        let done = Semaphore()
        let box = OutcomeBox()
        let task = Task {
            do {
                box.result = .success(try await body())
            } catch {
                box.result = .failure(error)
            }
            done.post()
        }
        var cancelled = false
        if let deadline = environment.softDeadline {
            if !done.wait(timeout: ContinuousClock.now.duration(to: deadline)) {
                task.cancel()
                cancelled = true
                done.wait(timeout: .seconds(Int64.max / 2))
            }
        } else {
            done.wait(timeout: .seconds(Int64.max / 2))
        }
        switch box.result {
        case .success(let value)?:
            return value
        case .failure(let error)?:
            if cancelled && error is CancellationError { throw TaskFailure.softTimeLimitExceeded }
            throw error
        case nil:
            throw TaskFailure(type: "RuntimeError", message: "the async task ended without a result", module: "swiftq")
        }
    }

    /// The positional arguments of `invocation` decoded as `Arguments`, checked as the sync typed handlers do.
    static func decodePositional<each Argument: Decodable>(
        _ name: String,
        _ invocation: TaskInvocation,
        as _: (repeat each Argument).Type
    ) throws -> (repeat each Argument) {
        if let keyword = invocation.kwargs.keys.first {
            throw TaskFailure.typeError("\(name)() got an unexpected keyword argument '\(keyword)'")
        }
        var expected = 0
        for _ in repeat (each Argument).self { expected += 1 }
        guard invocation.args.count == expected else {
            throw TaskFailure.typeError(
                "\(name)() takes \(expected) positional argument\(expected == 1 ? "" : "s") but "
                    + "\(invocation.args.count) \(invocation.args.count == 1 ? "was" : "were") given"
            )
        }
        var position = 0
        func next<Value: Decodable>(_ type: Value.Type) throws -> Value {
            defer { position += 1 }
            return try JSONValueCoding.decode(type, from: invocation.args[position]) {
                "\(name)() argument \(position + 1)"
            }
        }
        return (repeat try next((each Argument).self))
    }
}

/// The outcome of an async run, written by its `Task` before it posts the semaphore and read after the wait.
private final class OutcomeBox: @unchecked Sendable {
    var result: Result<JSONValue, any Error>?
}
