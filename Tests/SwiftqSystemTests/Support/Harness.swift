import Foundation
import SwiftqControl
import SwiftqCore
import SwiftqPlatform
import Testing

/// Where the built binaries are: next to the test bundle in SwiftPM's build folder.
enum Binaries {
    static var directory: String {
        let executable = ChildProcess.currentExecutable
        var url = URL(fileURLWithPath: executable).deletingLastPathComponent()
        // On Linux the test binary is `<build>/swiftqPackageTests.xctest`, a file in the build folder.
        if url.lastPathComponent.hasSuffix(".xctest") { url = url.deletingLastPathComponent() }
        return url.path
    }

    static var swiftqd: String { directory + "/swiftqd" }
    static var swiftqctl: String { directory + "/swiftqctl" }
    static var exampleWorker: String { directory + "/swiftq-example-worker" }
}

/// A temporary directory, removed when the value is released.
final class TemporaryDirectory {
    let path: String

    init() throws {
        ignoreBrokenPipes()
        var template = Array("/tmp/swiftq-test-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw SystemError("mkdtemp", errno: errno) }
        path = String(cString: made)
        // Traversable by other uids (the peer-credential test connects as nobody).
        chmod(path, 0o755)
    }

    deinit {
        try? FileManager.default.removeItem(atPath: path)
    }

    func write(_ name: String, _ text: String) throws -> String {
        let file = path + "/" + name
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        return file
    }
}

/// Writing to a socket or pipe whose reader is gone (a child that just exited, a connection the daemon
/// closed) must fail with EPIPE, not kill the test runner; every helper calls this first.
func ignoreBrokenPipes() {
    UnixSignal.ignore(SIGPIPE)
}

/// The result of running a command to completion.
struct CommandResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Runs a program to completion (with a time limit) and captures its output.
///
/// Started with `posix_spawn` (``ChildProcess/spawn(path:arguments:environment:descriptors:firstDescriptor:)``), not
/// Foundation's `Process`: its `run()` was seen to crash (a bad memmove inside it) when many test threads started
/// programs at once, and to miss a child's exit; a spawned child also gets a clean signal mask.
func runCommand(
    _ path: String,
    _ arguments: [String],
    environment: [String: String]? = nil,
    input: Data? = nil,
    timeout: Double = 30
) throws -> CommandResult {
    ignoreBrokenPipes()
    let stdin = try Descriptors.pipe()
    let stdout = try Descriptors.pipe()
    let stderr = try Descriptors.pipe()
    let env = (environment ?? ProcessInfo.processInfo.environment).map { "\($0.key)=\($0.value)" }
    let pid: pid_t
    do {
        pid = try ChildProcess.spawn(
            path: path,
            arguments: [path] + arguments,
            environment: env,
            descriptors: [stdin.read, stdout.write, stderr.write],
            firstDescriptor: 0
        )
    } catch {
        for fd in [stdin.read, stdin.write, stdout.read, stdout.write, stderr.read, stderr.write] { close(fd) }
        throw error
    }
    close(stdin.read)
    close(stdout.write)
    close(stderr.write)
    let inputBytes = [UInt8](input ?? Data())
    let writer = Thread {
        inputBytes.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = write(stdin.write, buffer.baseAddress! + offset, buffer.count - offset)
                if written <= 0 { break }
                offset += written
            }
        }
        close(stdin.write)
    }
    writer.start()
    // Read both pipes concurrently so a chatty child never blocks on a full pipe.
    let outData = LockedData()
    let errData = LockedData()
    let group = DispatchGroup()
    for (descriptor, sink) in [(stdout.read, outData), (stderr.read, errData)] {
        group.enter()
        DispatchQueue.global().async {
            var collected = Data()
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let count = read(descriptor, &buffer, buffer.count)
                if count > 0 {
                    collected.append(contentsOf: buffer[0..<count])
                } else if count == 0 || errno != EINTR {
                    break
                }
            }
            close(descriptor)
            sink.set(collected)
            group.leave()
        }
    }
    var status = ChildProcess.wait(pid: pid, timeout: .milliseconds(Int64(timeout * 1000)))
    if status == nil {
        kill(pid, SIGKILL)
        Issue.record("\(path) \(arguments.prefix(3)) did not finish within \(timeout)s")
        status = ChildProcess.wait(pid: pid, timeout: .seconds(10))
    }
    group.wait()
    return CommandResult(
        status: status.map { exitCode($0) } ?? -1,
        stdout: String(decoding: outData.get(), as: UTF8.self),
        stderr: String(decoding: errData.get(), as: UTF8.self)
    )
}

/// A shell-style exit code: the exit status, or 128 + the signal that ended the program.
func exitCode(_ status: SwiftqPlatform.ExitStatus) -> Int32 {
    switch status {
    case .exited(let code): code
    case .signaled(let signal, _): 128 + signal
    }
}

/// Waits for a Foundation `Process` to end, reaping it with `waitpid` if Foundation has not; kills it after
/// `timeout` seconds (calling `onTimeout`). Returns its exit code, or 128 + the signal that ended it.
func reap(_ process: Process, timeout: Double, onTimeout: () -> Void = {}) -> Int32 {
    let pid = process.processIdentifier
    let deadline = Date().addingTimeInterval(timeout)
    var killed = false
    while true {
        var raw: Int32 = 0
        let result = waitpid(pid, &raw, WNOHANG)
        if result == pid {
            let signal = raw & 0x7f
            return signal == 0 ? (raw >> 8) & 0xff : 128 + signal
        }
        // ECHILD: Foundation reaped it and has (or will shortly have) its status.
        if result == -1 && errno == ECHILD {
            while process.isRunning { usleep(1_000) }
            return process.terminationStatus
        }
        if !killed && Date() >= deadline {
            killed = true
            kill(pid, SIGKILL)
            onTimeout()
        }
        usleep(5_000)
    }
}

final class LockedData: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()
    func set(_ value: Data) { lock.withLock { data = value } }
    func get() -> Data { lock.withLock { data } }
}

/// Polls `condition` every 20 ms until it holds or `timeout` seconds pass.
@discardableResult
func eventually(timeout: Double = 10, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try condition() { return true }
        usleep(20_000)
    }
    return try condition()
}

/// Whether a process has ended (gone from /proc, or a zombie nobody reaped yet).
func processHasEnded(_ pid: Int32) -> Bool {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return true }
    // The state is the first field after the parenthesised command name.
    guard let close = stat.lastIndex(of: ")") else { return true }
    let rest = stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces)
    return rest.hasPrefix("Z") || rest.hasPrefix("X")
}

/// A datagram socket standing in for systemd's `NOTIFY_SOCKET`, recording what the daemon sends.
final class NotifyListener {
    let path: String
    private let descriptor: Int32
    private(set) var messages: [String] = []

    init(directory: String) throws {
        path = directory + "/notify.sock"
        descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        if result != 0 { throw SystemError("bind \(path)", errno: errno) }
    }

    deinit {
        close(descriptor)
    }

    /// Reads every datagram that has arrived, without waiting.
    func drain() {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = recv(descriptor, &buffer, buffer.count, Int32(MSG_DONTWAIT))
            guard count > 0 else { return }
            messages.append(String(decoding: buffer[0..<count], as: UTF8.self))
        }
    }

    /// Waits until a message satisfying `predicate` has arrived; returns its index.
    func waitFor(timeout: Double = 10, _ predicate: (String) -> Bool) -> Int? {
        var found: Int?
        eventually(timeout: timeout) {
            drain()
            found = messages.firstIndex(where: predicate)
            return found != nil
        }
        return found
    }
}

/// A running `swiftqd` started from the built binary with a temporary configuration.
final class Daemon {
    let directory: TemporaryDirectory
    let configPath: String
    let socketPath: String
    let logPath: String
    let process = Process()
    var notify: NotifyListener?

    /// Writes a configuration (the `extra` YAML is appended under the given sections) and starts swiftqd.
    init(
        concurrency: Int = 2,
        extraYAML: String = "",
        controlYAML: String = "",
        workerYAML: String = "",
        environment: [String: String] = [:],
        withNotify: Bool = false,
        waitForReady: Bool = true,
        binary: String = Binaries.swiftqd
    ) throws {
        // Writing to a connection the daemon closed must fail with EPIPE, not kill the test runner.
        UnixSignal.ignore(SIGPIPE)
        directory = try TemporaryDirectory()
        socketPath = directory.path + "/swiftqd.sock"
        logPath = directory.path + "/swiftqd.log"
        configPath = try directory.write(
            "config.yaml",
            Self.configuration(
                socket: socketPath,
                concurrency: concurrency,
                controlYAML: controlYAML,
                workerYAML: workerYAML
            ) + extraYAML
        )
        var env = ProcessInfo.processInfo.environment
        env["NOTIFY_SOCKET"] = nil
        env["WATCHDOG_USEC"] = nil
        env["WATCHDOG_PID"] = nil
        env["JOURNAL_STREAM"] = nil
        if withNotify {
            let listener = try NotifyListener(directory: directory.path)
            notify = listener
            env["NOTIFY_SOCKET"] = listener.path
        }
        for (key, value) in environment { env[key] = value }
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["--config", configPath]
        process.environment = env
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = FileHandle(forWritingAtPath: logPath)!
        process.standardError = log
        process.standardOutput = log
        process.standardInput = FileHandle.nullDevice
        if env["JOURNAL_STREAM"] == Self.journalStreamOfLog {
            // systemd's JOURNAL_STREAM names the device and inode of the stream on stderr: the log file here.
            var info = stat()
            fstat(log.fileDescriptor, &info)
            env["JOURNAL_STREAM"] = "\(info.st_dev):\(info.st_ino)"
            process.environment = env
        }
        try process.run()
        if waitForReady {
            let up = eventually(timeout: 30) { (try? self.call("ping")) != nil }
            if !up { Issue.record("swiftqd did not answer within 30s; log:\n\(self.log)") }
        }
    }

    /// Pass as `JOURNAL_STREAM` in `environment` to have it name the daemon's stderr (the log file).
    static let journalStreamOfLog = "<log>"

    static func configuration(
        socket: String,
        concurrency: Int,
        controlYAML: String,
        workerYAML: String = "",
        logLevel: String = "debug"
    ) -> String {
        """
        worker:
          concurrency: \(concurrency)
          shutdown_timeout: 5s
        \(workerYAML)
        control:
          socket: \(socket)
        \(controlYAML)
        logging:
          level: \(logLevel)

        """
    }

    deinit {
        if exitStatus() == nil {
            kill(process.processIdentifier, SIGKILL)
            _ = reap(process, timeout: 10)
        }
    }

    private var reapedStatus: Int32?

    /// The daemon's exit code once it has ended (reaped with `waitpid` here: see ``reap(_:timeout:onTimeout:)``),
    /// or `nil` while it runs.
    func exitStatus() -> Int32? {
        if let reapedStatus { return reapedStatus }
        var raw: Int32 = 0
        let result = waitpid(process.processIdentifier, &raw, WNOHANG)
        if result == process.processIdentifier {
            let signal = raw & 0x7f
            reapedStatus = signal == 0 ? (raw >> 8) & 0xff : 128 + signal
        } else if result == -1 && errno == ECHILD && !process.isRunning {
            reapedStatus = process.terminationStatus
        }
        return reapedStatus
    }

    var pid: Int32 { process.processIdentifier }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Sends one control command and returns its result.
    func call(_ command: String, arguments: [String: JSONValue] = [:]) throws -> JSONValue {
        let client = try ControlClient(path: socketPath)
        return try client.call(command, arguments: arguments, timeout: .seconds(10))
    }

    func stats() throws -> JSONValue { try call("stats") }

    /// Waits until `ping` reports the daemon healthy. The control socket answers before the consumer process has
    /// been spawned (its bootstep comes first), and `swiftqctl ping` exits 1 while the consumer is not running: a
    /// test of something else than startup waits for this before asserting `ping`'s exit code.
    @discardableResult
    func waitUntilHealthy(timeout: Double = 30) -> Bool {
        let healthy = eventually(timeout: timeout) { (try? self.call("ping"))?["healthy"]?.boolValue == true }
        if !healthy { Issue.record("swiftqd did not turn healthy within \(Int(timeout))s; log:\n\(self.log)") }
        return healthy
    }

    /// Runs `swiftqctl` against this daemon.
    func ctl(_ arguments: [String]) throws -> CommandResult {
        try runCommand(Binaries.swiftqctl, ["--socket", socketPath] + arguments)
    }

    /// Pool children (slot → pid) as `stats` lists them.
    func poolPIDs() throws -> [Int: Int32] {
        var result: [Int: Int32] = [:]
        for child in try stats()["children"]?.arrayValue ?? [] where child["role"]?.stringValue == "pool" {
            if let slot = child["slot"]?.intValue, let pid = child["pid"]?.intValue {
                result[Int(slot)] = Int32(pid)
            }
        }
        return result
    }

    func consumerPID() throws -> Int32? {
        let consumer = try stats()["children"]?.arrayValue?.first { $0["role"]?.stringValue == "consumer" }
        return consumer?["pid"]?.intValue.map { Int32($0) }
    }

    /// Every child pid the daemon reports.
    func childPIDs() throws -> [Int32] {
        try stats()["children"]?.arrayValue?.compactMap { $0["pid"]?.intValue.map { Int32($0) } } ?? []
    }

    /// Sends a signal to the supervisor.
    func signal(_ signal: Int32) {
        kill(pid, signal)
    }

    /// Waits for the supervisor to exit; returns its exit status, or nil on timeout.
    func waitForExit(timeout: Double = 20) -> Int32? {
        guard eventually(timeout: timeout, { exitStatus() != nil }) else { return nil }
        return exitStatus()
    }

    /// Replaces the configuration file.
    func rewriteConfiguration(concurrency: Int, extraYAML: String = "", logLevel: String = "debug") throws {
        try
            (Self.configuration(socket: socketPath, concurrency: concurrency, controlYAML: "", logLevel: logLevel)
            + extraYAML)
            .write(toFile: configPath, atomically: true, encoding: .utf8)
    }
}
