import Synchronization

/// A queue towards a background thread, which blocks until there is work, a deadline, or a stop.
public final class WorkQueue<Item: Sendable>: Sendable {
    private struct State {
        var items: [Item] = []
        var stopped = false
    }

    private let state = Mutex(State())
    // Condition variables do not pair with Swift's Mutex; a semaphore counts the wake-ups instead.
    private let signal = Semaphore()

    /// Creates an empty queue.
    public init() {}

    public func post(_ newItems: [Item]) {
        guard !newItems.isEmpty else { return }
        state.withLock { $0.items.append(contentsOf: newItems) }
        signal.post()
    }

    public func post(_ item: Item) { post([item]) }

    /// Wakes the thread waiting in ``take(timeout:)`` without an item (it returns none), for work kept elsewhere:
    /// the Redis writer's Celery events.
    public func wake() {
        signal.post()
    }

    public func stop() {
        state.withLock { $0.stopped = true }
        signal.post()
    }

    /// Waits up to `timeout` for items; returns them (possibly none) and whether the queue was stopped.
    public func take(timeout: Duration) -> (items: [Item], stopped: Bool) {
        let ready = state.withLock { !$0.items.isEmpty || $0.stopped }
        if !ready { signal.wait(timeout: timeout) }
        return state.withLock { state in
            let taken = state.items
            state.items.removeAll(keepingCapacity: true)
            return (taken, state.stopped)
        }
    }
}
