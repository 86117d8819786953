#if canImport(Glibc)
import Glibc
#endif

/// How a program run by ``ProgramRunner`` ended, with what it wrote.
public struct ProgramOutcome: Sendable {
    /// How it exited; nil when it was killed for the time limit or an abort.
    public var status: ExitStatus?
    /// Whether the time limit ended it.
    public var timedOut: Bool
    /// Whether the soft time limit passed while it ran (its process group got `SIGTERM`).
    public var softTimedOut = false
    /// Whether the abort descriptor ended it.
    public var aborted: Bool
    /// Everything it wrote to stdout (up to the output limit).
    public var standardOutput: [UInt8]
    /// Whether stdout went over the output limit (the program was then killed).
    public var outputTooLarge: Bool
    /// The last bytes it wrote to stderr.
    public var standardErrorTail: [UInt8]
}

/// Runs an external program with input on stdin, collecting stdout and the tail of stderr, under a time
/// limit: what an exec task is.
///
/// The caller must ignore SIGPIPE (every swiftq role does): a program that exits without reading all its
/// input makes the write to its stdin fail, which must be an `EPIPE`, not the caller's death.
///
/// The program gets a process group of its own, so a timeout kills everything it started, not just the
/// first process. All waiting happens in one `poll` loop, so a program that fills stderr while its stdin is
/// still being written never deadlocks against us.
public enum ProgramRunner {
    /// How much of stderr is kept (its end: where the error usually is).
    public static let standardErrorTailSize = 8192

    /// Runs `arguments` (argv[0] is the program: an absolute path, or a name looked up in `PATH`).
    ///
    /// - Parameters:
    ///   - abortDescriptor: when this becomes readable (a lifeline reaching end of file), the program is
    ///     killed and the run ends with `aborted`.
    ///   - softTimeout: when this passes, the program's process group gets `SIGTERM` (once), so it can clean up
    ///     and exit before `timeout` kills it.
    public static func run(
        arguments: [String],
        environment: [String],
        input: [UInt8],
        timeout: Duration?,
        abortDescriptor: CInt? = nil,
        softTimeout: Duration? = nil,
        maximumOutput: Int = 64 * 1024 * 1024
    ) throws(SystemError) -> ProgramOutcome {
        let stdin = try Descriptors.pipe(nonBlockingWrite: true)
        let stdout: (read: CInt, write: CInt)
        let stderr: (read: CInt, write: CInt)
        do {
            stdout = try Descriptors.pipe(nonBlockingRead: true)
        } catch {
            Descriptors.close(stdin.read)
            Descriptors.close(stdin.write)
            throw error
        }
        do {
            stderr = try Descriptors.pipe(nonBlockingRead: true)
        } catch {
            [stdin.read, stdin.write, stdout.read, stdout.write].forEach(Descriptors.close)
            throw error
        }
        let pid: pid_t
        do {
            pid = try ChildProcess.spawn(
                path: arguments[0],
                arguments: arguments,
                environment: environment,
                descriptors: [stdin.read, stdout.write, stderr.write],
                firstDescriptor: 0
            )
        } catch {
            [stdin.read, stdin.write, stdout.read, stdout.write, stderr.read, stderr.write].forEach(Descriptors.close)
            throw error
        }
        [stdin.read, stdout.write, stderr.write].forEach(Descriptors.close)

        var inputWrite: CInt? = stdin.write
        var inputOffset = 0
        var outputRead: CInt? = stdout.read
        var errorRead: CInt? = stderr.read
        var output: [UInt8] = []
        var errorTail: [UInt8] = []
        var timedOut = false
        var aborted = false
        var tooLarge = false
        let deadline = timeout.map { ContinuousClock.now + $0 }
        var softDeadline = softTimeout.map { ContinuousClock.now + $0 }
        var softTimedOut = false
        var buffer = [UInt8](repeating: 0, count: 65536)

        if input.isEmpty, let fd = inputWrite {
            Descriptors.close(fd)
            inputWrite = nil
        }
        while outputRead != nil || errorRead != nil {
            var pollfds: [pollfd] = []
            if let fd = inputWrite { pollfds.append(pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)) }
            if let fd = outputRead { pollfds.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0)) }
            if let fd = errorRead { pollfds.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0)) }
            if let fd = abortDescriptor { pollfds.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0)) }
            var wait: Int32 = -1
            if let soft = softDeadline {
                let left = ContinuousClock.now.duration(to: soft)
                if left <= .zero {
                    softDeadline = nil
                    softTimedOut = true
                    kill(-pid, SIGTERM)
                    kill(pid, SIGTERM)
                } else {
                    wait = Int32(clamping: max(1, left.milliseconds))
                }
            }
            if let deadline {
                let left = ContinuousClock.now.duration(to: deadline)
                if left <= .zero {
                    timedOut = true
                    break
                }
                let hard = Int32(clamping: left.milliseconds)
                wait = wait < 0 ? hard : min(wait, hard)
            }
            let ready = poll(&pollfds, nfds_t(pollfds.count), wait)
            if ready < 0 && errno != EINTR { break }
            if ready <= 0 { continue }
            for entry in pollfds where entry.revents != 0 {
                if entry.fd == abortDescriptor {
                    aborted = true
                } else if entry.fd == inputWrite {
                    let written = input.withUnsafeBytes { raw in
                        write(entry.fd, raw.baseAddress! + inputOffset, raw.count - inputOffset)
                    }
                    if written > 0 { inputOffset += written }
                    if inputOffset == input.count || (written < 0 && errno != EAGAIN && errno != EINTR) {
                        // All written, or the program closed its stdin (EPIPE): it has what it takes.
                        Descriptors.close(entry.fd)
                        inputWrite = nil
                    }
                } else {
                    let count = buffer.withUnsafeMutableBytes { read(entry.fd, $0.baseAddress, $0.count) }
                    if count > 0 {
                        if entry.fd == outputRead {
                            output.append(contentsOf: buffer[0..<count])
                            if output.count > maximumOutput { tooLarge = true }
                        } else {
                            errorTail.append(contentsOf: buffer[0..<count])
                            if errorTail.count > standardErrorTailSize {
                                errorTail.removeFirst(errorTail.count - standardErrorTailSize)
                            }
                        }
                    } else if count == 0 || (errno != EAGAIN && errno != EINTR) {
                        Descriptors.close(entry.fd)
                        if entry.fd == outputRead { outputRead = nil } else { errorRead = nil }
                    }
                }
            }
            if aborted || tooLarge { break }
        }
        if timedOut || aborted || tooLarge {
            // The whole process group: whatever the program started goes too.
            kill(-pid, SIGKILL)
            kill(pid, SIGKILL)
        }
        [inputWrite, outputRead, errorRead].compactMap { $0 }.forEach(Descriptors.close)
        var rawStatus: Int32 = 0
        while waitpid(pid, &rawStatus, 0) == -1 && errno == EINTR {}
        let status = (timedOut || aborted || tooLarge) ? nil : ExitStatus(rawStatus: rawStatus)
        return ProgramOutcome(
            status: status,
            timedOut: timedOut,
            softTimedOut: softTimedOut,
            aborted: aborted,
            standardOutput: output,
            outputTooLarge: tooLarge,
            standardErrorTail: errorTail
        )
    }
}
