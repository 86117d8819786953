#if canImport(Glibc)
import Glibc
#endif

/// TCP listening sockets (IPv4), for the monitoring listener. Accepting is ``UnixSocket/accept(_:)``, which works
/// on any stream socket.
public enum TCPSocket {
    /// Binds and listens on `host:port` (an IPv4 address), non-blocking, close-on-exec, with `SO_REUSEADDR` so that
    /// a restart does not wait for old connections' `TIME_WAIT`. The C functions are `socket`, `bind`, `listen`.
    public static func listen(host: String, port: UInt16, backlog: Int32 = 64) throws(SystemError) -> CInt {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else {
            throw SystemError("bind \(host):\(port) (not an IPv4 address)", errno: EINVAL)
        }
        let fd = try retryingInterrupts("socket") {
            socket(
                AF_INET,
                Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue),
                0
            )
        }
        do throws(SystemError) {
            var one: CInt = 1
            _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<CInt>.size))
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            if bound != 0 { throw SystemError.current("bind \(host):\(port)") }
            if Glibc.listen(fd, backlog) != 0 { throw SystemError.current("listen \(host):\(port)") }
            return fd
        } catch {
            Descriptors.close(fd)
            throw error
        }
    }
}
