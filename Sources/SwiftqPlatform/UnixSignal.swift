import CSwiftqPlatform

#if canImport(Glibc)
import Glibc
#endif

/// Signal numbers and names, and the self-pipe that turns signals into event-loop readiness.
public enum UnixSignal {
    /// A conventional name ("SIGTERM") for a signal number.
    public static func name(of signal: Int32) -> String {
        switch signal {
        case SIGHUP: "SIGHUP"
        case SIGINT: "SIGINT"
        case SIGQUIT: "SIGQUIT"
        case SIGILL: "SIGILL"
        case SIGTRAP: "SIGTRAP"
        case SIGABRT: "SIGABRT"
        case SIGBUS: "SIGBUS"
        case SIGFPE: "SIGFPE"
        case SIGKILL: "SIGKILL"
        case SIGUSR1: "SIGUSR1"
        case SIGSEGV: "SIGSEGV"
        case SIGUSR2: "SIGUSR2"
        case SIGPIPE: "SIGPIPE"
        case SIGALRM: "SIGALRM"
        case SIGTERM: "SIGTERM"
        case SIGCHLD: "SIGCHLD"
        case SIGXCPU: "SIGXCPU"
        default: "signal \(signal)"
        }
    }

    /// Ignores a signal (e.g. SIGPIPE, so a closed peer is an `EPIPE`, not a death).
    public static func ignore(_ signal: Int32) {
        _ = CSwiftqPlatform_setSignalIgnored(signal, 1)
    }

    /// Unblocks every signal for the calling thread. A daemon calls this first thing: whoever started it
    /// (a test runner, a shell wrapper) may have left SIGTERM or SIGCHLD blocked, and a blocked SIGTERM
    /// would make the daemon unstoppable.
    public static func unblockAll() {
        _ = CSwiftqPlatform_unblockAllSignals()
    }

    /// Restores a signal's default disposition.
    public static func restoreDefault(_ signal: Int32) {
        _ = CSwiftqPlatform_setSignalIgnored(signal, 0)
    }
}

/// The self-pipe: a handler for each given signal writes the signal number into a non-blocking pipe, and
/// the event loop reads it and handles the signal on the main path (gunicorn's "just queue the signal").
///
/// Owned by the process's event-loop thread; install it once per process.
public final class SignalPipe {
    /// The read end, to watch in the event loop.
    public let readDescriptor: CInt
    private let writeDescriptor: CInt

    /// Installs handlers for `signals`.
    public init(signals: [Int32]) throws(SystemError) {
        let (read, write) = try Descriptors.pipe(nonBlockingRead: true, nonBlockingWrite: true)
        readDescriptor = read
        writeDescriptor = write
        if CSwiftqPlatform_installSignalPipe(write, signals, CInt(signals.count)) != 0 {
            throw SystemError.current("sigaction")
        }
    }

    /// Returns the signals that arrived since the last call, in arrival order.
    public func drain() -> [Int32] {
        var signals: [Int32] = []
        var buffer = [UInt8](repeating: 0, count: 64)
        while true {
            let count = buffer.withUnsafeMutableBytes { Glibc.read(readDescriptor, $0.baseAddress, 64) }
            if count > 0 {
                signals.append(contentsOf: buffer[0..<count].map { Int32($0) })
            } else if count == -1 && errno == EINTR {
                continue
            } else {
                return signals
            }
        }
    }
}
