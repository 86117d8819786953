import Testing

@testable import SwiftqConsumer

/// The bounded memory of sent acks that the AMQP transport turns into uncertain acks when a connection fails.
@Suite struct RecentAcksTests {
    @Test func keepsEveryAckUpToItsCapacityOldestFirst() {
        var acks = RecentAcks(capacity: 3)
        #expect(acks.keys.isEmpty)
        acks.record("a#0#0")
        acks.record("b#0#0")
        #expect(acks.keys == ["a#0#0", "b#0#0"])
        acks.record("c#0#0")
        #expect(acks.keys == ["a#0#0", "b#0#0", "c#0#0"])
    }

    @Test func forgetsTheOldestPastItsCapacity() {
        var acks = RecentAcks(capacity: 3)
        for key in ["a", "b", "c", "d", "e"] { acks.record(key) }
        #expect(acks.keys == ["c", "d", "e"])
        #expect(acks.count == 3)
    }

    /// The transport's memory: far more acks than any window keeps in flight, the newest kept.
    @Test func theTransportsMemoryKeepsTheNewestSentAckMemoryKeys() {
        var acks = RecentAcks(capacity: AMQPTransport.sentAckMemory)
        let total = AMQPTransport.sentAckMemory * 3 + 7
        for index in 0..<total { acks.record("task-\(index)#0#0") }
        #expect(acks.count == AMQPTransport.sentAckMemory)
        #expect(acks.keys.first == "task-\(total - AMQPTransport.sentAckMemory)#0#0")
        #expect(acks.keys.last == "task-\(total - 1)#0#0")
    }

    /// A copy (a loan of the session to a turn, say) keeps its own memory: the value semantics the transport relies
    /// on when it takes the keys of a failed connection.
    @Test func aCopyIsIndependent() {
        var acks = RecentAcks(capacity: 2)
        acks.record("a")
        var copy = acks
        copy.record("b")
        copy.record("c")
        #expect(acks.keys == ["a"])
        #expect(copy.keys == ["b", "c"])
    }
}
