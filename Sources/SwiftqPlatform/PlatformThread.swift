import CSwiftqPlatform

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A detached POSIX thread for blocking work (a broker connection, a result writer), without Foundation's
/// `Thread`.
///
/// Why not `Thread`: it lives in swift-corelibs Foundation, whose start-up code (CoreFoundation's initialisers)
/// then runs in every process of the statically linked daemon and costs each of them ~2.6 MiB of RSS. The daemon
/// needs nothing from it but "run this closure on its own thread", which is what this does: `pthread_create` with
/// the default stack size, detached, so nothing has to join it. A thread runs until its closure returns.
public enum PlatformThread {
    /// Starts `body` on a new detached thread named `name` (at most 15 bytes are kept: the kernel's limit, shown
    /// by `top -H` and in core dumps). Fails only when the system cannot create a thread (`EAGAIN`); the callers
    /// treat that as fatal.
    public static func start(name: String, _ body: @escaping @Sendable () -> Void) throws(SystemError) {
        let context = Unmanaged.passRetained(ThreadContext(name: name, body: body)).toOpaque()
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        var thread = pthread_t()
        let result = pthread_create(&thread, &attributes, threadEntry, context)
        guard result == 0 else {
            Unmanaged<ThreadContext>.fromOpaque(context).release()
            throw SystemError("pthread_create \(name)", errno: result)
        }
    }

    /// Starts `body` on a new thread, and stops the process if no thread can be created: for threads a component
    /// cannot run without (Foundation's `Thread.start()` trapped too).
    public static func startOrExit(name: String, _ body: @escaping @Sendable () -> Void) {
        do {
            try start(name: name, body)
        } catch {
            fatalError("\(error)")
        }
    }

    /// Blocks the calling thread for `duration` (`nanosleep`, resumed after signals until the time is up).
    public static func sleep(for duration: Duration) {
        let (seconds, attoseconds) = duration.components
        guard seconds > 0 || attoseconds > 0 else {
            return
        }
        var request = timespec(tv_sec: Int(seconds), tv_nsec: Int(attoseconds / 1_000_000_000))
        var remaining = timespec()
        while nanosleep(&request, &remaining) == -1 && errno == EINTR {
            request = remaining
        }
    }
}

/// What the new thread runs; retained across `pthread_create` and released by the thread.
private final class ThreadContext {
    let name: String
    let body: @Sendable () -> Void

    init(name: String, body: @escaping @Sendable () -> Void) {
        self.name = name
        self.body = body
    }
}

private func threadEntry(_ context: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    guard let context else {
        return nil
    }
    let threadContext = Unmanaged<ThreadContext>.fromOpaque(context).takeRetainedValue()
    // The kernel keeps 15 bytes and a NUL; a longer name makes the call fail with ERANGE and keep none.
    _ = CSwiftqPlatform_setThreadName(String(decoding: threadContext.name.utf8.prefix(15), as: UTF8.self))
    threadContext.body()
    return nil
}
