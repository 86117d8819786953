import SwiftqCore
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A queue from background threads to an event loop: `post` from any thread, `drain` on the loop's thread,
/// which is woken through a pipe it watches.
///
/// This is the one bridge between the blocking broker I/O threads and the single-threaded consumer loop;
/// the wake-up pipe keeps the loop free of polling.
public final class Mailbox<Item: Sendable>: Sendable {
    private let items = Mutex<[Item]>([])
    private let wakeRead: CInt
    private let wakeWrite: CInt

    public init() throws(SystemError) {
        (wakeRead, wakeWrite) = try Descriptors.pipe(nonBlockingRead: true, nonBlockingWrite: true)
    }

    deinit {
        Descriptors.close(wakeRead)
        Descriptors.close(wakeWrite)
    }

    /// The descriptor the loop watches for readability.
    public var descriptor: CInt { wakeRead }

    /// Adds items and wakes the loop (a full pipe already means "wake up", so EAGAIN is fine).
    public func post(_ newItems: [Item]) {
        guard !newItems.isEmpty else { return }
        let wasEmpty = items.withLock { queue in
            let empty = queue.isEmpty
            queue.append(contentsOf: newItems)
            return empty
        }
        if wasEmpty {
            ThroughputCounters.shared.threadWokeUp()
            var byte: UInt8 = 1
            _ = write(wakeWrite, &byte, 1)
        }
    }

    public func post(_ item: Item) { post([item]) }

    /// Wakes the loop without an item (something else it watches changed, e.g. events were buffered for it), as a
    /// post would: a byte is written only when nothing is queued, since queued items already have one pending.
    public func wake() {
        guard items.withLock({ $0.isEmpty }) else { return }
        ThroughputCounters.shared.threadWokeUp()
        var byte: UInt8 = 1
        _ = write(wakeWrite, &byte, 1)
    }

    /// Takes the queued items without reading the wake-up pipe: for a thread that takes them on every turn, woken or
    /// not, and saw its poll report no wake-up (a byte written meanwhile stays, and only wakes its next poll, whose
    /// ``drain()`` reads it). Saves a `read` that would fail with EAGAIN on every turn woken by something else.
    public func takeQueued() -> [Item] {
        items.withLock { queue in
            guard !queue.isEmpty else { return [] }
            let taken = queue
            queue.removeAll(keepingCapacity: true)
            return taken
        }
    }

    /// Takes every queued item (call on the loop's thread when the descriptor is readable).
    public func drain() -> [Item] {
        // On the stack: a drain runs on every wake-up of the loop, and allocates nothing of its own. A read that
        // does not fill the buffer has emptied the pipe: no second read just to be told EAGAIN.
        withUnsafeTemporaryAllocation(byteCount: 64, alignment: 1) { buffer in
            while read(wakeRead, buffer.baseAddress, 64) == 64 {}
        }
        return items.withLock { queue in
            let taken = queue
            queue.removeAll(keepingCapacity: true)
            return taken
        }
    }
}
