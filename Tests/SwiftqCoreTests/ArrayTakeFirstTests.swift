import SwiftqCore
import Testing

@Suite struct ArrayTakeFirstTests {
    @Test func takesThePrefixAndLeavesTheRest() {
        var queue = [1, 2, 3, 4, 5]
        #expect(queue.takeFirst(2) == [1, 2])
        #expect(queue == [3, 4, 5])
        #expect(queue.takeFirst(0) == [])
        #expect(queue == [3, 4, 5])
        #expect(queue.takeFirst(-1) == [])
        #expect(queue == [3, 4, 5])
    }

    @Test func takingEverythingHandsTheStorageOverAndEmptiesTheQueue() {
        var queue = [1, 2, 3]
        let storage = queue.withUnsafeBufferPointer { $0.baseAddress }
        let all = queue.takeFirst(10)
        #expect(all == [1, 2, 3] && queue.isEmpty)
        // The same buffer, not a copy of it: the batch's elements were not copied one by one.
        #expect(all.withUnsafeBufferPointer { $0.baseAddress } == storage)
        var exact = [7, 8]
        #expect(exact.takeFirst(2) == [7, 8] && exact.isEmpty)
    }
}
