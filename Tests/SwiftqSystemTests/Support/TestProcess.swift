import Foundation
import SwiftqPlatform

/// A helper program for a test (redis-server, a Python worker), started with `posix_spawn` so that it gets
/// a clean signal mask: a child of Foundation's `Process` started from a Swift Testing thread inherits a
/// mask that blocks SIGTERM, and then never stops when asked.
final class TestProcess {
    let pid: Int32
    private(set) var exitStatus: ExitStatus?

    /// Starts `path` with `arguments` (argv[0] excluded); stdin, stdout and stderr go to /dev/null, or
    /// stdout and stderr to `logFile`.
    init(_ path: String, _ arguments: [String], environment: [String: String]? = nil, logFile: String? = nil) throws {
        let null = open("/dev/null", O_RDWR | O_CLOEXEC)
        defer { close(null) }
        var output = null
        if let logFile {
            output = open(logFile, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        }
        defer { if output != null { close(output) } }
        let env = (environment ?? ProcessInfo.processInfo.environment).map { "\($0.key)=\($0.value)" }
        pid = try ChildProcess.spawn(
            path: path,
            arguments: [path] + arguments,
            environment: env,
            descriptors: [null, output, output],
            firstDescriptor: 0
        )
    }

    deinit {
        stop(signal: SIGKILL, timeout: 5)
    }

    var isRunning: Bool {
        if exitStatus != nil { return false }
        if let status = ChildProcess.wait(pid: pid, timeout: .zero) {
            exitStatus = status
            return false
        }
        return true
    }

    /// Sends `signal` and waits up to `timeout` seconds; SIGKILL after that.
    func stop(signal: Int32 = SIGTERM, timeout: Double = 10) {
        guard isRunning else { return }
        ChildProcess.signal(pid, signal)
        if let status = ChildProcess.wait(pid: pid, timeout: .milliseconds(Int64(timeout * 1000))) {
            exitStatus = status
            return
        }
        ChildProcess.signal(pid, SIGKILL)
        exitStatus = ChildProcess.wait(pid: pid, timeout: .seconds(5))
    }
}
