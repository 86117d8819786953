import OrderedCollections
import SwiftqCore
import SwiftqPool

/// Revokes (Celery's `revoke`, `terminate`, `revoke_by_stamped_headers`, mingle merges): a revoked id is never
/// started here, whether it is reserved, held for its ETA, or arrives later; a running one is ended when asked.
package extension DeliveryMachine {
    /// Whether `message` must not run: its id is revoked (and the revoke has not expired), or one of its stamps is.
    func isRevoked(_ message: TaskMessage, now: CeleryTimestamp) -> Bool {
        if revoked.contains(message.id, now: now.secondsSince1970) { return true }
        guard !revokedStamps.isEmpty, let stamps = message.headers["stamps"]?.objectValue else { return false }
        return stamps.contains { header, value in Self.stampMatches(value, revokedStamps[header]) }
    }

    /// Whether a message's stamp value (one value or a list) is among the revoked values of its header.
    static func stampMatches(_ value: JSONValue, _ revokedValues: [JSONValue]?) -> Bool {
        guard let revokedValues, !revokedValues.isEmpty else { return false }
        let values = value.arrayValue ?? [value]
        return values.contains { revokedValues.contains($0) }
    }

    /// Revokes tasks: a held or ready one is finished as REVOKED at once (result stored, message acked), a running
    /// one is signalled when `terminate` is set (it ends REVOKED `terminated`), and any that arrives later is
    /// finished on receipt.
    mutating func revoke(
        _ ids: [String],
        terminate: Bool,
        signal: Int32,
        now: CeleryTimestamp
    ) -> [Action] {
        var actions: [Action] = []
        var unheld: [String] = []
        for id in ids {
            revoked.insert(id, at: now.secondsSince1970)
            if let key = running[id] {
                if terminate {
                    actions.append(.terminate(jobID: id, signal: signal, reason: .terminated(signal: signal)))
                } else if deliveries[key]?.timeStart == nil {
                    // Waiting in a pool child's queue, not started: it comes back (``PoolEvent/returned``) and
                    // ends REVOKED there.
                    actions.append(.withdraw(jobID: id))
                }
                continue
            }
            let waiting = keys(where: { $0.message.id == id })
            if waiting.isEmpty { unheld.append(id) }
            finishWaiting(waiting, now: now, into: &actions)
        }
        if settings.storesResults && !unheld.isEmpty {
            // Celery 5.7's `_revoke`: an id this worker does not hold is marked REVOKED in the backend, unless its
            // state says it is done or started elsewhere (checked where the backend is, ``RevokedResults``).
            var plan = Settlement(disposition: .none)
            plan.revokedUnlessStarted = unheld.map { RevokedResults.result(taskID: $0, now: now) }
            settle(plan, into: &actions)
        }
        return actions
    }

    /// One id (the older entry point).
    mutating func revoke(_ taskID: String, terminate: Bool, signal: Int32, now: CeleryTimestamp) -> [Action] {
        revoke([taskID], terminate: terminate, signal: signal, now: now)
    }

    /// Ids another node revoked (mingle `hello`, the broker's revoke list, the state file): remembered, and any
    /// that waits here is finished as REVOKED. Never terminates a running task.
    mutating func mergeRevoked(_ entries: [(id: String, at: Double)], now: CeleryTimestamp) -> [Action] {
        guard !entries.isEmpty else { return [] }
        revoked.merge(entries: entries, now: now.secondsSince1970)
        var actions: [Action] = []
        let ids = Set(entries.map(\.id))
        let keys = keys(where: { ids.contains($0.message.id) && isRevoked($0.message, now: now) })
        finishWaiting(keys, now: now, into: &actions)
        withdrawQueued(keys, into: &actions)
        return actions
    }

    /// Asks the pool back for those of `keys` that wait in a child's queue unstarted (they end REVOKED when they
    /// come back).
    private func withdrawQueued(_ keys: [UInt64], into actions: inout [Action]) {
        for key in keys {
            guard let delivery = deliveries[key], delivery.state == .running, delivery.timeStart == nil else {
                continue
            }
            actions.append(.withdraw(jobID: delivery.message.id))
        }
    }

    /// Revokes by stamped header values; running tasks that carry one are signalled when `terminate` is set.
    /// Returns the actions and, per header, the values of the running tasks it terminated.
    mutating func revokeStamped(
        _ headers: OrderedDictionary<String, [JSONValue]>,
        terminate: Bool,
        signal: Int32,
        now: CeleryTimestamp
    ) -> (actions: [Action], terminated: OrderedDictionary<String, [JSONValue]>) {
        for (header, values) in headers {
            var known = revokedStamps[header] ?? []
            for value in values where !known.contains(value) { known.append(value) }
            revokedStamps[header] = known
        }
        var actions: [Action] = []
        var terminated: OrderedDictionary<String, [JSONValue]> = [:]
        if terminate {
            for (id, key) in running.sorted(by: { $0.value < $1.value }) {
                guard let stamps = deliveries[key]?.message.headers["stamps"]?.objectValue else { continue }
                var hit = false
                for (header, values) in headers {
                    guard let value = stamps[header] else { continue }
                    for stamp in value.arrayValue ?? [value] where values.contains(stamp) {
                        hit = true
                        if !(terminated[header]?.contains(stamp) ?? false) {
                            terminated[header, default: []].append(stamp)
                        }
                    }
                }
                if hit { actions.append(.terminate(jobID: id, signal: signal, reason: .terminated(signal: signal))) }
            }
        }
        let revokedKeys = keys(where: { isRevoked($0.message, now: now) })
        finishWaiting(revokedKeys, now: now, into: &actions)
        if !terminate { withdrawQueued(revokedKeys, into: &actions) }
        return (actions, terminated)
    }

    /// The deliveries that `matches`, oldest first.
    private func keys(where matches: (Delivery) -> Bool) -> [UInt64] {
        deliveries.values.filter(matches).map(\.key).sorted()
    }

    /// Finishes as REVOKED the held or ready deliveries among `keys`.
    private mutating func finishWaiting(_ keys: [UInt64], now: CeleryTimestamp, into actions: inout [Action]) {
        for key in keys {
            guard let delivery = deliveries[key] else { continue }
            switch delivery.state {
            case .held(let timer):
                heldByTimer[timer] = nil
                actions.append(.cancelTimer(token: timer))
                actions.append(.setHeldForETA(heldOutsideWindow))
                if let tag = delivery.tag { actions.append(.setRunning(tag: tag, false)) }
            case .ready:
                ready.removeAll { $0 == delivery.key }
                unpark(delivery, into: &actions)
            case .running, .settling:
                continue
            }
            deliveries[delivery.key] = nil
            finishRevoked(delivery, reason: "revoked", now: now, into: &actions)
        }
    }

    /// New revoke limits (`worker.revokes_max`, `worker.revokes_expire`).
    mutating func setRevokeLimits(maximum: Int, expiry: Double, now: CeleryTimestamp) {
        revoked.setLimits(maximum: maximum, expiry: expiry, now: now.secondsSince1970)
    }

    /// Forgets expired revokes (Celery purges on `hello` and on state syncs).
    mutating func purgeRevoked(now: CeleryTimestamp) {
        revoked.purge(now: now.secondsSince1970)
    }
}
