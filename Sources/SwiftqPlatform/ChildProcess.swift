import CSwiftqPlatform

#if canImport(Glibc)
import Glibc
#endif

/// How a child process ended, decoded from a `waitpid` status.
public enum ExitStatus: Equatable, Sendable, CustomStringConvertible {
    /// The process called `exit(code)`.
    case exited(code: Int32)
    /// A signal killed the process.
    case signaled(signal: Int32, coreDumped: Bool)

    /// Decodes a raw `waitpid` status (the `WIFEXITED`/`WTERMSIG` macros do not import into Swift).
    public init(rawStatus status: Int32) {
        let signal = status & 0x7f
        if signal == 0 {
            self = .exited(code: (status >> 8) & 0xff)
        } else {
            self = .signaled(signal: signal, coreDumped: status & 0x80 != 0)
        }
    }

    /// Whether this is a clean `exit(0)`.
    public var isSuccess: Bool { self == .exited(code: 0) }

    public var description: String {
        switch self {
        case .exited(let code): "exited with code \(code)"
        case .signaled(let signal, let core):
            "killed by signal \(signal) (\(UnixSignal.name(of: signal)))\(core ? ", core dumped" : "")"
        }
    }
}

/// Spawning, signalling and reaping of child processes.
///
/// Children are always started with `posix_spawn` of an executable (normally `/proc/self/exe` with an
/// internal role argument), never with a bare `fork()`: the Swift runtime has threads, and a forked copy
/// of a threaded process may hang on the first lock it touches.
public enum ChildProcess {
    /// Starts `path` with `arguments` (argv[0] included) and `environment` (`KEY=VALUE` strings).
    ///
    /// `descriptors[i]` becomes descriptor `firstDescriptor + i` in the child (3 by default: extra
    /// descriptors after stdin, stdout and stderr; 0 to give a program its standard streams); every other
    /// inherited descriptor above 2 is closed, every signal disposition is reset to default with an empty
    /// mask, and the child gets a process group of its own (so a terminal's Ctrl-C, or a kill of the group,
    /// reaches exactly whom it should). A `path` without a slash is looked up in `PATH`. The corresponding C
    /// function is `posix_spawn`.
    public static func spawn(
        path: String,
        arguments: [String],
        environment: [String],
        descriptors: [CInt],
        firstDescriptor: CInt = 3
    ) throws(SystemError) -> pid_t {
        var pid: pid_t = 0
        let status = withCStringArray(arguments) { argv in
            withCStringArray(environment) { envp in
                CSwiftqPlatform_spawn(path, argv, envp, descriptors, CInt(descriptors.count), firstDescriptor, &pid)
            }
        }
        if status != 0 { throw SystemError.current("posix_spawn \(path)") }
        return pid
    }

    /// Reaps every child that has ended, without blocking.
    public static func reapAll() -> [(pid: pid_t, status: ExitStatus)] {
        reapAllWithUsage().map { ($0.pid, $0.status) }
    }

    /// Reaps every child that has ended, without blocking, with the resources each used (itself and the
    /// children it reaped). The corresponding C function is `wait4`.
    public static func reapAllWithUsage() -> [(pid: pid_t, status: ExitStatus, usage: ResourceUsage)] {
        var reaped: [(pid_t, ExitStatus, ResourceUsage)] = []
        while true {
            var status: Int32 = 0
            var usage = rusage()
            let pid = wait4(-1, &status, WNOHANG, &usage)
            if pid > 0 {
                reaped.append((pid, ExitStatus(rawStatus: status), ResourceUsage(usage)))
            } else if pid == -1 && errno == EINTR {
                continue
            } else {
                return reaped
            }
        }
    }

    /// Waits for one specific child, up to `timeout`; nil if it has not ended by then.
    public static func wait(pid: pid_t, timeout: Duration) -> ExitStatus? {
        let deadline = ContinuousClock.now + timeout
        while true {
            var status: Int32 = 0
            let result = waitpid(pid, &status, WNOHANG)
            if result == pid { return ExitStatus(rawStatus: status) }
            if result == -1 && errno != EINTR { return nil }
            if ContinuousClock.now >= deadline { return nil }
            usleep(5_000)
        }
    }

    /// Sends a signal; a process that is already gone is not an error. The corresponding C function is `kill`.
    public static func signal(_ pid: pid_t, _ signal: Int32) {
        if pid > 0 { _ = kill(pid, signal) }
    }

    /// Whether a process with this pid exists (it may be a zombie).
    public static func exists(_ pid: pid_t) -> Bool {
        kill(pid, 0) == 0 || errno == EPERM
    }

    /// Asks the kernel to send `signal` to this process when the thread that spawned it ends.
    /// The corresponding C function is `prctl(PR_SET_PDEATHSIG)`.
    public static func setParentDeathSignal(_ signal: Int32) throws(SystemError) {
        if CSwiftqPlatform_setParentDeathSignal(signal) != 0 { throw SystemError.current("prctl PR_SET_PDEATHSIG") }
    }

    /// The variable through which a swiftq process tells a child it spawns its own pid (see ``parentIsGone``).
    public static let parentPIDVariable = "SWIFTQ_PARENT_PID"

    /// Whether the process that spawned this one has gone (checked once `PR_SET_PDEATHSIG` is armed, for a parent
    /// that died just before). Compares `getppid()` with the pid the parent put in ``parentPIDVariable``: a plain
    /// `getppid() == 1` test mistakes a parent that *is* PID 1 (swiftqd as a container's init) for a dead one,
    /// and misses a dead parent whose orphans go to a subreaper. Without the variable (a child started by hand,
    /// as the tests do) it falls back to `getppid() == 1`. The corresponding C function is `getppid`.
    public static var parentIsGone: Bool {
        let parent = getppid()
        if let text = getenv(parentPIDVariable), let expected = pid_t(String(cString: text)), expected > 0 {
            return parent != expected
        }
        return parent == 1
    }

    /// This process's pid. The corresponding C function is `getpid`.
    public static var currentPID: pid_t { getpid() }

    /// Replaces this process with `arguments[0]` (looked up in `PATH`), keeping the environment; returns only
    /// on failure. The corresponding C function is `execvp`.
    public static func execute(_ arguments: [String]) -> SystemError {
        _ = withCStringArray(arguments) { argv in execvp(arguments[0], argv) }
        return SystemError.current("execvp \(arguments[0])")
    }

    /// This process's environment as `KEY=VALUE` strings, for a child's environment.
    public static var currentEnvironment: [String] {
        var environment: [String] = []
        var pointer = environ
        while let entry = pointer.pointee {
            environment.append(String(cString: entry))
            pointer += 1
        }
        return environment
    }

    /// Path of the running executable, for re-executing it with an internal role.
    public static var currentExecutable: String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let length = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        if length <= 0 { return "/proc/self/exe" }
        return String(decoding: buffer[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// Calls `body` with a NULL-terminated `char *[]` built from `strings`, valid only during the call.
func withCStringArray<Result>(_ strings: [String], _ body: ([UnsafeMutablePointer<CChar>?]) -> Result) -> Result {
    let pointers = strings.map { strdup($0) }
    defer { pointers.forEach { free($0) } }
    return body(pointers + [nil])
}
