/// Finds where the plain part of a JSON string ends, eight bytes at a time: the parser and the serializer both walk
/// every byte of every string (task ids, names, header values), and a byte-by-byte loop was a visible share of the
/// fetch thread and of the consumer loop.
enum JSONByteScan {
    private static let ones: UInt64 = 0x0101_0101_0101_0101
    private static let highs: UInt64 = 0x8080_8080_8080_8080

    /// The index of the first byte in `base[from..<end]` that is `"`, `\`, a control character (below 0x20) or not
    /// ASCII (0x80 and above), or `end` when there is none. The caller looks at that byte; every byte before it
    /// can be copied as it is.
    @inline(__always)
    static func plainRunEnd(_ base: UnsafePointer<UInt8>, from: Int, to end: Int) -> Int {
        var index = from
        let raw = UnsafeRawPointer(base)
        while end - index >= 8 {
            let word = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: index, as: UInt64.self))
            let found = special(word)
            if found == 0 {
                index += 8
                continue
            }
            // The word's first special byte, without looking at its bytes one by one (every string ends this way).
            return index + (found.trailingZeroBitCount >> 3)
        }
        while index < end {
            let byte = base[index]
            if byte < 0x20 || byte >= 0x80 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") { return index }
            index += 1
        }
        return end
    }

    /// Whether every byte of `bytes` is ASCII (below 0x80).
    static func isASCII(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        guard let base = bytes.baseAddress else { return true }
        let raw = UnsafeRawPointer(base)
        var index = 0
        while bytes.count - index >= 8 {
            if raw.loadUnaligned(fromByteOffset: index, as: UInt64.self) & highs != 0 { return false }
            index += 8
        }
        while index < bytes.count {
            if base[index] >= 0x80 { return false }
            index += 1
        }
        return true
    }

    /// Non-zero when some byte of `word` (read little-endian) is `"`, `\`, below 0x20 or above 0x7F, and then its
    /// lowest set bit is the high bit of the first such byte. Bytes after that one may be marked wrongly (a
    /// subtraction's borrow carries into the next byte), but a borrow only starts at a byte that is itself marked,
    /// so none before it is.
    @inline(__always)
    static func special(_ word: UInt64) -> UInt64 {
        // A byte is zero in `v` exactly when `(v - 0x01…) & ~v & 0x80…` has its high bit set (no false negatives).
        func hasZero(_ value: UInt64) -> UInt64 { (value &- ones) & ~value & highs }
        let quote = hasZero(word ^ (ones &* UInt64(UInt8(ascii: "\""))))
        let backslash = hasZero(word ^ (ones &* UInt64(UInt8(ascii: "\\"))))
        // Below 0x20, for bytes without the high bit (those with it are caught on their own).
        let control = (word &- ones &* 0x20) & ~word & highs
        return quote | backslash | control | (word & highs)
    }
}
