import OrderedCollections

extension OrderedDictionary where Key == String, Value == JSONValue {
    /// An object's members from its keys and values in document order; a key given twice keeps its first place and
    /// its last value, as Python's `json` does (the later value wins).
    ///
    /// Built at once from the two arrays: inserting member by member grew the storage and its hash table step by
    /// step and looked each key up as it went (about a quarter of an envelope's decoding, a third of an AMQP
    /// delivery's headers).
    package init(jsonMembers keys: [String], values: [JSONValue]) {
        precondition(keys.count == values.count, "one value per key")
        let count = keys.count
        if count <= Self.pairwiseCheckLimit {
            // Small objects (nearly all of them): OrderedDictionary keeps no hash table for these either, so a scan
            // for a repeated key costs what its own lookups would.
            // Keys of different lengths differ: `utf8.count` is stored in the string, while `==` on two different
            // small strings is a call into the runtime (~2k instructions per Celery envelope, most of its pairs).
            var unique = true
            scan: for index in 1..<Swift.max(count, 1) {
                let length = keys[index].utf8.count
                for earlier in 0..<index where keys[earlier].utf8.count == length && keys[earlier] == keys[index] {
                    unique = false
                    break scan
                }
            }
            if unique {
                self.init(uncheckedUniqueKeys: keys, values: values)
                return
            }
        }
        self.init(minimumCapacity: count)
        for index in 0..<count { self[keys[index]] = values[index] }
    }

    /// Up to how many members an object is checked for repeated keys by comparing them pairwise.
    private static var pairwiseCheckLimit: Int { 15 }
}
