import Foundation
import SwiftqCore
import Testing

/// A Redis master, its replica and three sentinels (`redis-server --sentinel`) on free loopback ports, each with its
/// own directory; every process is stopped when the group is released.
///
/// The sentinels watch the master as `mymaster` with a quorum of 2 and a 1 s `down-after-milliseconds`, so a killed
/// master is failed over to the replica within a few seconds.
final class SentinelGroup {
    static let masterName = "mymaster"
    let directory: TemporaryDirectory
    let master: RedisServer
    let replica: RedisServer
    let sentinelPorts: [Int]
    private var sentinels: [TestProcess] = []

    init() throws {
        directory = try TemporaryDirectory()
        master = try RedisServer()
        replica = try RedisServer(extraArguments: [])
        try replica.cli(["REPLICAOF", "127.0.0.1", "\(master.port)"])
        sentinelPorts = try (0..<3).map { _ in try freeLoopbackPort() }
        let server = try which("redis-server")
        for port in sentinelPorts {
            let configuration = try directory.write(
                "sentinel-\(port).conf",
                """
                port \(port)
                bind 127.0.0.1
                dir \(directory.path)
                sentinel monitor \(Self.masterName) 127.0.0.1 \(master.port) 2
                sentinel down-after-milliseconds \(Self.masterName) 1000
                sentinel failover-timeout \(Self.masterName) 10000
                sentinel parallel-syncs \(Self.masterName) 1

                """
            )
            sentinels.append(
                try TestProcess(
                    server,
                    [configuration, "--sentinel"],
                    logFile: directory.path + "/sentinel-\(port).log"
                )
            )
        }
        // Ready when the replica is in sync and every sentinel knows both the master and the replica.
        let ready = eventually(timeout: 30) {
            guard (try? replica.cli(["INFO", "replication"]))?.contains("master_link_status:up") == true else {
                return false
            }
            return sentinelPorts.allSatisfy { port in
                let replicas = (try? self.sentinelCLI(port, ["SENTINEL", "REPLICAS", Self.masterName])) ?? ""
                return replicas.contains("\(replica.port)")
            }
        }
        guard ready else { throw TestSetupError("the sentinel group did not come up:\n\(logs)") }
    }

    deinit {
        for sentinel in sentinels { sentinel.stop(signal: SIGKILL, timeout: 5) }
        master.stop()
        replica.stop()
    }

    /// `sentinel://127.0.0.1:p1/db;sentinel://127.0.0.1:p2/db;…`, as kombu and Celery spell it.
    func url(db: Int) -> String {
        sentinelPorts.map { "sentinel://127.0.0.1:\($0)/\(db)" }.joined(separator: ";")
    }

    /// The port of the master the sentinels name now.
    func masterPort() -> Int? {
        for port in sentinelPorts {
            let lines = ((try? sentinelCLI(port, ["SENTINEL", "GET-MASTER-ADDR-BY-NAME", Self.masterName])) ?? "")
                .split(separator: "\n")
            if lines.count == 2, let found = Int(lines[1]) { return found }
        }
        return nil
    }

    /// Waits until the replica's replication offset has reached the master's: what the master acknowledged so far
    /// would survive its loss.
    func waitForReplication(timeout: Double = 30) -> Bool {
        eventually(timeout: timeout) {
            func offset(_ server: RedisServer, _ field: String) -> Int? {
                let info = (try? server.cli(["INFO", "replication"])) ?? ""
                return info.split(whereSeparator: \.isNewline).first { $0.hasPrefix(field + ":") }
                    .flatMap { Int($0.split(separator: ":")[1]) }
            }
            guard let sent = offset(master, "master_repl_offset"), let received = offset(replica, "slave_repl_offset")
            else { return false }
            return received >= sent
        }
    }

    @discardableResult
    func sentinelCLI(_ port: Int, _ arguments: [String]) throws -> String {
        try runCommand(try which("redis-cli"), ["-p", "\(port)", "--raw"] + arguments, timeout: 10).stdout
    }

    var logs: String {
        sentinelPorts.map { port in
            "sentinel \(port):\n"
                + ((try? String(contentsOfFile: directory.path + "/sentinel-\(port).log", encoding: .utf8)) ?? "")
        }.joined(separator: "\n")
    }
}
