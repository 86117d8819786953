import Foundation
import SwiftqRedis
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A private `redis-server` for one test: its own temporary directory and unix socket (and, when asked, a TCP port
/// on loopback and a password), no persistence, killed and cleaned up when the value goes away.
///
/// Tests therefore need nothing from the environment but the `redis-server` binary, and never see each other's
/// keys. Use it through ``withRedisServer(tcp:password:_:)`` so the server is stopped even when the test throws.
final class TestRedisServer {
    let directory: String
    let socketPath: String
    /// The TCP port, when the server listens on one.
    let port: Int?
    let password: String?
    private let process: Process

    /// The server's unix socket, with the password if any.
    var url: RedisURL {
        RedisURL(endpoint: .unix(path: socketPath), password: password)
    }

    /// The server's TCP address, with the password if any.
    var tcpURL: RedisURL? {
        port.map { RedisURL(endpoint: .tcp(host: "127.0.0.1", port: $0), password: password) }
    }

    init(tcp: Bool = false, password: String? = nil) throws {
        Self.ignoreSIGPIPE
        var template = Array("/tmp/swiftq-redis-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw TestServerError("mkdtemp failed: errno \(errno)") }
        directory = String(cString: made)
        socketPath = directory + "/redis.sock"
        self.password = password
        var lastFailure = "not started"
        for _ in 0..<5 {
            let port = tcp ? try Self.freeLoopbackPort() : nil
            var arguments = [
                "--port", port.map(String.init) ?? "0",
                "--unixsocket", socketPath, "--unixsocketperm", "700",
                "--save", "", "--appendonly", "no", "--dir", directory,
                "--logfile", directory + "/redis.log", "--daemonize", "no",
            ]
            if port != nil { arguments += ["--bind", "127.0.0.1"] }
            if let password { arguments += ["--requirepass", password] }
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/redis-server")
            process.arguments = arguments
            process.standardInput = FileHandle.nullDevice
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            if Self.waitUntilReady(socketPath: socketPath, password: password, process: process) {
                self.process = process
                self.port = port
                return
            }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
            lastFailure = (try? String(contentsOfFile: directory + "/redis.log", encoding: .utf8)) ?? "no log"
        }
        try? FileManager.default.removeItem(atPath: directory)
        throw TestServerError("redis-server did not start:\n\(lastFailure)")
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Stops the server and waits for it. SIGKILL, because the server inherits the signal mask of the test thread
    /// that spawned it (Foundation's `Process` does not reset it), in which SIGTERM is blocked; nothing is persisted
    /// anyway.
    func stop() {
        crash()
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    func crash() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    /// A new connection to this server over its unix socket.
    func connect(commandTimeout: Duration? = .seconds(10)) throws -> RedisConnection {
        try RedisConnection(url: url, commandTimeout: commandTimeout)
    }

    /// Waits for `PING` to answer `PONG` (the socket appears a little before the server accepts commands).
    private static func waitUntilReady(socketPath: String, password: String?, process: Process) -> Bool {
        let deadline = Date().addingTimeInterval(10)
        let url = RedisURL(endpoint: .unix(path: socketPath), password: password)
        while Date() < deadline && process.isRunning {
            if FileManager.default.fileExists(atPath: socketPath),
                let connection = try? RedisConnection(url: url, connectTimeout: .seconds(1)),
                (try? connection.command("PING")) == .status("PONG")
            {
                return true
            }
            usleep(10_000)
        }
        return false
    }

    /// A port that was free a moment ago (bind to port 0, read it back, close). Another process may take it in
    /// between; the caller retries.
    static func freeLoopbackPort() throws -> Int {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw TestServerError("socket failed: errno \(errno)") }
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, length) }
        }
        guard bound == 0 else { throw TestServerError("bind failed: errno \(errno)") }
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
        }
        guard named == 0 else { throw TestServerError("getsockname failed: errno \(errno)") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// hiredis writes with write(2): a write to a server that died raises SIGPIPE, which must not kill the test
    /// runner (swiftqd's roles ignore it the same way).
    private static let ignoreSIGPIPE: Void = {
        signal(SIGPIPE, SIG_IGN)
    }()
}

struct TestServerError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Runs `body` with a fresh private server, and stops the server afterwards whatever happens.
func withRedisServer<Result>(
    tcp: Bool = false,
    password: String? = nil,
    _ body: (TestRedisServer) throws -> Result
) throws -> Result {
    let server = try TestRedisServer(tcp: tcp, password: password)
    defer { server.stop() }
    return try body(server)
}

/// A unique name for keys and queues in a test.
func uniqueName(_ base: String = "q") -> String {
    base + "-" + UUID().uuidString.prefix(8).lowercased()
}

/// Decodes a reply's bytes as UTF-8 text, for assertions.
func text(_ bytes: [UInt8]?) -> String? {
    bytes.map { String(decoding: $0, as: UTF8.self) }
}

/// A value shared with a helper thread.
final class LockedValue<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value

    init(_ value: Value) {
        self.value = value
    }

    func set(_ newValue: Value) {
        lock.withLock { value = newValue }
    }

    func get() -> Value {
        lock.withLock { value }
    }
}

/// Polls `condition` every 10 ms until it holds or `timeout` passes.
func eventually(timeout: Duration = .seconds(5), _ condition: () -> Bool) -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if condition() { return true }
        usleep(10_000)
    }
    return condition()
}
