/// When to respawn a child that died, and when its deaths amount to a crash loop. Pure, so it is tested
/// without processes.
///
/// A child that ran for at least `stableAfter` before dying is respawned at once (a one-off crash, or a
/// `kill -9` by an operator). Each quick death after that doubles the delay from `initialDelay` up to
/// `maximumDelay`, so a child that cannot start does not burn a core. `crashLoopThreshold` deaths within
/// `crashLoopWindow` mark a crash loop, which the supervisor reports in `STATUS=` and `stats` and which
/// stops the systemd watchdog pings.
package struct RestartPolicy: Equatable {
    package init() {}

    package var stableAfter: Duration = .seconds(10)
    package var initialDelay: Duration = .milliseconds(100)
    package var maximumDelay: Duration = .seconds(30)
    package var crashLoopWindow: Duration = .seconds(60)
    package var crashLoopThreshold = 5

    /// The restart history of one child slot.
    package struct History: Equatable {
        package init() {}

        /// Quick deaths in a row (reset by a child that stayed up for `stableAfter`).
        package var quickDeaths = 0
        /// When recent deaths happened (only those inside the crash-loop window are kept).
        package var deaths: [ContinuousClock.Instant] = []
    }

    /// Records a death of a child that had run for `uptime`, and returns how long to wait before the
    /// respawn.
    package func recordDeath(_ history: inout History, uptime: Duration, at now: ContinuousClock.Instant) -> Duration {
        history.deaths.append(now)
        history.deaths.removeAll { now - $0 > crashLoopWindow }
        if uptime >= stableAfter {
            history.quickDeaths = 0
            return .zero
        }
        history.quickDeaths += 1
        if history.quickDeaths == 1 { return .zero }
        var delay = initialDelay
        for _ in 2..<history.quickDeaths {
            delay = delay * 2
            if delay >= maximumDelay { return maximumDelay }
        }
        return min(delay, maximumDelay)
    }

    /// Whether the history shows a crash loop at `now`.
    package func isCrashLooping(_ history: History, at now: ContinuousClock.Instant) -> Bool {
        history.deaths.filter { now - $0 <= crashLoopWindow }.count >= crashLoopThreshold
    }
}

package extension RestartPolicy {
    /// Records an exit whose reason is known and returns the delay before the replacement, or nil when the slot
    /// is not to be replaced. Only a crash (``ExitReason/isCrash``) enters the history, so only crashes feed
    /// backoff and crash-loop detection (and through it the watchdog); a deliberate exit (time limit, terminate,
    /// shrink, reload, shutdown) is replaced at once, or not at all when the slot was let go.
    func recordExit(
        _ reason: ExitReason,
        _ history: inout History,
        uptime: Duration,
        at now: ContinuousClock.Instant
    ) -> Duration? {
        switch reason {
        case .crash, .oomKilled, .protocolError: return recordDeath(&history, uptime: uptime, at: now)
        case .shrink, .shutdown: return nil
        case .timeLimit, .terminated, .maxTasks, .maxMemory, .reload: return .zero
        }
    }
}
