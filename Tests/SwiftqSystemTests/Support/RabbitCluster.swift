import Foundation
import SwiftqCore
import Testing

/// Three private RabbitMQ nodes (each started by `dev/servers` on its own loopback ports, all with the `rabbitmq`
/// user's Erlang cookie) joined into one cluster with `rabbitmqctl join_cluster`; stopped when released.
final class RabbitCluster {
    let nodes: [RabbitMQNode]

    init(size: Int = 3) throws {
        // One at a time: three Erlang VMs booting at once on two busy cores time out.
        var started: [RabbitMQNode] = []
        for _ in 0..<size { started.append(try RabbitMQNode.privateNode()) }
        nodes = started
        for node in nodes.dropFirst() {
            try node.ctl(["stop_app"])
            try node.ctl(["join_cluster", nodes[0].nodeName])
            try node.ctl(["start_app"])
            try node.ctl(["await_startup"])
        }
        let status = try nodes[0].ctl(["cluster_status", "--formatter", "json"])
        for node in nodes where !status.contains(node.nodeName) {
            throw TestSetupError("\(node.nodeName) is not in the cluster: \(status)")
        }
    }

    /// Stops a node for good, as `dev/servers stop` does (waiting until its process has exited), and removes its
    /// state directory, so that releasing its ``RabbitMQNode`` has nothing left to stop: a second `rabbitmqctl stop`
    /// of a node already down was seen to hang.
    func stop(_ node: RabbitMQNode) throws {
        let candidates = (try? FileManager.default.contentsOfDirectory(atPath: "/tmp")) ?? []
        guard
            let directory = candidates.filter({ $0.hasPrefix("swiftq-rabbit-") }).map({ "/tmp/" + $0 }).first(where: {
                (try? String(contentsOfFile: $0 + "/rabbitmq.node", encoding: .utf8))?
                    .trimmingCharacters(in: .whitespacesAndNewlines) == node.nodeName
            })
        else { throw TestSetupError("no state directory for \(node.nodeName)") }
        let result = try runCommand(RabbitMQNode.servers, ["stop", directory], timeout: 120)
        guard result.status == 0 else { throw TestSetupError("dev/servers stop failed: \(result.stderr)") }
        try FileManager.default.removeItem(atPath: directory)
    }

    /// kombu's failover list of every node: `amqp://guest:guest@127.0.0.1:p1//;amqp://…:p2//;…`.
    var url: String { nodes.map(\.url).joined(separator: ";") }

    /// The `host:port` part of a node's URL, as swiftqd logs it.
    static func endpoint(_ node: RabbitMQNode) -> String {
        String(node.url.split(separator: "@", maxSplits: 1)[1].split(separator: "/", maxSplits: 1)[0])
    }
}
