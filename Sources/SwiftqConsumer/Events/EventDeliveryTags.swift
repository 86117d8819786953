/// Delivery tags for the kombu envelopes of Celery's events on Redis: 128 bits in hex like ``randomHex()``, from a
/// generator seeded once from the system's (xoshiro256**), not two `getrandom` calls per event. A tag only has to
/// be unique (kombu's is a uuid4); nothing secret rides on it.
///
/// *Owner*: the Redis transport's writer thread.
package struct EventDeliveryTags {
    private var state: (UInt64, UInt64, UInt64, UInt64)

    package init() {
        var system = SystemRandomNumberGenerator()
        state = (system.next(), system.next(), system.next(), system.next())
        // xoshiro's state must not be all zero.
        if state == (0, 0, 0, 0) { state.0 = 0x9E37_79B9_7F4A_7C15 }
    }

    private mutating func next64() -> UInt64 {
        let result = (state.1 &* 5).rotatedLeft(by: 7) &* 9
        let shifted = state.1 << 17
        state.2 ^= state.0
        state.3 ^= state.1
        state.1 ^= state.2
        state.0 ^= state.3
        state.2 ^= shifted
        state.3 = state.3.rotatedLeft(by: 45)
        return result
    }

    /// The next tag: 32 lowercase hex digits.
    package mutating func next() -> String {
        let high = next64()
        let low = next64()
        return String(unsafeUninitializedCapacity: 32) { buffer in
            let digits: StaticString = "0123456789abcdef"
            for index in 0..<16 {
                buffer[index] = digits.utf8Start[Int(high >> UInt64(60 - 4 * index) & 0xF)]
                buffer[16 + index] = digits.utf8Start[Int(low >> UInt64(60 - 4 * index) & 0xF)]
            }
            return 32
        }
    }
}

extension UInt64 {
    fileprivate func rotatedLeft(by count: UInt64) -> UInt64 {
        self << count | self >> (64 - count)
    }
}
