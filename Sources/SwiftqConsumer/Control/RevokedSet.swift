import OrderedCollections

/// The ids this worker will not run, as Celery's `LimitedSet` of revoked ids: oldest first, at most
/// ``maximum`` entries, each forgotten ``expiry`` seconds after it was revoked.
///
/// Celery purges expired entries only when the set is full, on `hello` and on a state-db sync; here they are purged
/// on those occasions too (``purge(now:)``), and an expired id no longer counts in ``contains(_:now:)`` even before
/// the purge, so a long-idle worker does not hold a task back for longer than it was told.
package struct RevokedSet: Equatable, Sendable {
    /// `worker.revokes_max` (Celery's `REVOKES_MAX`).
    package var maximum: Int
    /// `worker.revokes_expire` in seconds (Celery's `REVOKE_EXPIRES`).
    package var expiry: Double
    /// Id → when it was revoked (seconds since 1970), oldest first.
    package private(set) var entries: OrderedDictionary<String, Double> = [:]

    package static let defaultMaximum = 50_000
    package static let defaultExpiry = 10_800.0

    package init(maximum: Int = Self.defaultMaximum, expiry: Double = Self.defaultExpiry) {
        self.maximum = max(1, maximum)
        self.expiry = expiry
    }

    /// The ids, oldest first (what `inspect revoked` and `hello` list).
    package var ids: [String] { Array(entries.keys) }
    package var count: Int { entries.count }
    package var isEmpty: Bool { entries.isEmpty }

    /// Whether `id` is revoked and its revoke has not expired.
    package func contains(_ id: String, now: Double) -> Bool {
        guard let at = entries[id] else { return false }
        return expiry <= 0 || now - at < expiry
    }

    /// Adds (or refreshes) `id`, revoked at `at`; the oldest entries go when the set is over its maximum.
    /// Returns whether the id was new.
    @discardableResult
    package mutating func insert(_ id: String, at: Double) -> Bool {
        let isNew = entries.removeValue(forKey: id) == nil
        // Kept in revoke order: an id revoked again moves to the end with its new time.
        entries[id] = at
        if entries.count > maximum {
            purge(now: at)
            if entries.count > maximum { entries.removeFirst(entries.count - maximum) }
        }
        return isNew
    }

    /// Merges ids from another worker (mingle `hello`) or from storage, revoked at `at` unless they are known
    /// already. Returns the ids that were new.
    @discardableResult
    package mutating func merge(_ ids: [String], at: Double) -> [String] {
        var added: [String] = []
        for id in ids where entries[id] == nil {
            if insert(id, at: at) { added.append(id) }
        }
        return added
    }

    /// Merges entries with their own times (from the state file or the broker), keeping the later time of an id
    /// known on both sides; the result stays oldest first.
    package mutating func merge(entries other: [(id: String, at: Double)], now: Double) {
        for (id, at) in other where expiry <= 0 || now - at < expiry {
            if let known = entries[id], known >= at { continue }
            entries[id] = at
        }
        entries.sort { $0.value < $1.value }
        if entries.count > maximum { entries.removeFirst(entries.count - maximum) }
    }

    /// Forgets the revokes older than ``expiry``.
    package mutating func purge(now: Double) {
        guard expiry > 0 else { return }
        entries.removeAll { now - $0.value >= expiry }
    }

    /// Changes the limits (a reload), applying them at once.
    package mutating func setLimits(maximum: Int, expiry: Double, now: Double) {
        self.maximum = max(1, maximum)
        self.expiry = expiry
        purge(now: now)
        if entries.count > self.maximum { entries.removeFirst(entries.count - self.maximum) }
    }
}
