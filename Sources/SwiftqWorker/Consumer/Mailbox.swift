import SwiftqPlatform
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A queue from background threads to an event loop: `post` from any thread, `drain` on the loop's thread,
/// which is woken through a pipe it watches.
///
/// This is the one bridge between the blocking broker I/O threads and the single-threaded consumer loop;
/// the wake-up pipe keeps the loop free of polling.
final class Mailbox<Item: Sendable>: Sendable {
    private let items = Mutex<[Item]>([])
    private let wakeRead: CInt
    private let wakeWrite: CInt

    init() throws(SystemError) {
        (wakeRead, wakeWrite) = try Descriptors.pipe(nonBlockingRead: true, nonBlockingWrite: true)
    }

    deinit {
        Descriptors.close(wakeRead)
        Descriptors.close(wakeWrite)
    }

    /// The descriptor the loop watches for readability.
    var descriptor: CInt { wakeRead }

    /// Adds items and wakes the loop (a full pipe already means "wake up", so EAGAIN is fine).
    func post(_ newItems: [Item]) {
        guard !newItems.isEmpty else { return }
        let wasEmpty = items.withLock { queue in
            let empty = queue.isEmpty
            queue.append(contentsOf: newItems)
            return empty
        }
        if wasEmpty {
            var byte: UInt8 = 1
            _ = write(wakeWrite, &byte, 1)
        }
    }

    func post(_ item: Item) { post([item]) }

    /// Takes every queued item (call on the loop's thread when the descriptor is readable).
    func drain() -> [Item] {
        var buffer = [UInt8](repeating: 0, count: 64)
        while read(wakeRead, &buffer, 64) > 0 {}
        return items.withLock { queue in
            let taken = queue
            queue.removeAll(keepingCapacity: true)
            return taken
        }
    }
}

/// A queue towards a background thread, which blocks until there is work, a deadline, or a stop.
final class WorkQueue<Item: Sendable>: Sendable {
    private struct State {
        var items: [Item] = []
        var stopped = false
    }

    private let state = Mutex(State())
    // Condition variables do not pair with Swift's Mutex; a semaphore counts the wake-ups instead.
    private let signal = Semaphore()

    func post(_ newItems: [Item]) {
        guard !newItems.isEmpty else { return }
        state.withLock { $0.items.append(contentsOf: newItems) }
        signal.post()
    }

    func post(_ item: Item) { post([item]) }

    func stop() {
        state.withLock { $0.stopped = true }
        signal.post()
    }

    /// Waits up to `timeout` for items; returns them (possibly none) and whether the queue was stopped.
    func take(timeout: Duration) -> (items: [Item], stopped: Bool) {
        let ready = state.withLock { !$0.items.isEmpty || $0.stopped }
        if !ready { signal.wait(timeout: timeout) }
        return state.withLock { state in
            let taken = state.items
            state.items.removeAll(keepingCapacity: true)
            return (taken, state.stopped)
        }
    }
}

/// A counting semaphore with a timed wait (POSIX `sem_timedwait` on CLOCK_REALTIME).
final class Semaphore: @unchecked Sendable {
    // sem_t must not move: it lives in its own allocation for the object's lifetime.
    private let semaphore = UnsafeMutablePointer<sem_t>.allocate(capacity: 1)

    init() {
        sem_init(semaphore, 0, 0)
    }

    deinit {
        sem_destroy(semaphore)
        semaphore.deallocate()
    }

    func post() {
        sem_post(semaphore)
    }

    func wait(timeout: Duration) {
        var deadline = timespec()
        clock_gettime(CLOCK_REALTIME, &deadline)
        let (seconds, attoseconds) = timeout.components
        var nanoseconds = Int(deadline.tv_nsec) + Int(attoseconds / 1_000_000_000)
        deadline.tv_sec += Int(seconds) + nanoseconds / 1_000_000_000
        nanoseconds %= 1_000_000_000
        deadline.tv_nsec = nanoseconds
        while sem_timedwait(semaphore, &deadline) != 0 && errno == EINTR {}
    }
}
