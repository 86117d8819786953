import OrderedCollections
import SwiftqCore

/// Which of a transport's broker connections a state report is about. The Redis transport has two, each on its
/// own thread: `fetch` (reserves messages, the pidbox) and `write` (publishes, results, acks). RabbitMQ's transport
/// does everything on one connection, which reports as `fetch`.
package enum BrokerConnectionRole: String, Sendable, CaseIterable {
    case fetch
    case write
}

/// The broker state the worker shows (`stats`, `/healthz`, `swiftq_broker_connected_bool`), derived from each
/// connection's last report, so that one connection's error and another's success do not overwrite each other.
///
/// Connected means: the fetch connection is up, and no other connection that has reported is down. A connection
/// that has not reported yet (the Redis writer connects at its first write) does not count until it does.
///
/// *Owner*: the consumer loop's thread (pure value; unit-tested in `BrokerConnectivityTests`).
package struct BrokerConnectivity: Equatable, Sendable {
    package struct Link: Equatable, Sendable {
        package var connected: Bool
        package var detail: String
    }

    package private(set) var links: [BrokerConnectionRole: Link] = [:]

    package init() {}

    /// Records one connection's report; returns whether the derived state (``isConnected`` or, while down,
    /// ``detail``) changed.
    @discardableResult
    package mutating func report(_ role: BrokerConnectionRole, connected: Bool, detail: String) -> Bool {
        let before = (isConnected, self.detail)
        links[role] = Link(connected: connected, detail: detail)
        return before.0 != isConnected || (!isConnected && before.1 != self.detail)
    }

    package var isConnected: Bool {
        links[.fetch]?.connected == true && links.values.allSatisfy(\.connected)
    }

    /// The fetch connection's detail while connected; otherwise what is wrong, each down connection named.
    package var detail: String {
        if isConnected { return links[.fetch]?.detail ?? "connected" }
        let down = BrokerConnectionRole.allCases.compactMap { role in
            links[role].flatMap { $0.connected ? nil : "\(role.rawValue) connection: \($0.detail)" }
        }
        if down.isEmpty { return "not connected" }
        return down.joined(separator: "; ")
    }
}

extension BrokerConnectivity {
    /// `stats` `broker.connections`: each connection that reported, with its state.
    package var json: JSONValue {
        var object: OrderedDictionary<String, JSONValue> = [:]
        for role in BrokerConnectionRole.allCases {
            guard let link = links[role] else { continue }
            let entry: OrderedDictionary<String, JSONValue> = [
                "connected": .bool(link.connected), "detail": .string(link.detail),
            ]
            object[role.rawValue] = .object(entry)
        }
        return .object(object)
    }
}
