// Micro-benchmark of the per-task codecs (not a test): `bench/codec/run`, or
// `swift run -c release swiftq-bench-codec [rounds [operation]]`. End-to-end runs on a small shared machine move by ±10 % from
// one run to the next, more than a change to one codec is worth; this times each codec alone, on one thread, the
// best of several rounds, so two builds can be compared (check out, run, compare).
//
// Each operation is what swiftqd does once per task, on a Celery 5 envelope as `send_task` writes it to Redis:
// - envelope: the fetch thread's `RedisEnvelope.decode` and `TaskMessage.decode`;
// - request: the consumer's `execute` frame for a pool child (the body spliced in, no request context);
// - asked: what a task that reads its request context adds: the consumer builds and writes it, the child parses it;
// - child: the child's parse of that frame;
// - result: the child's result frame, written and parsed back by the consumer;
// - amqp: on RabbitMQ, the delivery's headers (the same, as the field table py-amqp writes) read into JSON.
import OrderedCollections
import SwiftqAMQP
import SwiftqCore
import SwiftqPool
import SwiftqTasks

#if canImport(Glibc)
import Glibc
#endif

let envelopeText = #"""
    {"body": "W1syLCAzXSwge30sIHsiY2FsbGJhY2tzIjogbnVsbCwgImVycmJhY2tzIjogbnVsbCwgImNoYWluIjogbnVsbCwgImNob3JkIjogbnVsbH1d", "content-encoding": "utf-8", "content-type": "application/json", "headers": {"lang": "py", "task": "swiftq.add", "id": "07f4e037-7a12-44b5-9aa5-f49e1b65186b", "shadow": null, "eta": null, "expires": null, "group": null, "group_index": null, "retries": 0, "timelimit": [null, null], "root_id": "07f4e037-7a12-44b5-9aa5-f49e1b65186b", "parent_id": null, "argsrepr": "[2, 3]", "kwargsrepr": "{}", "origin": "gen26636@vm", "ignore_result": null, "replaced_task_nesting": 0, "stamped_headers": null, "stamps": {}}, "properties": {"correlation_id": "07f4e037-7a12-44b5-9aa5-f49e1b65186b", "reply_to": "7b2e8351-5b75-3c28-8a16-7170058c9458", "delivery_mode": 2, "delivery_info": {"exchange": "", "routing_key": "capture"}, "priority": 0, "body_encoding": "base64", "delivery_tag": "067fd54a-1506-4f5d-94b1-025fc382ae34"}}
    """#
let envelopeBytes = Array(envelopeText.utf8)

/// CPU time of this thread, in nanoseconds.
func threadNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}

/// Runs `body` `count` times per round and prints the best round's nanoseconds per call.
func measure(_ name: String, rounds: Int, count: Int = 20_000, _ body: () throws -> Int) rethrows {
    if let only, only != name { return }
    var best = UInt64.max
    var sink = 0
    for _ in 0..<rounds {
        let start = threadNanoseconds()
        for _ in 0..<count { sink &+= try body() }
        best = min(best, threadNanoseconds() - start)
    }
    let nanoseconds = (Double(best) / Double(count) * 10).rounded() / 10
    print(name + String(repeating: " ", count: max(1, 10 - name.count)) + "\(nanoseconds) ns per task")
    if sink == 42 { print("") }  // Keeps the results alive.
}

func decodeMessage() throws -> TaskMessage {
    try TaskMessage.decode(RedisEnvelope.decode(envelopeBytes))
}

/// What the consumer's job holds to build the request context from, if the task reads it (as `DeliveryMachine`
/// dispatches it).
func requestContext(_ message: TaskMessage) -> TaskRequest.Context {
    TaskRequest.Context(message: message, queue: "celery", hostname: "celery@bench", softTimeLimit: nil, timeLimit: nil)
}

/// The frame the consumer writes for the message: the body spliced in, the request context left out.
func executeFrame(_ message: TaskMessage) -> [UInt8] {
    var job = PoolJob(id: message.id, name: message.name, args: message.args, kwargs: message.kwargs)
    job.requestSource = .context(requestContext(message))
    job.body = message.body
    return PoolRequest.execute(job).serialized
}

let rounds = CommandLine.arguments.dropFirst().first.flatMap(Int.init) ?? 7
/// One operation alone (its name), e.g. to profile it.
let only = CommandLine.arguments.dropFirst(2).first
let message = try decodeMessage()
let frame = executeFrame(message)
let result = PoolReply.result(id: message.id, outcome: .success(.int(5)), runtime: 0.000_031_5).serialized

try measure("envelope", rounds: rounds) { try decodeMessage().name.utf8.count }
measure("request", rounds: rounds) { executeFrame(message).count }
try measure("asked", rounds: rounds) {
    let answer = PoolRequest.requestContext(id: message.id, request: requestContext(message).request).serialized
    let parsed = try JSONValue.parsing(answer, deferring: ["request"])
    let decoded = try PoolRequest(decoding: parsed.value, requestText: parsed.raw["request"])
    guard case .requestContext(_, let request?) = decoded else { return 0 }
    return request.properties.count
}
try measure("child", rounds: rounds) {
    let parsed = try JSONValue.parsing(frame, deferring: ["request"])
    guard case .execute(let job) = try PoolRequest(decoding: parsed.value, requestText: parsed.raw["request"]) else {
        return 0
    }
    return job.args.count
}
let headersTable = try AMQPFieldTable.encode(RedisEnvelope.decode(envelopeBytes).headers)

try measure("amqp", rounds: rounds) { try AMQPFieldTable.decode(headersTable).count }
try measure("result", rounds: rounds) {
    let bytes = PoolReply.result(id: message.id, outcome: .success(.int(5)), runtime: 0.000_031_5).serialized
    guard case .result(let id, _, _, _) = try PoolReply(decoding: JSONValue(parsing: bytes)) else { return 0 }
    return id.utf8.count + result.count
}
