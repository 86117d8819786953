import DequeModule
import SwiftqCore

/// A token bucket that holds one token, as Celery's rate limits do: the first task starts at once, then one per
/// interval (`1 / rate` seconds). Pure: time comes in as an argument.
package struct TokenBucket: Equatable, Sendable {
    /// Tokens per second.
    package var rate: Double
    package var tokens = 1.0
    /// When ``tokens`` was last brought up to date (seconds since 1970).
    package var updated: Double?

    package init(rate: Double) { self.rate = rate }

    /// Takes a token if there is one at `now`; otherwise returns how many seconds until there is.
    package mutating func take(now: Double) -> Double? {
        refill(now: now)
        if tokens >= 1 - 1e-9 {
            tokens -= 1
            return nil
        }
        return (1 - tokens) / rate
    }

    /// Seconds until a token is there at `now` (0: now).
    package mutating func wait(now: Double) -> Double {
        refill(now: now)
        return tokens >= 1 - 1e-9 ? 0 : (1 - tokens) / rate
    }

    private mutating func refill(now: Double) {
        if let updated { tokens = min(1, tokens + max(0, now - updated) * rate) }
        updated = now
    }
}

extension DeliveryMachine {
    /// Changes the rate limit of task `name` from now on (tasks per second; nil or 0 removes it), overriding the
    /// configuration until the worker restarts: what Celery's `rate_limit` control command does. Deliveries that
    /// were waiting for a token are re-examined on the next dispatch.
    package mutating func setRateLimit(task name: String, rate: Double?) -> [Action] {
        overrides[name, default: PolicyOverride()].rateLimit = rate ?? 0
        buckets[name] = nil
        var actions: [Action] = []
        if let token = rateTimerByName.removeValue(forKey: name) {
            rateTimers[token] = nil
            actions.append(.cancelTimer(token: token))
        }
        // Give the waiting ones back to the ready queue, oldest first, ahead of the rest.
        if let waiting = parked.removeValue(forKey: name) {
            parkedCount -= waiting.count
            for key in waiting.reversed() {
                ready.prepend(key)
                if let tag = deliveries[key]?.tag { actions.append(.setRunning(tag: tag, false)) }
            }
            actions.append(.setHeldForETA(heldOutsideWindow))
        }
        return actions
    }

    /// Whether `delivery` may start now under its task's rate limit; if not, it waits (parked) for a token without
    /// holding up tasks of other names, and outside the prefetch window.
    mutating func takeToken(_ delivery: Delivery, now: CeleryTimestamp, into actions: inout [Action]) -> Bool {
        let name = delivery.message.name
        guard let rate = policy(for: name).rateLimit, rate > 0 else { return true }
        // Older deliveries of the name wait first: a newer one never overtakes them (the one a timer released is the
        // oldest).
        let released = releasedByRate.remove(delivery.key) != nil
        if !released && (parked[name]?.isEmpty == false || rateTimerByName[name] != nil) {
            park(delivery, into: &actions)
            return false
        }
        var bucket = buckets[name] ?? TokenBucket(rate: rate)
        bucket.rate = rate
        let taken = bucket.take(now: now.secondsSince1970) == nil
        buckets[name] = bucket
        if !taken { park(delivery, into: &actions) }
        return taken
    }

    private mutating func park(_ delivery: Delivery, into actions: inout [Action]) {
        parked[delivery.message.name, default: []].append(delivery.key)
        parkedCount += 1
        actions.append(.setHeldForETA(heldOutsideWindow))
        // Kept visible (Redis) while it waits, as a held ETA task is.
        if let tag = delivery.tag { actions.append(.setRunning(tag: tag, true)) }
    }

    /// Starts a timer for every name with waiting deliveries and none running, for when its next token is there.
    mutating func startRateTimers(now: CeleryTimestamp, into actions: inout [Action]) {
        for (name, waiting) in parked where !waiting.isEmpty && rateTimerByName[name] == nil {
            let rate = policy(for: name).rateLimit ?? 0
            var bucket = buckets[name] ?? TokenBucket(rate: max(rate, 1e-9))
            let wait = bucket.wait(now: now.secondsSince1970)
            buckets[name] = bucket
            let token = nextTimer
            nextTimer += 1
            rateTimers[token] = name
            rateTimerByName[name] = token
            actions.append(.startTimer(token: token, seconds: wait))
        }
    }

    /// A name's next token is there: its oldest waiting delivery goes first in line (the dispatch takes the token).
    mutating func rateTimerFired(_ name: String) -> [Action] {
        rateTimerByName[name] = nil
        guard var waiting = parked[name], let key = waiting.popFirst() else { return [] }
        parked[name] = waiting.isEmpty ? nil : waiting
        parkedCount -= 1
        var actions: [Action] = [.setHeldForETA(heldOutsideWindow)]
        if let tag = deliveries[key]?.tag { actions.append(.setRunning(tag: tag, false)) }
        ready.prepend(key)
        releasedByRate.insert(key)
        return actions
    }

    /// A revoked delivery leaves its rate-limit wait.
    mutating func unpark(_ delivery: Delivery, into actions: inout [Action]) {
        let name = delivery.message.name
        guard var waiting = parked[name], let index = waiting.firstIndex(of: delivery.key) else { return }
        waiting.remove(at: index)
        parked[name] = waiting.isEmpty ? nil : waiting
        parkedCount -= 1
        actions.append(.setHeldForETA(heldOutsideWindow))
    }

    /// Shutdown: the waits end (their deliveries are given back with the other reserved ones).
    mutating func clearRateLimitWaits(into actions: inout [Action]) {
        for token in rateTimers.keys { actions.append(.cancelTimer(token: token)) }
        rateTimers = [:]
        rateTimerByName = [:]
        for key in parked.values.joined() {
            if let tag = deliveries[key]?.tag { actions.append(.setRunning(tag: tag, false)) }
        }
        parked = [:]
        parkedCount = 0
    }
}
