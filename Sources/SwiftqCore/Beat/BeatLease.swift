/// The cluster-wide beat lease as a pure state machine: events in, actions out, no I/O.
///
/// Only the holder of the lease publishes. The lease is a broker key set with `SET key token NX PX ttl`; the holder
/// renews it every third of the TTL by compare-and-extend and releases it by compare-and-delete, so no node can
/// extend or delete another's lease. Each acquisition also takes a new **fencing token** (a counter incremented
/// atomically on the broker); publishing is done by a script that checks the lease still holds this node's token,
/// so a holder that was paused past its lease (a stopped VM, SIGSTOP) cannot publish after another took over.
///
/// Locally, the holder stops publishing on its own once `ttl − margin` has passed since its last successful
/// renewal, even before it hears that the lease is gone.
public struct BeatLease: Sendable, Equatable {
    public enum State: Sendable, Equatable {
        /// Not holding the lease; try again at `retryAt`.
        case follower(retryAt: Double)
        /// Holding it with fencing token `fence`; valid until `validUntil` unless renewed.
        case holder(fence: Int64, validUntil: Double, renewAt: Double)
    }

    /// What the caller must do.
    public enum Action: Sendable, Equatable {
        case none
        /// `SET name token NX PX ttl`, then report with ``acquired(fence:at:)`` or ``acquireFailed(at:)``.
        case acquire
        /// Compare-and-extend, then report with ``renewed(at:)`` or ``lost(at:)``.
        case renew
        /// Compare-and-delete (shutdown).
        case release
    }

    public let ttl: Double
    public private(set) var state: State = .follower(retryAt: 0)

    public init(ttl: Double) {
        self.ttl = ttl
    }

    /// How often a follower tries to take the lease.
    public var retryInterval: Double { ttl / 3 }
    /// How long before the lease's expiry the holder stops publishing (clock skew and renewal latency).
    public var safetyMargin: Double { min(1, ttl / 5) }

    /// Whether this node may publish at `now`.
    public func mayPublish(at now: Double) -> Bool {
        if case .holder(_, let validUntil, _) = state { return now < validUntil - safetyMargin }
        return false
    }

    /// The current fencing token, while holding.
    public var fence: Int64? {
        if case .holder(let fence, _, _) = state { return fence }
        return nil
    }

    public var isHolder: Bool { fence != nil }

    /// What to do at `now` (called on every tick).
    public mutating func tick(now: Double) -> Action {
        switch state {
        case .follower(let retryAt):
            return now >= retryAt ? .acquire : .none
        case .holder(_, let validUntil, let renewAt):
            if now >= validUntil {
                // Not renewed in time: the lease may be someone else's now.
                state = .follower(retryAt: now)
                return .acquire
            }
            return now >= renewAt ? .renew : .none
        }
    }

    public mutating func acquired(fence: Int64, at now: Double) {
        state = .holder(fence: fence, validUntil: now + ttl, renewAt: now + ttl / 3)
    }

    public mutating func acquireFailed(at now: Double) {
        state = .follower(retryAt: now + retryInterval)
    }

    public mutating func renewed(at now: Double) {
        guard case .holder(let fence, _, _) = state else { return }
        state = .holder(fence: fence, validUntil: now + ttl, renewAt: now + ttl / 3)
    }

    /// The lease was not ours any more (renewal or a fenced publish refused), or the broker could not be reached.
    public mutating func lost(at now: Double) {
        state = .follower(retryAt: now + retryInterval)
    }

    /// Shutdown: release if holding.
    public mutating func stop() -> Action {
        defer { state = .follower(retryAt: .infinity) }
        return isHolder ? .release : .none
    }
}
