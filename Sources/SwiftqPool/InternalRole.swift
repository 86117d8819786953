#if canImport(Glibc)
import Glibc
#endif

/// Internal role arguments: `swiftqd` re-executes itself with one of these as its first argument.
/// They are not for people (leading underscore) and not documented in the man page.
public enum InternalRole {
    /// A consumer process.
    public static let consumer = "_consumer"
    /// A prefork pool child.
    public static let poolChild = "_pool-child"
    /// Arms the parent-death signal, then execs the rest of the command line (for helper programs such
    /// as the embedded broker's redis-server, which cannot arm it themselves).
    public static let exec = "_exec"
    /// The embedded beat scheduler (Supervisor+Beat.swift, Beat/BeatProcess.swift).
    public static let beat = "_beat"
}

/// Seconds since the epoch, for timestamps shown to people.
package func wallClockSeconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}
