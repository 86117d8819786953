import OrderedCollections

/// The schedule's state: for each entry, when it last ran and when it runs next. Pure: time comes in as an argument
/// (seconds since the epoch), so tests drive it with an injected clock and no process.
///
/// Owned by the beat process's loop. It decides *which runs are due*; whether this node may publish them is the
/// lease's business (``BeatLease``), and recording a published run is the caller's, through ``published(_:now:)``.
///
/// Missed runs never come out as a burst: after downtime an entry follows its `catch_up` (`none`: skip to the next
/// scheduled time; `once`: one run now), and a loop that stalls past several run times publishes the latest once.
public struct BeatScheduler: Sendable {
    /// One run to publish: the entry and the scheduled time it stands for (the run's identity across nodes).
    public struct Run: Sendable, Equatable {
        public var entry: String
        public var scheduledAt: Double

        public init(entry: String, scheduledAt: Double) {
            self.entry = entry
            self.scheduledAt = scheduledAt
        }
    }

    /// An entry with its resolved time zone and its timing.
    public struct EntryState: Sendable {
        public var entry: Configuration.BeatEntry
        public var zone: TimeZoneInfo
        public var lastRun: Double?
        public var nextRun: Double?
    }

    public private(set) var entries: OrderedDictionary<String, EntryState> = [:]

    public init() {}

    /// A fingerprint of what decides an entry's times: a changed one means stored last-runs no longer apply.
    public static func fingerprint(_ entry: Configuration.BeatEntry, zone: TimeZoneInfo) -> String {
        switch entry.schedule {
        case .interval(let every): "every \(Duration.formatted(every))"
        case .cron(let expression): "cron \(expression.source) \(zone.name)"
        }
    }

    /// The first scheduled time strictly after `instant`.
    public static func next(_ entry: Configuration.BeatEntry, zone: TimeZoneInfo, after instant: Double) -> Double? {
        switch entry.schedule {
        case .interval(let every):
            return instant + every.secondsValue
        case .cron(let expression):
            // Cron times are whole minutes; a fractional instant rounds down first so `after` stays strict.
            let seconds = Int64(instant.rounded(.down))
            return expression.nextFire(after: seconds, in: zone).map(Double.init)
        }
    }

    /// Applies a (new or reloaded) set of entries at `now`: new entries start, removed ones stop, changed ones
    /// recompute their next run. `lastRuns` are the stored last-run times by entry (with their fingerprints), used
    /// for entries this scheduler does not know yet; catch-up rules apply to them.
    public mutating func apply(
        _ configured: OrderedDictionary<String, (entry: Configuration.BeatEntry, zone: TimeZoneInfo)>,
        lastRuns: [String: (at: Double, fingerprint: String)],
        now: Double
    ) {
        var updated: OrderedDictionary<String, EntryState> = [:]
        for (name, item) in configured {
            let fingerprint = Self.fingerprint(item.entry, zone: item.zone)
            if let existing = entries[name] {
                var state = existing
                let changed = Self.fingerprint(existing.entry, zone: existing.zone) != fingerprint
                state.entry = item.entry
                state.zone = item.zone
                if changed {
                    state.nextRun = Self.next(item.entry, zone: item.zone, after: now)
                }
                updated[name] = state
                continue
            }
            var state = EntryState(entry: item.entry, zone: item.zone, lastRun: nil, nextRun: nil)
            if let stored = lastRuns[name], stored.fingerprint == fingerprint {
                state.lastRun = stored.at
                let due = Self.next(item.entry, zone: item.zone, after: stored.at)
                if let due, due <= now {
                    // Missed while no scheduler ran.
                    switch item.entry.catchUp {
                    case .none: state.nextRun = Self.next(item.entry, zone: item.zone, after: now)
                    case .once: state.nextRun = now
                    }
                } else {
                    state.nextRun = due
                }
            } else {
                state.nextRun = Self.next(item.entry, zone: item.zone, after: now)
            }
            updated[name] = state
        }
        entries = updated
    }

    /// The runs due at `now`, at most one per entry.
    public func due(now: Double) -> [Run] {
        entries.values.compactMap { state in
            guard let next = state.nextRun, next <= now else { return nil }
            return Run(entry: state.entry.name, scheduledAt: next)
        }
    }

    /// Records that `run` was published (by this node or, as learnt from the broker, by another), and moves the
    /// entry to its next time after it, skipping any that are already past at `now`.
    public mutating func published(_ run: Run, now: Double) {
        guard var state = entries[run.entry] else { return }
        if let last = state.lastRun, last >= run.scheduledAt { return }
        state.lastRun = run.scheduledAt
        var next = Self.next(state.entry, zone: state.zone, after: run.scheduledAt)
        if let candidate = next, candidate <= now {
            next = Self.next(state.entry, zone: state.zone, after: now)
        }
        state.nextRun = next
        entries[run.entry] = state
    }

    /// Adopts a last run recorded elsewhere (the broker's record, when this node takes the lease over), and returns
    /// the runs scheduled after it up to `now` that are no older than `window`: the caller publishes those, so a
    /// takeover loses none. Older missed runs follow the entry's catch-up rule (`once`: one run now). The entry then
    /// waits for its first time after `now`.
    public mutating func adopt(lastRun: Double, for name: String, now: Double, window: Double) -> [Run] {
        guard var state = entries[name] else { return [] }
        state.lastRun = lastRun
        var missed: [Run] = []
        var skippedOlder = false
        var next = Self.next(state.entry, zone: state.zone, after: lastRun)
        while let time = next, time <= now, missed.count < 1000 {
            if time > now - window {
                missed.append(Run(entry: name, scheduledAt: time))
            } else {
                skippedOlder = true
            }
            next = Self.next(state.entry, zone: state.zone, after: time)
        }
        if skippedOlder && missed.isEmpty && state.entry.catchUp == .once {
            missed.append(Run(entry: name, scheduledAt: now))
        }
        state.nextRun = next
        entries[name] = state
        return missed
    }

    /// The entry that runs soonest, and when.
    public var nextDue: (entry: String, at: Double)? {
        entries.values.compactMap { state in state.nextRun.map { (state.entry.name, $0) } }.min { $0.1 < $1.1 }
    }
}

extension Duration {
    /// The duration in seconds, as a `Double`.
    public var secondsValue: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
