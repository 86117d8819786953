import DequeModule

/// The identities of the last acks sent on one AMQP connection, oldest first, at most ``capacity`` of them: what
/// becomes uncertain if the connection fails (see ``AMQPTransport``). Recording one is O(1) and hashes nothing: it
/// is paid for every task, while the keys are read only when a connection fails.
///
/// *Owner*: the AMQP connection thread (one per connection's session).
package struct RecentAcks: Sendable {
    package let capacity: Int
    private var ring: Deque<String> = []

    package init(capacity: Int) {
        precondition(capacity > 0, "a memory of acks needs room for one")
        self.capacity = capacity
        ring.reserveCapacity(capacity)
    }

    /// Remembers one more ack; past ``capacity`` the oldest is forgotten.
    package mutating func record(_ key: String) {
        if ring.count == capacity { ring.removeFirst() }
        ring.append(key)
    }

    /// The remembered keys, oldest first.
    package var keys: [String] { Array(ring) }

    package var count: Int { ring.count }
}
