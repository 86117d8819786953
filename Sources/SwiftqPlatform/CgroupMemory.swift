#if canImport(Glibc)
import Glibc
#endif

/// The `oom_kill` counter of this process's cgroup v2 (`memory.events`), to tell an OOM kill from any
/// other SIGKILL.
///
/// The cgroup is read once from `/proc/self/cgroup` (the `0::/path` line); without cgroup v2, or without a
/// readable `memory.events` (a v1 or hybrid host, a container without the controller), ``oomKills()``
/// returns nil and callers skip the check.
public struct CgroupMemory: Sendable {
    /// `/sys/fs/cgroup/<path>/memory.events`.
    public let eventsPath: String

    /// This process's cgroup, or nil without cgroup v2 memory accounting.
    public static func current() -> CgroupMemory? {
        guard let text = readSmallFile("/proc/self/cgroup") else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("0::") {
            let path = line.dropFirst(3)
            let events = "/sys/fs/cgroup" + (path == "/" ? "" : String(path)) + "/memory.events"
            let memory = CgroupMemory(eventsPath: events)
            return memory.oomKills() == nil ? nil : memory
        }
        return nil
    }

    /// The cgroup's `oom_kill` count now, or nil when it cannot be read.
    public func oomKills() -> Int? {
        guard let text = readSmallFile(eventsPath) else { return nil }
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ")
            if fields.count == 2 && fields[0] == "oom_kill" { return Int(fields[1]) }
        }
        return nil
    }
}

/// The whole of a small text file (a /proc or /sys entry), or nil. The corresponding C functions are `open`
/// and `read`.
func readSmallFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, 4096) }
        if count > 0 {
            bytes += buffer[0..<count]
        } else if count == -1 && errno == EINTR {
            continue
        } else if count == 0 {
            return String(decoding: bytes, as: UTF8.self)
        } else {
            return nil
        }
        if bytes.count > 1 << 20 { return nil }
    }
}
