extension Array {
    /// Removes the first `count` elements (all of them when there are fewer) and returns them. Taking every element
    /// hands the storage over as it is: no element is copied (for a batch of settlements, that is a retain of each of
    /// their strings and collections saved).
    package mutating func takeFirst(_ count: Int) -> [Element] {
        guard count < self.count else {
            let all = self
            self = []
            return all
        }
        let taken = Array(self[..<Swift.max(count, 0)])
        removeFirst(Swift.max(count, 0))
        return taken
    }
}
