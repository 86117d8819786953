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
///
/// A reader that will look again soon anyway (its next turn is already coming, for other reasons) can say so
/// (``setQuiet(_:)``): posts marked `urgent: false` then only queue their items, and the reader takes them with
/// ``takeQueued()`` on its next turn. That saves the write, the reader's wake-up and a turn of its own for each of
/// them. Urgent posts always wake it; turning quiet off wakes it at once for anything queued quietly meanwhile.
///
/// Posting and taking are inlinable, as ``WorkQueue``'s posting is: they run for every batch of tasks in other
/// modules, which would otherwise run this generic class unspecialized.
public final class Mailbox<Item: Sendable>: Sendable {
    @usableFromInline
    struct State {
        @usableFromInline var items: [Item] = []
        /// A wake-up byte was written and ``drain()`` has not read it yet: no other is needed.
        @usableFromInline var wakePending = false
        /// The reader will look again soon without being woken (``setQuiet(_:)``).
        @usableFromInline var quiet = false

        @usableFromInline init() {}

        /// Whether the caller is to write a wake-up byte: yes, unless one is pending already.
        @inlinable
        mutating func claimWakeUp() -> Bool {
            guard !wakePending else { return false }
            wakePending = true
            return true
        }
    }

    @usableFromInline let state = Mutex(State())
    @usableFromInline let wakeRead: CInt
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

    /// Adds items and wakes the loop, unless a wake-up is already pending or (`urgent: false`) the reader is quiet.
    /// A full pipe already means "wake up", so EAGAIN is fine.
    @inlinable
    public func post(_ newItems: [Item], urgent: Bool = true) {
        guard !newItems.isEmpty else { return }
        let wake = state.withLock { state in
            state.items.append(contentsOf: newItems)
            return (urgent || !state.quiet) && state.claimWakeUp()
        }
        if wake { writeWakeUp() }
    }

    public func post(_ item: Item) { post([item]) }

    /// Wakes the loop without an item (something else it watches changed, e.g. events were buffered for it), as a
    /// post would: a byte is written only when none is pending.
    public func wake() {
        let wake = state.withLock { $0.claimWakeUp() }
        if wake { writeWakeUp() }
    }

    /// The reader's promise (or its withdrawal) to look again soon without being woken: while quiet, posts that are
    /// not urgent only queue. Turning it off wakes the reader if anything was queued quietly.
    public func setQuiet(_ quiet: Bool) {
        let wake = state.withLock { state in
            guard state.quiet != quiet else { return false }
            state.quiet = quiet
            return !quiet && !state.items.isEmpty && state.claimWakeUp()
        }
        if wake { writeWakeUp() }
    }

    /// Takes the queued items without reading the wake-up pipe: for a reader that takes them on every turn, woken or
    /// not (a pending byte stays, and only wakes its next poll, whose ``drain()`` reads it). Saves a `read` that would
    /// fail with EAGAIN on every turn woken by something else.
    @inlinable
    public func takeQueued() -> [Item] {
        state.withLock { state in
            guard !state.items.isEmpty else { return [] }
            let taken = state.items
            state.items.removeAll(keepingCapacity: true)
            return taken
        }
    }

    /// Takes every queued item (call on the loop's thread when the descriptor is readable).
    @inlinable
    public func drain() -> [Item] {
        // On the stack: a drain runs on every wake-up of the loop, and allocates nothing of its own. A read that
        // does not fill the buffer has emptied the pipe: no second read just to be told EAGAIN. A poster that
        // marked its wake-up pending before this read but writes it after leaves one byte: one spurious wake-up.
        withUnsafeTemporaryAllocation(byteCount: 64, alignment: 1) { buffer in
            while read(wakeRead, buffer.baseAddress, 64) == 64 {}
        }
        return state.withLock { state in
            state.wakePending = false
            let taken = state.items
            state.items.removeAll(keepingCapacity: true)
            return taken
        }
    }

    @usableFromInline
    func writeWakeUp() {
        ThroughputCounters.shared.threadWokeUp()
        var byte: UInt8 = 1
        _ = write(wakeWrite, &byte, 1)
    }
}
