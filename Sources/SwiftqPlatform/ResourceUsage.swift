import SwiftqCore

#if canImport(Glibc)
import Glibc
#endif

/// CPU time and peak memory, as `getrusage` reports them.
public struct ResourceUsage: Sendable {
    /// Whose usage.
    public enum Who: Sendable {
        /// This process.
        case process
        /// Its reaped children, together.
        case children
    }

    /// User CPU seconds.
    public var userSeconds: Double
    /// System CPU seconds.
    public var systemSeconds: Double
    /// Peak resident set size in KiB (for `children`, the largest single child).
    public var maxRSSKiB: Int

    /// Reads the current usage. The corresponding C function is `getrusage`.
    public static func current(_ who: Who) -> ResourceUsage {
        var usage = rusage()
        _ = getrusage(Int32((who == .process ? RUSAGE_SELF : RUSAGE_CHILDREN).rawValue), &usage)
        return ResourceUsage(
            userSeconds: Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6,
            systemSeconds: Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6,
            maxRSSKiB: usage.ru_maxrss
        )
    }

    /// As JSON for `stats`.
    public var json: JSONValue {
        .object([
            "utime": .double(userSeconds), "stime": .double(systemSeconds), "maxrss_kib": .int(Int64(maxRSSKiB)),
        ])
    }

    /// The 1, 5 and 15 minute load averages. The corresponding C function is `getloadavg`.
    public static func loadAverage() -> [Double] {
        var loads = [Double](repeating: 0, count: 3)
        let count = getloadavg(&loads, 3)
        return count == 3 ? loads : []
    }
}
