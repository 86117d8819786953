import CSwiftqPlatform

#if canImport(Glibc)
import Glibc
#endif

/// Thin typed wrappers over descriptor syscalls (the corresponding C functions are named in each).
///
/// Descriptors are plain `CInt`s: each owner (an event-loop source, a channel, a listener) closes its
/// own exactly once, and the owners say so in their doc comments.
public enum Descriptors {
    /// A pipe whose both ends are close-on-exec; `nonBlockingRead`/`nonBlockingWrite` set `O_NONBLOCK`.
    /// The corresponding C function is `pipe2`.
    public static func pipe(nonBlockingRead: Bool = false, nonBlockingWrite: Bool = false) throws(SystemError)
        -> (read: CInt, write: CInt)
    {
        var fds: [CInt] = [-1, -1]
        try retryingInterrupts("pipe2") { CSwiftqPlatform_pipeCloseOnExec(&fds) }
        if nonBlockingRead { try setNonBlocking(fds[0]) }
        if nonBlockingWrite { try setNonBlocking(fds[1]) }
        return (fds[0], fds[1])
    }

    /// A connected pair of unix stream sockets, both close-on-exec.
    /// The corresponding C function is `socketpair`.
    public static func socketPair() throws(SystemError) -> (CInt, CInt) {
        var fds: [CInt] = [-1, -1]
        try retryingInterrupts("socketpair") {
            socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds)
        }
        return (fds[0], fds[1])
    }

    /// Sets `O_NONBLOCK`. The corresponding C function is `fcntl`.
    public static func setNonBlocking(_ fd: CInt) throws(SystemError) {
        let flags = try retryingInterrupts("fcntl F_GETFL") { fcntl(fd, F_GETFL) }
        try retryingInterrupts("fcntl F_SETFL") { fcntl(fd, F_SETFL, flags | O_NONBLOCK) }
    }

    /// Closes a descriptor, ignoring errors (after `close` the descriptor is gone whatever it returns).
    public static func close(_ fd: CInt) {
        if fd >= 0 { _ = Glibc.close(fd) }
    }

    /// Writes every byte, waiting with `poll` when the descriptor is non-blocking and full.
    public static func writeAll(_ fd: CInt, _ bytes: [UInt8]) throws(SystemError) {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { buffer in
                Glibc.write(fd, buffer.baseAddress! + offset, buffer.count - offset)
            }
            if written >= 0 {
                offset += written
            } else if errno == EINTR {
                continue
            } else if errno == EAGAIN {
                var pollfd = Glibc.pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                _ = Glibc.poll(&pollfd, 1, -1)
            } else {
                throw SystemError.current("write")
            }
        }
    }

    /// Reads up to `maximum` bytes; an empty result means end of file. Throws `EAGAIN` as an error for
    /// non-blocking descriptors. The corresponding C function is `read`.
    public static func read(_ fd: CInt, maximum: Int) throws(SystemError) -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: maximum)
        let count = try retryingInterrupts("read") {
            buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, maximum) }
        }
        buffer.removeLast(maximum - count)
        return buffer
    }

    /// Waits until `fd` is readable or `timeout` passes (nil waits forever). Returns whether it is readable
    /// (end of file and errors count as readable: the next read tells which).
    public static func waitReadable(_ fd: CInt, timeout: Duration?) -> Bool {
        var pollfd = Glibc.pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let deadline = timeout.map { ContinuousClock.now + $0 }
        while true {
            var milliseconds: Int32 = -1
            if let deadline {
                let left = ContinuousClock.now.duration(to: deadline)
                milliseconds = max(0, Int32(clamping: left.milliseconds))
            }
            let ready = Glibc.poll(&pollfd, 1, milliseconds)
            if ready > 0 { return true }
            if ready == 0 {
                if let deadline, ContinuousClock.now < deadline { continue }
                return false
            }
            if errno != EINTR { return true }
        }
    }
}

extension Duration {
    /// Whole milliseconds, rounded up so a wait never ends early.
    public var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
    }

    /// The duration in seconds as a floating-point number (for JSON and logs).
    public var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}
