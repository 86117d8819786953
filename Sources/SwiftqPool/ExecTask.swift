import SwiftqCore
import SwiftqPlatform
import SwiftqTasks

#if canImport(Glibc)
import Glibc
#endif

/// Exec tasks (`tasks.<name>.exec` in the configuration): a program per task call, in any language.
///
/// Contract with the program: it reads `{"id": …, "task": …, "args": […], "kwargs": {…}, "retries": n, "request":
/// {…}}` as JSON on stdin (the request context as ``TaskRequest/json``; also `SWIFTQ_TASK_ID` and `SWIFTQ_TASK_NAME`
/// in its environment), writes its JSON result on stdout
/// (nothing means `null`), and exits 0. Exit code 75 (`EX_TEMPFAIL`) asks for a retry, with an optional JSON object
/// on stdout (`countdown`, `eta`, `exc`). Any other non-zero exit, a signal, output that is not JSON, or the time
/// limit fail the task; the tail of stderr becomes the traceback Python shows.
package enum ExecTask {
    package static func run(
        _ invocation: TaskInvocation,
        argv: [String],
        timeout: Duration?,
        softTimeout: Duration? = nil,
        lifeline: CInt
    ) -> TaskResult {
        let input: JSONValue = [
            "id": .string(invocation.id), "task": .string(invocation.name), "args": .array(invocation.args),
            "kwargs": .object(invocation.kwargs), "retries": .int(Int64(invocation.retries)),
            "request": invocation.request.json,
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
                abortDescriptor: lifeline,
                softTimeout: softTimeout
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
        if outcome.softTimedOut, let status = outcome.status, status != .exited(code: 0),
            status != .exited(code: retryExitCode)
        {
            // It was told to stop (SIGTERM at the soft limit) and did: Celery's SoftTimeLimitExceeded.
            var failure = TaskFailure.softTimeLimitExceeded
            failure.traceback = traceback
            return .failure(failure)
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
        case .exited(code: retryExitCode)?:
            return retryRequest(outcome.standardOutput, program: argv[0], traceback: traceback)
        case let status?:
            let lastLine = stderrTail.split(separator: "\n").last.map { ": \($0)" } ?? ""
            return .failure(failure("\(argv[0]) \(status)\(lastLine)", traceback: traceback))
        case nil:
            return .failure(failure("\(argv[0]) ended without a status", traceback: traceback))
        }
    }

    /// `EX_TEMPFAIL`: the program asks to be retried, as Celery's `self.retry()`.
    package static let retryExitCode: Int32 = 75

    /// The retry request of a program that exited 75: its standard output, when not empty, is a JSON object with
    /// `countdown` (seconds), `eta` (ISO 8601), `exc` (the cause: a text, or `{"type", "message", "module"}`), and
    /// `args`/`kwargs` (the next run's arguments, Celery's `retry(args=…, kwargs=…)`).
    /// Output that says something else fails the task rather than guessing.
    static func retryRequest(_ output: [UInt8], program: String, traceback: String?) -> TaskResult {
        var retry = TaskRetry()
        if output.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) { return .retry(retry) }
        guard let request = try? JSONValue(parsing: output), let fields = request.objectValue else {
            return .failure(
                failure("\(program) exited 75 (retry) with output that is not a JSON object", traceback: traceback)
            )
        }
        if let countdown = fields["countdown"], !countdown.isNull {
            guard let seconds = countdown.doubleValue, countdown.boolValue == nil, seconds.isFinite, seconds >= 0 else {
                return .failure(failure("\(program) asked for a retry with a bad countdown", traceback: traceback))
            }
            retry.countdown = seconds
        }
        if let eta = fields["eta"], !eta.isNull {
            guard let text = eta.stringValue, let parsed = CeleryTimestamp(iso8601: text) else {
                return .failure(failure("\(program) asked for a retry with a bad eta", traceback: traceback))
            }
            retry.eta = parsed
        }
        if let args = fields["args"], !args.isNull {
            guard let list = args.arrayValue else {
                return .failure(
                    failure("\(program) asked for a retry with args that are not an array", traceback: traceback)
                )
            }
            retry.args = list
        }
        if let kwargs = fields["kwargs"], !kwargs.isNull {
            guard let object = kwargs.objectValue else {
                return .failure(
                    failure("\(program) asked for a retry with kwargs that are not an object", traceback: traceback)
                )
            }
            retry.kwargs = object
        }
        switch fields["exc"] {
        case nil, .null?:
            break
        case .string(let text)?:
            retry.cause = TaskFailure(type: "ExecTaskFailed", message: text, module: "swiftq", traceback: traceback)
        case .object(let exception)?:
            retry.cause = TaskFailure(
                type: exception["type"]?.stringValue ?? "ExecTaskFailed",
                message: exception["message"]?.stringValue ?? "",
                module: exception["module"]?.stringValue ?? "swiftq",
                traceback: traceback
            )
        default:
            return .failure(failure("\(program) asked for a retry with a bad exc", traceback: traceback))
        }
        return .retry(retry)
    }

    package static func failure(_ message: String, traceback: String?) -> TaskFailure {
        TaskFailure(type: "ExecTaskFailed", message: message, module: "swiftq", traceback: traceback)
    }
}
