import Synchronization

/// A queue towards a background thread, which blocks until there is work, a deadline, or a stop.
///
/// The semaphore is posted only when the thread sleeps (or is about to): a thread that is busy finds the new items
/// when it next takes, so a burst of posts costs one wake-up (one futex call) instead of one each.
///
/// Posting and taking are inlinable: posts come once per task from other modules, where this generic class would
/// otherwise run unspecialized, asking the runtime for the metadata of its state and arrays at each post (~1.6k
/// instructions per task on the consumer's loop, in callgrind).
public final class WorkQueue<Item: Sendable>: Sendable {
    @usableFromInline
    struct State {
        @usableFromInline var items: [Item] = []
        @usableFromInline var stopped = false
        /// The thread found nothing and waits (or is about to) on ``signal``: the next post must wake it.
        @usableFromInline var sleeping = false
        /// How many posts woke the thread (tests count them).
        @usableFromInline var wakeUps = 0

        @usableFromInline init() {}

        /// Whether the thread sleeps and must be woken; it counts as awake from now on (one post wakes it).
        @inlinable
        mutating func takeSleeper() -> Bool {
            guard sleeping else { return false }
            sleeping = false
            wakeUps += 1
            return true
        }
    }

    @usableFromInline let state = Mutex(State())
    // Condition variables do not pair with Swift's Mutex; a semaphore counts the wake-ups instead.
    @usableFromInline let signal = Semaphore()

    /// Creates an empty queue.
    public init() {}

    /// How many posts had to wake the thread (a post to a thread that is not asleep does not).
    var wakeUps: Int { state.withLock { $0.wakeUps } }

    /// Whether the thread found nothing and waits (tests wait for it).
    var isAsleep: Bool { state.withLock { $0.sleeping } }

    /// Queues `newItems`. Consuming: when nothing is queued (the thread took all there was, the usual case) the array
    /// itself becomes the queue, instead of each item being copied into it (a retain of every string and collection
    /// a settlement plan holds, and a release of each when the caller's array went away).
    @inlinable
    public func post(_ newItems: consuming [Item]) {
        guard !newItems.isEmpty else { return }
        // Moved in, not captured: the thread may take the queue before this call returns, and a reference still
        // held here would make its first change to the batch copy every item after all.
        var moved = Optional(newItems)
        append { items in
            guard let newItems = moved.take() else { return }
            if items.isEmpty { items = newItems } else { items.append(contentsOf: newItems) }
        }
    }

    @inlinable
    public func post(_ item: Item) { append { $0.append(item) } }

    /// Adds items under the lock; wakes the thread if it sleeps.
    @inlinable
    func append(_ add: (inout [Item]) -> Void) {
        let wake = state.withLock { state in
            add(&state.items)
            return state.takeSleeper()
        }
        if wake { signal.post() }
    }

    /// Sleeps until a post, a stop or `timeout` when nothing is queued (the posts that come meanwhile wake it).
    @usableFromInline
    func waitForWork(timeout: Duration) {
        let ready = state.withLock { state in
            let ready = !state.items.isEmpty || state.stopped
            state.sleeping = !ready
            return ready
        }
        if !ready { signal.wait(timeout: timeout) }
    }

    /// Wakes the thread waiting in ``take(timeout:)`` without an item (it returns none), for work kept elsewhere:
    /// the Redis writer's Celery events.
    public func wake() {
        signal.post()
    }

    public func stop() {
        state.withLock { $0.stopped = true }
        signal.post()
    }

    /// Waits up to `timeout` for an item; returns the first one (nil: none came) and whether the queue was
    /// stopped. The items behind it stay queued, so ``remove(where:)`` can still take them back.
    public func takeFirst(timeout: Duration) -> (item: Item?, stopped: Bool) {
        waitForWork(timeout: timeout)
        return state.withLock { state in
            state.sleeping = false
            return (state.items.isEmpty ? nil : state.items.removeFirst(), state.stopped)
        }
    }

    /// Takes back the first queued item that `matches`, if the thread has not taken it yet; returns whether it did.
    public func remove(where matches: (Item) -> Bool) -> Bool {
        state.withLock { state in
            guard let index = state.items.firstIndex(where: matches) else { return false }
            state.items.remove(at: index)
            return true
        }
    }

    /// Waits up to `timeout` for items; returns them (possibly none) and whether the queue was stopped.
    @inlinable
    public func take(timeout: Duration) -> (items: [Item], stopped: Bool) {
        waitForWork(timeout: timeout)
        return state.withLock { state in
            // A post that came after a timeout still posted the semaphore: the next wait returns at once, with
            // nothing or with what came since, which the caller handles as any wake-up.
            state.sleeping = false
            let taken = state.items
            state.items.removeAll(keepingCapacity: true)
            return (taken, state.stopped)
        }
    }
}
