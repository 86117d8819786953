import CSystemd

#if canImport(Glibc)
import Glibc
#endif

/// systemd's notification protocol (`Type=notify`), through libsystemd: the only importer of `CSystemd`.
///
/// Outside systemd (`NOTIFY_SOCKET` unset) every call is a cheap no-op, so the daemon calls it
/// unconditionally.
public struct SystemdNotifier: Sendable {
    /// Creates a notifier for this process.
    public init() {}

    /// Whether a service manager listens (`NOTIFY_SOCKET` is set).
    public var isEnabled: Bool { getenv("NOTIFY_SOCKET") != nil }

    /// Sends newline-separated `KEY=VALUE` assignments. Returns whether a message was sent.
    /// The corresponding C function is `sd_notify`.
    @discardableResult
    public func notify(_ assignments: String) -> Bool {
        sd_notify(0, assignments) > 0
    }

    /// `READY=1` with a status line.
    public func ready(status: String) {
        notify("READY=1\nSTATUS=\(status)")
    }

    /// `STATUS=` line (one line: newlines are replaced).
    public func status(_ text: String) {
        notify("STATUS=\(text.replacingNewlines)")
    }

    /// `RELOADING=1` with `MONOTONIC_USEC=`, as `Type=notify-reload` expects and `Type=notify` accepts.
    public func reloading() {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let microseconds = UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1000
        notify("RELOADING=1\nMONOTONIC_USEC=\(microseconds)")
    }

    /// `STOPPING=1` with a status line.
    public func stopping(status: String) {
        notify("STOPPING=1\nSTATUS=\(status)")
    }

    /// `WATCHDOG=1`: the service is alive and healthy.
    public func watchdog() {
        notify("WATCHDOG=1")
    }

    /// The watchdog interval systemd expects, if the watchdog is on for this process (`WATCHDOG_USEC`,
    /// and `WATCHDOG_PID` when set names this process). The corresponding C function is
    /// `sd_watchdog_enabled`.
    public var watchdogInterval: Duration? {
        var microseconds: UInt64 = 0
        guard sd_watchdog_enabled(0, &microseconds) > 0, microseconds > 0 else { return nil }
        return .microseconds(Int64(clamping: microseconds))
    }
}

extension String {
    fileprivate var replacingNewlines: String {
        String(map { $0 == "\n" || $0 == "\r" ? " " : $0 })
    }
}
