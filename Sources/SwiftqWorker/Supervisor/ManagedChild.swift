import SwiftqPlatform

/// One entry of the supervisor's process table: a role (consumer or a pool slot), the process that
/// currently fills it, and its history.
///
/// States: `spawning` (spawned, not yet confirmed by the consumer) → `running`; `backoff` (dead, waiting
/// to respawn); `retiring` (being let go after a pool shrink); `awaitingConsumer` (a pool slot taken down
/// with a dead consumer, to be started afresh with the next one; not the slot's fault, so not counted as a
/// restart); `stopped` (will not be respawned).
final class ManagedChild {
    enum Role: Equatable {
        case consumer
        case pool(slot: Int)
        /// The embedded dev broker (a private redis-server), when `broker.url` is `embedded`.
        case broker
        /// The embedded beat scheduler, when `beat.enabled` (see Supervisor+Beat.swift).
        case beat

        var name: String {
            switch self {
            case .consumer: "consumer"
            case .pool: "pool"
            case .broker: "broker"
            case .beat: "beat"
            }
        }
    }

    enum State: String {
        case spawning
        case running
        case backoff
        case retiring
        case awaitingConsumer = "awaiting-consumer"
        case stopped
    }

    let role: Role
    var pid: Int32 = 0
    var state: State = .stopped
    var startedAt: ContinuousClock.Instant = .now
    var restarts = 0
    var lastExit: ExitStatus?
    var lastExitWallClock: Double?
    var history = RestartPolicy.History()
    var respawnTimer: EventLoop.TimerID?

    init(role: Role) {
        self.role = role
    }

    /// Whether a live process fills the role.
    var isAlive: Bool { pid > 0 }
}
