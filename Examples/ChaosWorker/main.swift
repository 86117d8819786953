// The worker the chaos suite runs (Tests/SwiftqSystemTests/Chaos, docs/chaos.md): swiftqd's daemon with one more
// task, `chaos.record(ledger, seconds)`, that appends a line for each execution to an O_APPEND ledger file before
// it does anything else, so that the test can count how many times each task id ran and in which pool child.
// Not shipped.
import Glibc
import SwiftqWorker

var registry = TaskRegistry.builtIn
registry.register("chaos.record") { invocation, environment in
    guard let ledger = invocation.args.first?.stringValue else {
        throw TaskFailure.typeError("chaos.record() needs the ledger's path as its first argument")
    }
    let seconds = invocation.args.count > 1 ? invocation.args[1].doubleValue ?? 0 : 0
    try ChaosLedger.append(path: ledger, taskID: invocation.id, retries: invocation.retries)
    if seconds > 0 { _ = environment.sleep(.nanoseconds(Int64(seconds * 1e9))) }
    return .string(invocation.id)
}
SwiftqDaemon.main(registry: registry)

/// One line per execution, `<id> <pid> <unix ms> <retries>`, written with a single write(2) on an O_APPEND
/// descriptor: concurrent pool children never interleave, and a child killed after the write leaves a whole line.
enum ChaosLedger {
    static func append(path: String, taskID: String, retries: Int) throws(TaskFailure) {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let milliseconds = Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
        let line = Array("\(taskID) \(getpid()) \(milliseconds) \(retries)\n".utf8)
        let descriptor = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            throw TaskFailure(type: "OSError", message: "cannot open the ledger \(path): errno \(errno)")
        }
        defer { close(descriptor) }
        let written = line.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        guard written == line.count else {
            throw TaskFailure(type: "OSError", message: "short write to the ledger \(path): errno \(errno)")
        }
    }
}
