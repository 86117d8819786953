import Foundation
import SwiftqPlatform

/// A TCP proxy on loopback between swiftqd and its broker, so that the chaos suite can cut or stall swiftqd's
/// connections without touching the broker: ``cut()`` resets every open connection (both sides see ECONNRESET),
/// ``stall(seconds:)`` stops forwarding bytes for a while (the sockets stay open, as behind a dead route).
///
/// One thread accepts; each connection gets one thread that pumps both directions with `poll`. Owner of the
/// connection list: the lock.
final class ChaosProxy: @unchecked Sendable {
    let port: Int
    let upstreamPort: Int
    private let listener: Int32
    private let lock = NSLock()
    private var connections: [(client: Int32, upstream: Int32)] = []
    private var stalled = false
    private var stopped = false
    private var pumps = 0

    init(upstreamPort: Int) throws {
        ignoreBrokenPipes()
        self.upstreamPort = upstreamPort
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var reuse: Int32 = 1
        setsockopt(descriptor, SOL_SOCKET, SO_REUSEADDR, &reuse, socklen_t(MemoryLayout<Int32>.size))
        var address = Self.loopback(port: 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(descriptor, pointer, length) == 0 && getsockname(descriptor, pointer, &length) == 0
            }
        }
        guard bound, listen(descriptor, 64) == 0 else {
            close(descriptor)
            throw TestSetupError("the chaos proxy cannot listen: errno \(errno)")
        }
        listener = descriptor
        port = Int(UInt16(bigEndian: address.sin_port))
        Thread { [self] in acceptLoop() }.start()
    }

    deinit {
        stop()
    }

    /// Stops accepting and resets every connection.
    func stop() {
        let first = lock.withLock {
            defer { stopped = true }
            return !stopped
        }
        guard first else { return }
        cut()
        // The accept loop polls with a timeout and sees `stopped`; it closes the listener.
        _ = eventually(timeout: 5) { lock.withLock { pumps == 0 } }
    }

    /// Resets every open connection (SO_LINGER 0, then shutdown): both ends see the connection fail at once.
    /// Returns how many connections were cut.
    @discardableResult
    func cut() -> Int {
        let open = lock.withLock { connections }
        for (client, upstream) in open {
            for descriptor in [client, upstream] {
                var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
                setsockopt(descriptor, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
                shutdown(descriptor, Int32(SHUT_RDWR))
            }
        }
        return open.count
    }

    /// Stops forwarding for `seconds` (bytes wait in the kernel's buffers), then forwards again.
    func stall(seconds: Double) {
        beginStall()
        Thread.sleep(forTimeInterval: seconds)
        endStall()
    }

    /// Stops forwarding until ``endStall()``.
    func beginStall() { lock.withLock { stalled = true } }

    func endStall() { lock.withLock { stalled = false } }

    var openConnections: Int { lock.withLock { connections.count } }

    private static func loopback(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        return address
    }

    private func acceptLoop() {
        defer { close(listener) }
        while !lock.withLock({ stopped }) {
            var poller = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, 100) > 0 else { continue }
            let client = accept(listener, nil, nil)
            guard client >= 0 else { continue }
            _ = fcntl(client, F_SETFD, FD_CLOEXEC)
            let upstream = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            var address = Self.loopback(port: upstreamPort)
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(upstream, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
                }
            }
            guard connected else {
                // The broker is down (being restarted): swiftqd sees its connection refused, as it would directly.
                var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
                setsockopt(client, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
                close(client)
                close(upstream)
                continue
            }
            let accepted = lock.withLock {
                if stopped { return false }
                connections.append((client, upstream))
                pumps += 1
                return true
            }
            guard accepted else {
                close(client)
                close(upstream)
                continue
            }
            Thread { [self] in pump(client: client, upstream: upstream) }.start()
        }
    }

    /// Copies bytes both ways until either side ends or fails, then closes both.
    private func pump(client: Int32, upstream: Int32) {
        defer {
            lock.withLock {
                connections.removeAll { $0.client == client }
                pumps -= 1
            }
            close(client)
            close(upstream)
        }
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            if lock.withLock({ stalled }) {
                // Nothing is read while stalled; a reset during the stall still ends the connection.
                var probes = [
                    pollfd(fd: client, events: 0, revents: 0), pollfd(fd: upstream, events: 0, revents: 0),
                ]
                _ = poll(&probes, 2, 50)
                if probes.contains(where: { $0.revents & Int16(POLLERR | POLLHUP) != 0 }) { return }
                continue
            }
            var fds = [
                pollfd(fd: client, events: Int16(POLLIN), revents: 0),
                pollfd(fd: upstream, events: Int16(POLLIN), revents: 0),
            ]
            let ready = poll(&fds, 2, 100)
            if ready < 0 && errno != EINTR { return }
            guard ready > 0 else { continue }
            for (index, entry) in fds.enumerated() where entry.revents != 0 {
                let from = index == 0 ? client : upstream
                let to = index == 0 ? upstream : client
                let count = read(from, &buffer, buffer.count)
                if count <= 0 { return }
                var offset = 0
                while offset < count {
                    let written = buffer.withUnsafeBytes { write(to, $0.baseAddress! + offset, count - offset) }
                    if written <= 0 {
                        if written < 0 && errno == EINTR { continue }
                        return
                    }
                    offset += written
                }
            }
        }
    }
}
