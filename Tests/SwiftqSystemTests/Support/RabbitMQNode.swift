import Foundation
import SwiftqCore
import Testing

/// A RabbitMQ node for system tests: the shared one `dev/test` starts (`SWIFTQ_TEST_AMQP_URL`), or a private one
/// started through `dev/servers` for a test that restarts it. Tests on the shared node use queues of their own.
final class RabbitMQNode {
    let url: String
    let nodeName: String
    /// The state directory of a private node, stopped when released; `nil` for the shared node.
    private let privateDirectory: String?

    private init(url: String, nodeName: String, privateDirectory: String?) {
        self.url = url
        self.nodeName = nodeName
        self.privateDirectory = privateDirectory
    }

    deinit {
        if let privateDirectory {
            _ = try? runCommand(Self.servers, ["stop", privateDirectory], timeout: 60)
            try? FileManager.default.removeItem(atPath: privateDirectory)
        }
    }

    static var servers: String { CommandLineTests.repositoryRoot + "/dev/servers" }

    /// The node `dev/test` started for the whole run.
    static func shared() throws -> RabbitMQNode {
        let environment = ProcessInfo.processInfo.environment
        guard let url = environment["SWIFTQ_TEST_AMQP_URL"], let directory = environment["SWIFTQ_TEST_SERVERS_DIR"]
        else {
            throw TestSetupError(
                "SWIFTQ_TEST_AMQP_URL is not set: run the tests through dev/test, or start a node with "
                    + "eval \"$(dev/servers start DIR)\""
            )
        }
        let node = try String(contentsOfFile: directory + "/rabbitmq.node", encoding: .utf8)
        return RabbitMQNode(
            url: url,
            nodeName: node.trimmingCharacters(in: .whitespacesAndNewlines),
            privateDirectory: nil
        )
    }

    /// A node of the test's own (about 10 s to start), stopped when released; with `consumerTimeoutMilliseconds`,
    /// the node's `consumer_timeout`, checked every second.
    static func privateNode(consumerTimeoutMilliseconds: Int? = nil) throws -> RabbitMQNode {
        var template = Array("/tmp/swiftq-rabbit-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw TestSetupError("mkdtemp failed") }
        let directory = String(cString: made)
        var environment = ProcessInfo.processInfo.environment
        environment["SWIFTQ_TEST_RABBITMQ_CONSUMER_TIMEOUT_MS"] = consumerTimeoutMilliseconds.map { "\($0)" }
        let result = try runCommand(servers, ["start", directory], environment: environment, timeout: 120)
        guard result.status == 0,
            let line = result.stdout.split(separator: "\n").first(where: { $0.contains("SWIFTQ_TEST_AMQP_URL=") }),
            let url = line.split(separator: "=", maxSplits: 1).last
        else {
            throw TestSetupError("dev/servers start failed (\(result.status)): \(result.stderr)")
        }
        let node = try String(contentsOfFile: directory + "/rabbitmq.node", encoding: .utf8)
        return RabbitMQNode(
            url: String(url),
            nodeName: node.trimmingCharacters(in: .whitespacesAndNewlines),
            privateDirectory: directory
        )
    }

    /// Stops the node and starts it again with its data (a private node only).
    func restart(pause: Double = 1) throws {
        guard let privateDirectory else { throw TestSetupError("only a private node can be restarted") }
        let result = try runCommand(Self.servers, ["restart", privateDirectory, "\(pause)"], timeout: 180)
        guard result.status == 0 else { throw TestSetupError("restart failed: \(result.stderr)") }
    }

    /// Runs `rabbitmqctl` against this node.
    @discardableResult
    func ctl(_ arguments: [String]) throws -> String {
        let result = try runCommand(try which("rabbitmqctl"), ["-n", nodeName, "-q"] + arguments, timeout: 60)
        guard result.status == 0 else {
            throw TestSetupError("rabbitmqctl \(arguments.joined(separator: " ")): \(result.stderr)")
        }
        return result.stdout
    }

    /// `messages_ready` and `messages_unacknowledged` of a queue, or nil when it does not exist.
    func queueCounts(_ queue: String) throws -> (ready: Int, unacked: Int)? {
        let output = try ctl(["list_queues", "--no-table-headers", "name", "messages_ready", "messages_unacknowledged"])
        for line in output.split(separator: "\n") {
            let fields = line.split(whereSeparator: { $0 == "\t" || $0 == " " })
            if fields.count == 3, fields[0] == queue, let ready = Int(fields[1]), let unacked = Int(fields[2]) {
                return (ready, unacked)
            }
        }
        return nil
    }

    /// The deliveries unacknowledged on the channels that consume `queue`, as those channels count them: what a
    /// `basic.qos` limit bounds. The queue's own `messages_unacknowledged` lags behind it: a channel tells the limit
    /// (RabbitMQ's limiter process) and the queue about an ack in two separate messages, so the queue may hand out
    /// the freed places before it has counted the ack, and for a moment count more than the limit allows.
    func unackedOnChannels(consuming queue: String) throws -> Int {
        var channels: Set<Substring> = []
        for line in try ctl(["list_consumers", "--no-table-headers", "queue_name", "channel_pid"]).split(
            separator: "\n"
        ) {
            let fields = line.split(whereSeparator: \.isWhitespace)
            if fields.count == 2, fields[0] == queue { channels.insert(fields[1]) }
        }
        var unacked = 0
        for line in try ctl(["list_channels", "--no-table-headers", "pid", "messages_unacknowledged"]).split(
            separator: "\n"
        ) {
            let fields = line.split(whereSeparator: \.isWhitespace)
            if fields.count == 2, channels.contains(fields[0]), let count = Int(fields[1]) { unacked += count }
        }
        return unacked
    }

    /// How many consumers a queue has, or nil when it does not exist.
    func consumerCount(_ queue: String) throws -> Int? {
        let output = try ctl(["list_queues", "--no-table-headers", "name", "consumers"])
        for line in output.split(separator: "\n") {
            let fields = line.split(whereSeparator: { $0 == "\t" || $0 == " " })
            if fields.count == 2, fields[0] == queue, let consumers = Int(fields[1]) { return consumers }
        }
        return nil
    }

    /// Whether a queue exists with nothing ready and nothing unacknowledged.
    func isEmpty(_ queue: String) -> Bool {
        guard let counts = (try? queueCounts(queue)) ?? nil else { return false }
        return counts == (0, 0)
    }

    /// The URL with other credentials or another vhost.
    func url(user: String = "guest", password: String = "guest", vhost: String = "/") -> String {
        let hostPort = url.split(separator: "@", maxSplits: 1)[1].split(separator: "/", maxSplits: 1)[0]
        let encodedVhost = vhost == "/" ? "/" : vhost.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
        return "amqp://\(user):\(password)@\(hostPort)/\(encodedVhost)"
    }
}

/// A queue name no other test uses.
func uniqueQueueName(_ prefix: String = "swiftq-test") -> String {
    "\(prefix)-\(UUID().uuidString.prefix(8).lowercased())"
}

/// CPU seconds (user + system) a process has used so far, from /proc.
func cpuSeconds(of pid: Int32) -> Double? {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
        let close = stat.lastIndex(of: ")")
    else { return nil }
    // Fields after "(comm)": state is field 3; utime and stime are fields 14 and 15.
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
    return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
}
