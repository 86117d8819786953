import CSwiftqPlatform

#if canImport(Glibc)
import Glibc
#endif

/// systemd's notification protocol (`Type=notify`): one datagram per notification to `NOTIFY_SOCKET`.
///
/// Outside systemd (`NOTIFY_SOCKET` unset) every call is a cheap no-op, so the daemon calls it
/// unconditionally.
///
/// Why not libsystemd's `sd_notify`: the protocol is one `sendto`, and linking libsystemd mapped it and six
/// libraries it needs (libgcrypt, liblzma, libzstd, liblz4, libcap, libgpg-error) into every swiftqd process,
/// pool children included, only for the supervisor to call two functions; it also ruled out a fully static
/// executable (Debian ships no libsystemd.a).
public struct SystemdNotifier: Sendable {
    /// Creates a notifier for this process.
    public init() {}

    /// Whether a service manager listens (`NOTIFY_SOCKET` is set).
    public var isEnabled: Bool { getenv("NOTIFY_SOCKET") != nil }

    /// Sends newline-separated `KEY=VALUE` assignments. Returns whether a message was sent: false when
    /// `NOTIFY_SOCKET` is unset, names an address this implementation does not speak (`vsock:`), or the
    /// send fails (the daemon carries on either way, as with `sd_notify`).
    @discardableResult
    public func notify(_ assignments: String) -> Bool {
        guard let socket = getenv("NOTIFY_SOCKET") else { return false }
        return Self.send(assignments, to: String(cString: socket))
    }

    /// Sends `assignments` as one datagram to `address` (a path, or `@name` in the abstract namespace).
    static func send(_ assignments: String, to address: String) -> Bool {
        Array(assignments.utf8).withUnsafeBytes { bytes in
            CSwiftqPlatform_notifyServiceManager(address, bytes.baseAddress, bytes.count) == bytes.count
        }
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
    /// and `WATCHDOG_PID` when set names this process), read the way `sd_watchdog_enabled` reads them.
    public var watchdogInterval: Duration? {
        Self.watchdogInterval(
            usec: getenv("WATCHDOG_USEC").map { String(cString: $0) },
            pid: getenv("WATCHDOG_PID").map { String(cString: $0) },
            ownPID: getpid()
        )
    }

    /// The watchdog interval given the values of `WATCHDOG_USEC` and `WATCHDOG_PID` (nil when unset).
    static func watchdogInterval(usec: String?, pid: String?, ownPID: pid_t) -> Duration? {
        guard let usec, let microseconds = UInt64(usec), microseconds > 0 else { return nil }
        if let pid {
            guard let watched = pid_t(pid), watched == ownPID else { return nil }
        }
        return .microseconds(Int64(clamping: microseconds))
    }
}

extension String {
    fileprivate var replacingNewlines: String {
        String(map { $0 == "\n" || $0 == "\r" ? " " : $0 })
    }
}
