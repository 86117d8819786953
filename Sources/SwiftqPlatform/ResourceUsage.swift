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

    /// Creates a usage.
    public init(userSeconds: Double, systemSeconds: Double, maxRSSKiB: Int) {
        self.userSeconds = userSeconds
        self.systemSeconds = systemSeconds
        self.maxRSSKiB = maxRSSKiB
    }

    /// Nothing used yet.
    public static let zero = ResourceUsage(userSeconds: 0, systemSeconds: 0, maxRSSKiB: 0)

    /// Decodes a `struct rusage`.
    init(_ usage: rusage) {
        self.init(
            userSeconds: Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6,
            systemSeconds: Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6,
            maxRSSKiB: usage.ru_maxrss
        )
    }

    /// CPU times added up; the peak RSS is the larger one (as `RUSAGE_CHILDREN` reports the largest child).
    public static func + (lhs: ResourceUsage, rhs: ResourceUsage) -> ResourceUsage {
        ResourceUsage(
            userSeconds: lhs.userSeconds + rhs.userSeconds,
            systemSeconds: lhs.systemSeconds + rhs.systemSeconds,
            maxRSSKiB: max(lhs.maxRSSKiB, rhs.maxRSSKiB)
        )
    }

    /// A live process's usage so far from `/proc/<pid>/stat` (its own CPU time plus that of the children it
    /// reaped) and `/proc/<pid>/status` (`VmHWM`, its peak RSS); nil once it is gone.
    public static func ofLiveProcess(_ pid: pid_t) -> ResourceUsage? {
        guard pid > 0, let stat = readSmallFile("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else {
            return nil
        }
        // Fields after the command name, starting at field 3 (state): utime is field 14, stime 15, cutime 16,
        // cstime 17, in clock ticks.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 15, let utime = Double(fields[11]), let stime = Double(fields[12]),
            let cutime = Double(fields[13]), let cstime = Double(fields[14])
        else { return nil }
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        var peak = 0
        if let status = readSmallFile("/proc/\(pid)/status") {
            for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
                peak = Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
            }
        }
        return ResourceUsage(
            userSeconds: (utime + cutime) / ticks,
            systemSeconds: (stime + cstime) / ticks,
            maxRSSKiB: peak
        )
    }

    /// The 1, 5 and 15 minute load averages. The corresponding C function is `getloadavg`.
    public static func loadAverage() -> [Double] {
        var loads = [Double](repeating: 0, count: 3)
        let count = getloadavg(&loads, 3)
        return count == 3 ? loads : []
    }
}

extension ResourceUsage {
    /// The resident set size of process `pid` in KiB (`VmRSS` in `/proc/<pid>/status`), or nil when it cannot be
    /// read (the process is gone).
    public static func residentKiB(of pid: Int32) -> Int? {
        guard let bytes = try? FileContents.read("/proc/\(pid)/status") else { return nil }
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") where line.hasPrefix("VmRSS:") {
            return Int(line.dropFirst("VmRSS:".count).split(whereSeparator: { $0 == " " || $0 == "\t" }).first ?? "")
        }
        return nil
    }
}
