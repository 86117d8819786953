import CSwiftqPlatform

#if canImport(Glibc)
import Glibc
#endif

/// Who is on the other end of a unix socket, as the kernel saw it at `connect` time.
public struct PeerCredentials: Equatable, Sendable {
    /// Process id of the peer.
    public var pid: pid_t
    /// Effective user id of the peer.
    public var uid: uid_t
    /// Effective group id of the peer.
    public var gid: gid_t

    /// Reads `SO_PEERCRED`. The corresponding C function is `getsockopt`.
    public init(of fd: CInt) throws(SystemError) {
        var pid: pid_t = 0
        var uid: uid_t = 0
        var gid: gid_t = 0
        if CSwiftqPlatform_peerCredentials(fd, &pid, &uid, &gid) != 0 { throw SystemError.current("SO_PEERCRED") }
        self.pid = pid
        self.uid = uid
        self.gid = gid
    }
}

extension PeerCredentials {
    /// The peer's supplementary groups, as the kernel recorded them at `connect` time (`SO_PEERGROUPS`,
    /// which needs no access to the peer's `/proc` entry, so it works under `ProtectProc=invisible`).
    /// The corresponding C function is `getsockopt`.
    public static func supplementaryGroups(of fd: CInt) throws(SystemError) -> [gid_t] {
        var groups = [gid_t](repeating: 0, count: 256)
        var count = CSwiftqPlatform_peerGroups(fd, &groups, CInt(groups.count))
        if count < 0 { throw SystemError.current("SO_PEERGROUPS") }
        if Int(count) > groups.count {
            groups = [gid_t](repeating: 0, count: Int(count))
            count = CSwiftqPlatform_peerGroups(fd, &groups, CInt(groups.count))
            if count < 0 { throw SystemError.current("SO_PEERGROUPS") }
        }
        return Array(groups.prefix(Int(count)))
    }
}

/// Unix-domain stream sockets: the control socket's listener and its client.
public enum UnixSocket {
    /// The longest path `sockaddr_un` holds (107 bytes plus the terminating NUL).
    public static let maximumPathLength = 107

    /// Binds and listens on `path`, non-blocking, close-on-exec; a stale socket file left by a dead
    /// daemon is replaced, but a path where another daemon still answers is an error (`EADDRINUSE`).
    /// The file gets `mode`, and `group` when given. The corresponding C functions are `bind`, `listen`,
    /// `chmod` and `chown`.
    public static func listen(path: String, mode: mode_t, group: gid_t?, backlog: Int32 = 64) throws(SystemError)
        -> CInt
    {
        if let probe = try? connect(path: path) {
            Descriptors.close(probe)
            throw SystemError("bind \(path) (another process is serving it)", errno: EADDRINUSE)
        }
        unlink(path)
        let fd = try retryingInterrupts("socket") {
            socket(
                AF_UNIX,
                Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue),
                0
            )
        }
        do throws(SystemError) {
            var address = try socketAddress(path)
            // Create the file with no access at all, then open it up: no window in which it is wider
            // than configured.
            let oldMask = umask(0o777)
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
                }
            }
            umask(oldMask)
            if bound != 0 { throw SystemError.current("bind \(path)") }
            if let group, chown(path, uid_t.max, group) != 0 { throw SystemError.current("chown \(path)") }
            if chmod(path, mode) != 0 { throw SystemError.current("chmod \(path)") }
            if Glibc.listen(fd, backlog) != 0 { throw SystemError.current("listen \(path)") }
            return fd
        } catch {
            Descriptors.close(fd)
            throw error
        }
    }

    /// Accepts one pending connection, non-blocking and close-on-exec; nil when none is pending.
    public static func accept(_ listener: CInt) throws(SystemError) -> CInt? {
        while true {
            let fd = Glibc.accept(listener, nil, nil)
            if fd >= 0 {
                _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
                try Descriptors.setNonBlocking(fd)
                return fd
            }
            switch errno {
            case EINTR: continue
            case EAGAIN, ECONNABORTED: return nil
            default: throw SystemError.current("accept")
            }
        }
    }

    /// Connects to `path` (blocking, close-on-exec). The corresponding C function is `connect`.
    public static func connect(path: String) throws(SystemError) -> CInt {
        let fd = try retryingInterrupts("socket") {
            socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        }
        do throws(SystemError) {
            var address = try socketAddress(path)
            let result = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
                }
            }
            if result != 0 { throw SystemError.current("connect \(path)") }
            return fd
        } catch {
            Descriptors.close(fd)
            throw error
        }
    }

    private static func socketAddress(_ path: String) throws(SystemError) -> sockaddr_un {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count <= maximumPathLength else {
            throw SystemError("socket path \(path) (longer than \(maximumPathLength) bytes)", errno: ENAMETOOLONG)
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
        }
        return address
    }
}
