import CSwiftqPlatform
import SwiftqCore

#if canImport(Glibc)
import Glibc
#endif

/// A counting semaphore with a timed wait measured on `CLOCK_MONOTONIC`, so a step of the wall clock
/// (NTP, an administrator's `date`) neither stretches nor shortens it.
public final class Semaphore: @unchecked Sendable {
    // sem_t must not move: it lives in its own allocation for the object's lifetime.
    private let semaphore = UnsafeMutablePointer<sem_t>.allocate(capacity: 1)

    /// Creates a semaphore with a count of zero. The corresponding C function is `sem_init`.
    public init() {
        sem_init(semaphore, 0, 0)
    }

    deinit {
        sem_destroy(semaphore)
        semaphore.deallocate()
    }

    /// Adds one to the count, waking one waiter. The corresponding C function is `sem_post`.
    public func post() {
        ThroughputCounters.shared.threadWokeUp()
        sem_post(semaphore)
    }

    /// Waits until the count is above zero (and takes one) or `timeout` passes; returns whether it was
    /// posted. Signals do not end the wait early. The corresponding C function is `sem_clockwait` with
    /// `CLOCK_MONOTONIC`.
    @discardableResult
    public func wait(timeout: Duration) -> Bool {
        let (seconds, attoseconds) = max(timeout, .zero).components
        // About 292 years of nanoseconds fit in an Int64: clamp rather than overflow.
        let (wholeNanoseconds, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        let nanoseconds =
            overflow ? Int64.max : wholeNanoseconds.addingReportingOverflow(attoseconds / 1_000_000_000).partialValue
        return CSwiftqPlatform_semaphoreWait(semaphore, max(0, nanoseconds)) == 0
    }
}
