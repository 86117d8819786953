import Testing

@testable import SwiftqCore

/// ``JSONByteScan/plainRunEnd(_:from:to:)`` against a byte-by-byte scan: the index of the first `"`, `\`, control
/// byte or non-ASCII byte, wherever it falls in an 8-byte word and whatever follows it (bytes after a special one can
/// be marked wrongly by the word-at-a-time test; the first never is).
@Suite struct JSONByteScanTests {
    /// The first special byte, one byte at a time.
    private static func naive(_ bytes: [UInt8], from: Int) -> Int {
        bytes[from...].firstIndex { $0 < 0x20 || $0 >= 0x80 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }
            ?? bytes.count
    }

    private static func scan(_ bytes: [UInt8], from: Int) -> Int {
        bytes.withUnsafeBufferPointer { JSONByteScan.plainRunEnd($0.baseAddress!, from: from, to: $0.count) }
    }

    @Test func everySpecialByteAtEveryPositionOfAWord() {
        // Special bytes, and the plain bytes next to each edge (0x1F/0x20, 0x7F/0x80, around `"` and `\`).
        let specials: [UInt8] = [0x00, 0x01, 0x1F, 0x22, 0x5C, 0x80, 0xC3, 0xFF]
        let plains: [UInt8] = [0x20, 0x21, 0x23, 0x5B, 0x5D, 0x7F, 0x61]
        for special in specials {
            for position in 0..<20 {
                for plain in plains {
                    var bytes = [UInt8](repeating: plain, count: 24)
                    bytes[position] = special
                    for from in 0...min(position, 3) {
                        #expect(Self.scan(bytes, from: from) == position, "0x\(special) at \(position) from \(from)")
                    }
                }
            }
        }
    }

    /// Two special bytes in one word, the later one of a kind whose test borrows (a zero after a quote, a control
    /// byte after a backslash, …): the earlier is found.
    @Test func theFirstOfTwoIsFound() {
        let specials: [UInt8] = [0x00, 0x01, 0x1F, 0x22, 0x5C, 0x80, 0xFF]
        for first in specials {
            for second in specials {
                for position in 0..<8 {
                    for gap in 1..<(16 - position) {
                        var bytes = [UInt8](repeating: UInt8(ascii: "a"), count: 16)
                        bytes[position] = first
                        bytes[position + gap] = second
                        #expect(Self.scan(bytes, from: 0) == position)
                    }
                }
            }
        }
    }

    @Test func pseudoRandomTextAgreesWithTheByteScan() {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next() -> UInt64 {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            return state
        }
        for _ in 0..<2000 {
            let count = Int(next() % 40)
            // Mostly plain ASCII, one byte in ten anything.
            let bytes = (0..<count).map { _ -> UInt8 in
                let roll = next()
                return roll % 10 == 0 ? UInt8(truncatingIfNeeded: roll >> 8) : UInt8(0x20 + (roll >> 8) % 0x5F)
            }
            guard !bytes.isEmpty else { continue }
            let from = Int(next() % UInt64(bytes.count))
            #expect(Self.scan(bytes, from: from) == Self.naive(bytes, from: from), "\(bytes) from \(from)")
        }
    }
}
