import Foundation
import Testing

@testable import SwiftqPlatform

#if canImport(Glibc)
import Glibc
#endif

/// The notification datagram is written by swiftq itself (no libsystemd): check it against a real
/// datagram socket, for both address forms systemd hands out.
@Suite struct SystemdNotifierTests {
    /// A bound datagram socket; `name` is a path, or starts with `@` for the abstract namespace.
    final class Receiver {
        let fd: CInt

        init(name: String) throws {
            fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            #expect(fd >= 0)
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            let bytes = Array(name.utf8)
            withUnsafeMutableBytes(of: &address.sun_path) { path in
                for (index, byte) in bytes.enumerated() { path[index] = byte }
                if name.hasPrefix("@") { path[0] = 0 }
            }
            let length = MemoryLayout<sa_family_t>.size + bytes.count + (name.hasPrefix("@") ? 0 : 1)
            let result = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(length)) }
            }
            #expect(result == 0, "bind \(name): errno \(errno)")
            var timeout = timeval(tv_sec: 5, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        }

        func receive() -> String? {
            var buffer = [UInt8](repeating: 0, count: 4096)
            let count = recv(fd, &buffer, buffer.count, 0)
            return count < 0 ? nil : String(decoding: buffer[..<count], as: UTF8.self)
        }

        deinit { close(fd) }
    }

    @Test func sendsToAnAbstractSocket() throws {
        let name = "@swiftq-notify-test-\(getpid())-\(UInt32.random(in: 0 ... .max))"
        let receiver = try Receiver(name: name)
        #expect(SystemdNotifier.send("READY=1\nSTATUS=ok", to: name))
        #expect(receiver.receive() == "READY=1\nSTATUS=ok")
    }

    @Test func sendsToAPathSocket() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("swiftq-notify-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("notify").path
        let receiver = try Receiver(name: path)
        #expect(SystemdNotifier.send("WATCHDOG=1", to: path))
        #expect(receiver.receive() == "WATCHDOG=1")
    }

    @Test func refusesAddressesItDoesNotSpeak() {
        #expect(!SystemdNotifier.send("READY=1", to: "vsock:2:1234"))
        #expect(!SystemdNotifier.send("READY=1", to: "relative/path"))
        #expect(!SystemdNotifier.send("READY=1", to: "/nonexistent-swiftq-dir/notify"))
    }

    @Test func watchdogIntervalFollowsSdWatchdogEnabled() {
        #expect(SystemdNotifier.watchdogInterval(usec: nil, pid: nil, ownPID: 42) == nil)
        #expect(SystemdNotifier.watchdogInterval(usec: "0", pid: nil, ownPID: 42) == nil)
        #expect(SystemdNotifier.watchdogInterval(usec: "junk", pid: nil, ownPID: 42) == nil)
        #expect(SystemdNotifier.watchdogInterval(usec: "400000", pid: nil, ownPID: 42) == .milliseconds(400))
        #expect(SystemdNotifier.watchdogInterval(usec: "400000", pid: "42", ownPID: 42) == .milliseconds(400))
        // The watchdog is meant for another process (e.g. the variables leaked into a child).
        #expect(SystemdNotifier.watchdogInterval(usec: "400000", pid: "43", ownPID: 42) == nil)
    }
}
