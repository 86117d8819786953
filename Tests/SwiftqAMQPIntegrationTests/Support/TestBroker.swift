import Foundation
import OrderedCollections
import SwiftqAMQP
import SwiftqCore
import Testing

/// A setup problem (no broker URL, no Python), reported as a test failure with its explanation.
struct TestSetupError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// The private RabbitMQ node the tests use: `SWIFTQ_TEST_AMQP_URL`, which `dev/servers start DIR` (and dev/test)
/// exports. Unset is a failure, not a skip, so that a run without a broker cannot pass silently.
func brokerURL() throws -> AMQPURL {
    try AMQPURL(parsing: try brokerURLText())
}

/// `SWIFTQ_TEST_AMQP_URL` as given, for Python.
func brokerURLText() throws -> String {
    guard let text = ProcessInfo.processInfo.environment["SWIFTQ_TEST_AMQP_URL"], !text.isEmpty else {
        throw TestSetupError(
            "SWIFTQ_TEST_AMQP_URL is not set: start a private RabbitMQ node with "
                + "eval \"$(dev/servers start /tmp/my-servers)\" (dev/test does it) and run the tests again"
        )
    }
    return text
}

/// A queue name no other test uses.
func uniqueName(_ prefix: String = "test") -> String {
    "swiftq-\(prefix)-\(UUID().uuidString.prefix(8).lowercased())"
}

/// A connection with channel 1 open, SIGPIPE ignored (as the daemon does).
func connect(heartbeat: Duration? = nil, connectionName: String? = nil) throws -> AMQPConnection {
    signal(SIGPIPE, SIG_IGN)
    let connection = try AMQPConnection(
        url: try brokerURL(),
        heartbeat: heartbeat,
        connectionName: connectionName ?? "swiftq-tests"
    )
    try connection.openChannel(1)
    return connection
}

/// Runs `body` with a fresh durable queue on channel 1, deleting the queue afterwards (on a new connection if the
/// body broke this one).
func withQueue<R>(
    arguments: OrderedDictionary<String, JSONValue> = [:],
    _ body: (AMQPConnection, String) throws -> R
) throws -> R {
    let connection = try connect()
    let queue = uniqueName()
    try connection.declareQueue(channel: 1, name: queue, arguments: arguments)
    defer {
        if let cleaner = try? connect() {
            _ = try? cleaner.deleteQueue(channel: 1, name: queue)
        }
    }
    return try body(connection, queue)
}

/// Waits for the next delivery, skipping confirms; fails after `timeout`.
func nextDelivery(_ connection: AMQPConnection, timeout: Duration = .seconds(5)) throws -> AMQPDelivery {
    let clock = ContinuousClock()
    let deadline = clock.now.advanced(by: timeout)
    while clock.now < deadline {
        if case .delivery(let delivery)? = try connection.nextEvent(timeout: clock.now.duration(to: deadline)) {
            return delivery
        }
    }
    throw TestSetupError("no delivery within \(timeout)")
}

/// Every event that arrives within `duration`.
func events(_ connection: AMQPConnection, for duration: Duration) throws -> [AMQPEvent] {
    let clock = ContinuousClock()
    let deadline = clock.now.advanced(by: duration)
    var result: [AMQPEvent] = []
    while clock.now < deadline {
        if let event = try connection.nextEvent(timeout: clock.now.duration(to: deadline)) { result.append(event) }
    }
    return result
}

/// The project's Python with Celery: `SWIFTQ_TEST_PYTHON`, else the repository's `.venv`.
enum Python {
    static var repositoryRoot: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().path
    }

    static var interpreter: String {
        ProcessInfo.processInfo.environment["SWIFTQ_TEST_PYTHON"] ?? repositoryRoot + "/.venv/bin/python"
    }

    static var script: String { repositoryRoot + "/Tests/SwiftqAMQPIntegrationTests/Python/celery_amqp.py" }

    /// Starts the Celery script; read its output with ``RunningScript``.
    static func start(_ arguments: [String]) throws -> RunningScript {
        guard FileManager.default.isExecutableFile(atPath: interpreter) else {
            throw TestSetupError("\(interpreter) is missing: link .venv from the main tree or set SWIFTQ_TEST_PYTHON")
        }
        return try RunningScript(interpreter, [script] + arguments)
    }
}

/// A Python process whose standard output is read line by line while it runs.
final class RunningScript {
    private let process = Process()
    private let output = Pipe()
    private let errors = Pipe()
    private var buffered: [UInt8] = []

    init(_ path: String, _ arguments: [String]) throws {
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        process.standardOutput = output
        process.standardError = errors
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    deinit {
        if process.isRunning { process.terminate() }
    }

    /// The next line of output, parsed as JSON.
    func nextLine() throws -> JSONValue {
        while true {
            if let newline = buffered.firstIndex(of: UInt8(ascii: "\n")) {
                let line = Array(buffered[..<newline])
                buffered.removeSubrange(...newline)
                return try JSONValue(parsing: line)
            }
            let chunk = output.fileHandleForReading.availableData
            if chunk.isEmpty {
                process.waitUntilExit()
                let stderr = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
                throw TestSetupError("the Celery script ended (\(process.terminationStatus)) early: \(stderr)")
            }
            buffered += chunk
        }
    }

    /// Waits for the script to exit and returns its status.
    func wait() -> Int32 {
        process.waitUntilExit()
        return process.terminationStatus
    }
}
