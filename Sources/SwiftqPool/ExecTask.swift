import SwiftqCore
import SwiftqPlatform
import SwiftqTasks

#if canImport(Glibc)
import Glibc
#endif

/// Exec tasks (`tasks.<name>.exec` in the configuration): a program per task call, in any language.
///
/// Contract with the program: it reads `{"id": …, "task": …, "args": […], "kwargs": {…}}` as JSON on stdin
/// (also `SWIFTQ_TASK_ID` and `SWIFTQ_TASK_NAME` in its environment), writes its JSON result on stdout
/// (nothing means `null`), and exits 0. A non-zero exit, a signal, output that is not JSON, or the time limit
/// fail the task; the tail of stderr becomes the traceback Python shows.
package enum ExecTask {
    package static func run(
        _ invocation: TaskInvocation,
        argv: [String],
        timeout: Duration?,
        lifeline: CInt
    ) -> Result<JSONValue, TaskFailure> {
        let input: JSONValue = [
            "id": .string(invocation.id), "task": .string(invocation.name), "args": .array(invocation.args),
            "kwargs": .object(invocation.kwargs),
        ]
        // The allow-list only: a program never sees swiftqd's secrets (broker URLs with passwords).
        let environment = ChildEnvironment.filtered(
            ChildProcess.currentEnvironment,
            extra: ["SWIFTQ_TASK_ID=\(invocation.id)", "SWIFTQ_TASK_NAME=\(invocation.name)"]
        )
        let outcome: ProgramOutcome
        do {
            // Through `swiftqd _exec`, which arms the parent-death signal before it execs the program: the
            // program runs in a process group of its own (so a timeout kills all it started), which a kill
            // of the pool child would otherwise not reach.
            outcome = try ProgramRunner.run(
                arguments: [ChildProcess.currentExecutable, InternalRole.exec] + argv,
                environment: environment,
                input: input.serialized(),
                timeout: timeout,
                abortDescriptor: lifeline
            )
        } catch {
            return .failure(failure("cannot start \(argv[0]): \(error.reason)", traceback: nil))
        }
        let stderrTail = String(decoding: outcome.standardErrorTail, as: UTF8.self)
        let traceback = stderrTail.isEmpty ? nil : stderrTail
        if outcome.timedOut, let timeout {
            return .failure(
                TaskFailure(
                    type: "TimeLimitExceeded",
                    message: "\(timeout.seconds)",
                    module: "billiard.exceptions",
                    traceback: traceback
                )
            )
        }
        if outcome.aborted { return .failure(failure("aborted: the worker is shutting down", traceback: traceback)) }
        if outcome.outputTooLarge {
            return .failure(failure("\(argv[0]) wrote more output than allowed", traceback: traceback))
        }
        switch outcome.status {
        case .exited(code: 0)?:
            let output = outcome.standardOutput
            if output.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) { return .success(.null) }
            do {
                return .success(try JSONValue(parsing: output))
            } catch {
                return .failure(failure("\(argv[0]) wrote output that is not JSON (\(error))", traceback: traceback))
            }
        case let status?:
            let lastLine = stderrTail.split(separator: "\n").last.map { ": \($0)" } ?? ""
            return .failure(failure("\(argv[0]) \(status)\(lastLine)", traceback: traceback))
        case nil:
            return .failure(failure("\(argv[0]) ended without a status", traceback: traceback))
        }
    }

    package static func failure(_ message: String, traceback: String?) -> TaskFailure {
        TaskFailure(type: "ExecTaskFailed", message: message, module: "swiftq", traceback: traceback)
    }
}
