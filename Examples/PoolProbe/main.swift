import SwiftqCore
import SwiftqPlatform
import SwiftqPool
import SwiftqTasks

#if canImport(Glibc)
import Glibc
#endif

// A prefork pool of real `swiftqd _pool-child` children in a process of its own, driven over fd 3 with the pool
// channel's frames, for the child-prefetch system tests (Tests/SwiftqSystemTests/ChildPrefetchTests.swift). A pool
// reaps with `waitpid` on SIGCHLD, which must not happen inside the test process (it would take other tests'
// children and interrupt their waits). Not shipped.
//
//   swiftq-pool-probe <swiftqd> <size> <child_prefetch> <max runtime ms>
//
// Requests: {"op": "submit", "id", "task", "args", "may_queue", "expected_runtime", "root_id"} (answered {"submitted": id,
// "ok": bool}), {"op": "withdraw"|"terminate", "id", "signal"}, {"op": "state"} (answered {"idle", "queueable",
// "queueable_work", "slots": [{"slot", "pid", "queued"}]}). Every pool event is sent as {"event": "started"|"finished"|"lost"|"returned"|..., "id", …}.

let arguments = CommandLine.arguments
guard arguments.count == 5, let size = Int(arguments[2]), let prefetch = Int(arguments[3]),
    let maxRuntime = Int64(arguments[4])
else {
    print("usage: swiftq-pool-probe <swiftqd> <size> <child_prefetch> <max runtime ms>")
    exit(64)
}
UnixSignal.ignore(SIGPIPE)
let loop = EventLoop()
let pool = PreforkPool(size: size, loop: loop, policy: RestartPolicy(), logLevel: .warning, executable: arguments[1])
pool.setChildPrefetch(prefetch, maxRuntime: .milliseconds(maxRuntime))
let channel = FramedChannel(descriptor: 3, loop: loop)

pool.onEvent = { event in
    let message: JSONValue
    switch event {
    case .slotReady(let slot, let pid):
        message = ["event": "ready", "slot": .int(Int64(slot)), "pid": .int(Int64(pid))]
    case .started(let id, let slot, _):
        message = ["event": "started", "id": .string(id), "slot": .int(Int64(slot))]
    case .finished(let id, let outcome, _, _):
        var result: JSONValue = .null
        if case .success(let value) = outcome { result = value }
        message = ["event": "finished", "id": .string(id), "result": result]
    case .lost(let id, _, _, let reason):
        message = ["event": "lost", "id": .string(id), "reason": .string(reason.name)]
    case .returned(let id):
        message = ["event": "returned", "id": .string(id)]
    case .slotExited(let slot, _, let reason):
        message = ["event": "exited", "slot": .int(Int64(slot)), "reason": .string(reason.name)]
    }
    channel.send(message)
}

channel.onFrame = { frame in
    let request = frame.message
    let id = request["id"]?.stringValue ?? ""
    switch request["op"]?.stringValue {
    case "submit":
        var job = PoolJob(
            id: id,
            name: request["task"]?.stringValue ?? "swiftq.ping",
            args: request["args"]?.arrayValue ?? [],
            kwargs: [:]
        )
        job.mayQueue = request["may_queue"]?.boolValue ?? true
        job.expectedRuntime = request["expected_runtime"]?.doubleValue ?? 0
        if let root = request["root_id"]?.stringValue {
            // What the consumer gives a job: the request context is built from it if the task reads it.
            var message = TaskMessage(id: id, name: job.name, args: job.args)
            message.rootID = root
            job.requestSource = .context(
                TaskRequest.Context(
                    message: message,
                    queue: "celery",
                    hostname: "celery@probe",
                    softTimeLimit: nil,
                    timeLimit: nil
                )
            )
        }
        let ok = pool.submit(job) != nil
        channel.send(["submitted": .string(id), "ok": .bool(ok)])
    case "withdraw":
        pool.withdraw(jobID: id)
    case "terminate":
        let signal = CInt(request["signal"]?.intValue ?? Int64(SIGKILL))
        pool.terminate(jobID: id, signal: signal, reason: .terminated(signal: signal))
    case "state":
        let slots: [JSONValue] = pool.snapshot.map { row in
            ["slot": .int(Int64(row.slot)), "pid": .int(Int64(row.pid)), "queued": .int(Int64(row.queued))]
        }
        channel.send([
            "idle": .int(Int64(pool.idleSlots)), "queueable": .int(Int64(pool.queueRoom.jobs)),
            "queueable_work": .double(pool.queueRoom.work), "slots": .array(slots),
        ])
    default:
        channel.send(["error": .string("unknown request \(request.serialized())")])
    }
}
channel.onClose = { _ in
    pool.stop(cold: true)
    _ = loop.run(until: { pool.isStopped }, timeout: .seconds(5))
    exit(0)
}
do {
    try pool.start()
} catch {
    print("cannot start the pool: \(error)")
    exit(1)
}
loop.run()
