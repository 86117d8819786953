import Foundation
import SwiftqCore
import Testing

/// A private `redis-server` for one test: its own port, its own directory, killed when released.
///
/// Tests start their own servers rather than share one, so they need no environment, cannot see each
/// other's keys, and can kill or restart their server at will.
final class RedisServer {
    let directory: TemporaryDirectory
    let port: Int
    private(set) var process: TestProcess?
    private let extraArguments: [String]

    init(extraArguments: [String] = []) throws {
        directory = try TemporaryDirectory()
        port = try freeLoopbackPort()
        self.extraArguments = extraArguments
        try start()
    }

    deinit {
        stop()
    }

    var url: String { "redis://127.0.0.1:\(port)/0" }

    func url(db: Int) -> String { "redis://127.0.0.1:\(port)/\(db)" }

    /// Starts (or restarts) the server with the same port and data directory.
    func start() throws {
        self.process = try TestProcess(
            try which("redis-server"),
            ["--bind", "127.0.0.1", "--port", "\(port)", "--dir", directory.path, "--save", "", "--appendonly", "no"]
                + extraArguments
        )
        guard eventually(timeout: 10, { (try? cli(["PING"]))?.contains("PONG") == true }) else {
            throw TestSetupError("redis-server on port \(port) did not answer PING")
        }
    }

    /// Stops the server (SIGTERM, then SIGKILL).
    func stop() {
        process?.stop(signal: SIGTERM, timeout: 10)
    }

    /// Runs `redis-cli` against this server and returns its raw output.
    @discardableResult
    func cli(_ arguments: [String]) throws -> String {
        var authentication: [String] = []
        if let index = extraArguments.firstIndex(of: "--requirepass"), index + 1 < extraArguments.count {
            authentication = ["-a", extraArguments[index + 1], "--no-auth-warning"]
        }
        let result = try runCommand(
            try which("redis-cli"),
            ["-p", "\(port)", "--raw"] + authentication + arguments,
            timeout: 10
        )
        return result.stdout
    }
}

struct TestSetupError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A free TCP port on 127.0.0.1 (bound and released; good enough for a test server on one machine).
func freeLoopbackPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
            bind(fd, pointer, length) == 0 && getsockname(fd, pointer, &length) == 0
        }
    }
    guard bound else { throw TestSetupError("cannot find a free port") }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// The absolute path of a program on PATH (tests run programs by path).
func which(_ program: String) throws -> String {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
    for directory in path.split(separator: ":").map(String.init) + ["/usr/sbin", "/sbin"] {
        let candidate = "\(directory)/\(program)"
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    throw TestSetupError("\(program) is not installed (dev/bootstrap installs it)")
}

/// The Python interpreter with Celery (dev/bootstrap creates `.venv`); `SWIFTQ_TEST_PYTHON` overrides.
enum Python {
    static var interpreter: String {
        if let given = ProcessInfo.processInfo.environment["SWIFTQ_TEST_PYTHON"] { return given }
        return CommandLineTests.repositoryRoot + "/.venv/bin/python"
    }

    static var scripts: String { CommandLineTests.repositoryRoot + "/Tests/SwiftqSystemTests/Python" }

    /// A stock Celery worker (`shared_tasks.py`, solo pool) consuming `queue`; each task it runs is recorded in the
    /// Redis list `executed:python` of `ledger`.
    static func sharedTasksWorker(broker: String, backend: String, ledger: String, queue: String) throws -> TestProcess
    {
        var environment = ProcessInfo.processInfo.environment
        environment["SWIFTQ_TEST_BROKER"] = broker
        environment["SWIFTQ_TEST_BACKEND"] = backend
        environment["SWIFTQ_TEST_LEDGER"] = ledger
        environment["PYTHONPATH"] = scripts
        return try TestProcess(
            interpreter,
            [
                "-m", "celery", "-A", "shared_tasks", "worker", "-P", "solo", "-Q", queue, "--without-gossip",
                "--without-mingle", "--without-heartbeat", "-n", "python-\(queue)@%h", "--loglevel", "WARNING",
            ],
            environment: environment
        )
    }

    /// Runs the Celery client script with a request; returns one JSON value per printed line.
    static func celeryClient(_ request: JSONValue, timeout: Double = 60) throws -> [JSONValue] {
        let result = try runCommand(
            interpreter,
            [scripts + "/celery_client.py", "-"],
            input: Data(request.serialized()),
            timeout: timeout
        )
        guard result.status == 0 else {
            throw TestSetupError(
                "celery_client.py failed (\(result.status)): \(result.stderr)\nprinted so far:\n\(result.stdout)"
            )
        }
        return try result.stdout.split(separator: "\n").map { try JSONValue(parsing: String($0)) }
    }
}
