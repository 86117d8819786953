#if canImport(Glibc)
import Glibc
#endif

/// The `oom_kill` counter of this process's memory cgroup, to tell an OOM kill from any other SIGKILL.
///
/// cgroup v2 keeps it in `memory.events`; cgroup v1 (and the v1 memory controller of a hybrid host) in
/// `memory.oom_control` (kernels ≥ 4.13). Both files have an `oom_kill N` line. The cgroup is read once from
/// `/proc/self/cgroup`: the v1 `N:memory:/path` line wins over the v2 `0::/path` line, because on a hybrid host
/// the memory controller is the v1 one and the v2 tree then has no `memory.events`. Without either readable file
/// (a container without the controller), ``current()`` returns nil and callers skip the check.
public struct CgroupMemory: Sendable {
    /// The file with the `oom_kill` line: `…/memory.events` (v2) or `…/memory.oom_control` (v1).
    public let eventsPath: String

    public init(eventsPath: String) {
        self.eventsPath = eventsPath
    }

    /// This process's memory cgroup, or nil without a readable `oom_kill` counter.
    public static func current() -> CgroupMemory? {
        guard let text = readSmallFile("/proc/self/cgroup") else { return nil }
        for candidate in candidates(procSelfCgroup: text) {
            let memory = CgroupMemory(eventsPath: candidate)
            if memory.oomKills() != nil { return memory }
        }
        return nil
    }

    /// The counter files to try for a `/proc/self/cgroup` text, best first, under `root` (`/sys/fs/cgroup`).
    public static func candidates(procSelfCgroup text: String, root: String = "/sys/fs/cgroup") -> [String] {
        var v1: [String] = []
        var v2: [String] = []
        for line in text.split(separator: "\n") {
            // "hierarchy-id:controller-list:path"; the path may itself contain ':'.
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3 else { continue }
            let path = fields[2] == "/" ? "" : String(fields[2])
            if fields[0] == "0" && fields[1].isEmpty {
                v2.append(root + path + "/memory.events")
            } else if fields[1].split(separator: ",").contains("memory") {
                v1.append(root + "/memory" + path + "/memory.oom_control")
            }
        }
        return v1 + v2
    }

    /// The cgroup's `oom_kill` count now, or nil when it cannot be read.
    public func oomKills() -> Int? {
        guard let text = readSmallFile(eventsPath) else { return nil }
        return Self.oomKills(in: text)
    }

    /// The `oom_kill` count in the text of a `memory.events` or `memory.oom_control` file.
    public static func oomKills(in text: String) -> Int? {
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
