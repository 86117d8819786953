// An example of a worker binary with its own Swift tasks: build it, run it exactly like swiftqd (same
// options, same configuration file), and send it tasks from Python or `swiftqctl call`.
//
//   swift build --product swiftq-example-worker
//   .build/debug/swiftq-example-worker --config etc/swiftq/config.yaml
//
//   >>> app.send_task("example.multiply", (6, 7)).get()                  # 42
//   >>> app.send_task("example.scaled_area", (6, 7)).get()               # 420, by a chain it was replaced with
//   >>> result_from_tuple(app.send_task("example.pipeline", (6, 7)).get(), app).get()   # [84, 126]
//   >>> app.send_task("example.invoice", kwargs={"items": [{"name": "tea", "price": 3.5, "quantity": 2}],
//   ...                                            "currency": "EUR"}).get()
import SwiftqWorker

/// Keyword arguments of `example.invoice`, decoded from the task's kwargs.
struct Order: Decodable, Sendable {
    struct Item: Decodable, Sendable {
        var name: String
        var price: Double
        var quantity: Int
    }

    var items: [Item]
    var currency: String
}

/// The result of `example.invoice`, encoded into the stored result.
struct Invoice: Encodable {
    var lines: [String]
    var total: Double
    var currency: String
}

/// A failure that Python re-raises as `swiftq.EmptyOrder` (a class Celery makes up for the unknown module).
struct EmptyOrder: Error, CustomStringConvertible {
    var description: String { "an invoice needs at least one item" }
}

var registry = TaskRegistry.builtIn
registry.register("example.multiply") { (a: Int, b: Int) in a * b }
registry.register("example.greet") { (name: String) in "Hello, \(name)!" }
registry.register("example.invoice", keywords: Order.self) { order in
    guard !order.items.isEmpty else { throw EmptyOrder() }
    let lines = order.items.map { "\($0.quantity) × \($0.name) @ \($0.price)" }
    let total = order.items.reduce(0) { $0 + $1.price * Double($1.quantity) }
    return Invoice(lines: lines, total: total, currency: order.currency)
}
// A memory-hungry task (think image processing): touches `mib` MiB and returns their checksum. Under a cgroup memory
// limit the kernel's OOM killer ends the pool child running it, which swiftqd reports as an `oom` exit.
registry.register("example.allocate") { (mib: Int) in
    guard mib >= 0 else { throw EmptyOrder() }
    let bytes = [UInt8](repeating: 1, count: mib << 20)
    return bytes.reduce(0) { $0 &+ Int($1) }
}
// Celery's `self.retry(countdown=1)`: asks to run again a second later, twice, then succeeds. The retry is a new
// message with the same id and `retries + 1`; the client's `.get()` sees RETRY meanwhile, then the result.
registry.register("example.flaky") { invocation, _ in
    guard invocation.retries >= 2 else {
        throw TaskRetry(countdown: 1, cause: TaskFailure(type: "ConnectionError", message: "not yet"))
    }
    return .string("succeeded after \(invocation.retries) retries")
}
// An async task: its soft time limit cancels it, so it can clean up and still return something.
registry.register("example.patient") { (seconds: Double) async throws -> String in
    do {
        try await Task.sleep(for: .milliseconds(Int64(seconds * 1000)))
        return "slept \(seconds)s"
    } catch is CancellationError {
        return "cleaned up after the soft time limit"
    }
}
// Celery's Reject and Ignore: refuse the message (FAILURE Reject, the message rejected), or end with nothing stored.
registry.register("example.refuse") { (reason: String) throws -> String in throw TaskReject(reason) }
registry.register("example.skip") { () throws -> String in throw TaskIgnore() }
// Celery's `self.replace(sig)`: the task hands its place to a canvas, which finishes under the task's own id (the
// client's `.get()` returns the canvas's result; the task's callbacks run after it). A chain: (width × height) × 10.
registry.register("example.scaled_area") { (width: Int, height: Int) throws -> Int in
    throw TaskReplace(
        .chain([
            TaskSignature("example.multiply", args: [.int(Int64(width)), .int(Int64(height))]),
            TaskSignature("example.multiply", args: [10]),
        ])
    )
}
// A group: the list of the squares, in order (Celery makes it a chord with `celery.accumulate` as body).
registry.register("example.squares") { (numbers: [Int]) throws -> [Int] in
    throw TaskReplace(
        .group(numbers.map { TaskSignature("example.multiply", args: [.int(Int64($0)), .int(Int64($0))]) })
    )
}
// Celery's `self.add_to_chord(sig)`: a chord header task that finds more work adds it to its own chord, whose body
// then waits for those results too. Here the squares of 1…count, and 0 for the task itself.
registry.register("example.fan_out") { invocation, _ in
    guard let count = invocation.args.first?.intValue, count >= 0 else {
        throw TaskFailure.typeError("example.fan_out() needs a count")
    }
    for number in 0..<count {
        try invocation.addToChord(TaskSignature("example.multiply", args: [.int(number + 1), .int(number + 1)]))
    }
    return 0
}
// Sending a canvas from inside a task (Celery's `chain(...).apply_async()` in a task body): the ids are chosen in the
// task, which returns the chain's result as Celery stores a returned `AsyncResult` (its `as_tuple()`), so the client
// can wait on the chain (`result_from_tuple(value).get()`): width × height, then that × 2 and × 3 as a group (a chord
// whose body, swiftq.echo, returns the group's results).
registry.register("example.pipeline") { invocation, _ in
    let sent = invocation.apply(
        .chain([
            TaskSignature("example.multiply", args: invocation.args),
            .group([TaskSignature("example.multiply", args: [2]), TaskSignature("example.multiply", args: [3])]),
            TaskSignature("swiftq.echo"),
        ])
    )
    return sent.tuple
}
// Celery's `self.backend.store_result(id, value, "SUCCESS")`: a result stored under another id (one a client waits
// on), before this task's own.
registry.register("example.publish_result") { invocation, _ in
    guard invocation.args.count == 2, let id = invocation.args[0].stringValue else {
        throw TaskFailure.typeError("example.publish_result() takes an id and a value")
    }
    invocation.storeResult(id: id, state: "SUCCESS", result: invocation.args[1])
    return .string(id)
}
// Celery's `self.request`, as the task sees it: ids, node name, delivery info, the client's own headers. A prefork
// child asks the consumer for it when a task first reads it (most never do); the second read is the child's copy.
registry.register("example.request") { invocation, _ in
    let request = invocation.request
    guard invocation.request == request else { throw TaskFailure(type: "AssertionError", message: "it changed") }
    return request.json
}
// The same from an async task, after an await: its child asks from the thread the task resumed on.
registry.register("example.request_later") { invocation, _ async throws in
    try await Task.sleep(for: .milliseconds(1))
    return invocation.request.json
}
// Keeps `mib` MiB for as long as its pool child lives: with `worker.max_memory_per_child`, the child is replaced
// after such a task (never during it).
enum Hoard {
    nonisolated(unsafe) static var chunks: [[UInt8]] = []
}
registry.register("example.hoard") { (mib: Int) in
    Hoard.chunks.append([UInt8](repeating: 1, count: mib << 20))
    return mib
}
SwiftqDaemon.main(registry: registry)
