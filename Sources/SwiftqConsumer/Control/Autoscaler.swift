/// Celery's autoscaler (celery/worker/autoscale.py), as a decision without I/O: between `minimum` and `maximum`
/// children, the pool grows at once to cover the tasks waiting or running, and shrinks towards the busy count (never
/// below `minimum`) once it has not needed to grow for ``keepalive`` seconds.
package struct Autoscaler: Equatable, Sendable {
    package var maximum: Int
    package var minimum: Int
    /// Seconds without growth before the pool shrinks (Celery's `AUTOSCALE_KEEPALIVE` is 30; a worker that idles
    /// gives its children back sooner here).
    package var keepalive: Double = 5
    /// When the pool last grew (or autoscale was set).
    package private(set) var lastScaled: Double

    package init(maximum: Int, minimum: Int, now: Double) {
        self.maximum = max(1, maximum)
        self.minimum = min(max(0, minimum), self.maximum)
        lastScaled = now
    }

    /// The pool size wanted now, given the current size, the running tasks and those waiting for a child.
    package mutating func target(current: Int, busy: Int, waiting: Int, now: Double) -> Int {
        let wanted = min(maximum, max(minimum, busy + waiting, 1))
        if wanted > current {
            lastScaled = now
            return wanted
        }
        if current > maximum { return maximum }
        if wanted < current && now - lastScaled >= keepalive {
            lastScaled = now
            return max(wanted, minimum, 1)
        }
        return max(current, min(minimum, maximum), 1)
    }
}
