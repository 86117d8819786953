import SwiftqPlatform
import SwiftqPool

/// One entry of the supervisor's process table: a role (the consumer or the embedded broker; pool children
/// are the consumer's), the process that currently fills it, and its history.
///
/// States: `spawning` (spawned, not yet confirmed) → `running`; `backoff` (dead, waiting to respawn);
/// `stopped` (will not be respawned).
final class ManagedChild {
    enum Role: Equatable {
        case consumer
        /// The embedded dev broker (a private redis-server), when `broker.url` is `embedded`.
        case broker
        /// The embedded beat scheduler, when `beat.enabled` (see Supervisor+Beat.swift).
        case beat

        var name: String {
            switch self {
            case .consumer: "consumer"
            case .broker: "broker"
            case .beat: "beat"
            }
        }
    }

    enum State: String {
        case spawning
        case running
        case backoff
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
