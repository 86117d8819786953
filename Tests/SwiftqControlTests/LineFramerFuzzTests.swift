import SwiftqControl
import Testing

/// Seeded fuzzing of the control socket's framing: random byte streams cut at random points yield exactly the lines
/// a plain split finds (differential), `tooLong` exactly when a line exceeds the limit, and the buffer never holds
/// much more than the limit plus one read.
@Suite struct LineFramerFuzzTests {
    struct SplitMix: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    @Test func randomStreamsSplitLikeAPlainSplit() {
        var random = SplitMix(state: 0x5EED_0000_0000_0042)
        let limit = 64
        for _ in 0..<3000 {
            // Mostly short lines, some long ones, random bytes (NUL, CR, UTF-8 fragments) in between.
            var stream: [UInt8] = []
            for _ in 0..<Int.random(in: 0...8, using: &random) {
                let length = Bool.random(using: &random) ? Int.random(in: 0...70, using: &random) : 0
                stream += (0..<length).map { _ in
                    [UInt8(0), 0x0D, 0xC3, 0xA9, 0x7B, 0x22, UInt8.random(in: 0x20...0x7E, using: &random)]
                        .randomElement(using: &random)!
                }
                stream.append(0x0A)
            }
            stream += (0..<Int.random(in: 0...100, using: &random)).map { _ in 0x61 }  // an unfinished tail

            var expected: [LineFramer.Line] = []
            var rest = stream[...]
            while let newline = rest.firstIndex(of: 0x0A) {
                var line = Array(rest[..<newline])
                if line.last == 0x0D { line.removeLast() }
                expected.append(line.count > limit ? .tooLong : .line(line))
                rest = rest[(newline + 1)...]
                if line.count > limit { break }  // the stream cannot be resynchronised after tooLong
            }
            let tailTooLong = expected.last != .tooLong && rest.count > limit

            var framer = LineFramer(limit: limit)
            var got: [LineFramer.Line] = []
            var offset = 0
            reading: while offset < stream.count {
                let count = min(stream.count - offset, Int.random(in: 1...40, using: &random))
                framer.append(stream[offset..<(offset + count)])
                offset += count
                while let line = framer.next() {
                    got.append(line)
                    if line == .tooLong { break reading }
                }
                #expect(framer.pendingByteCount <= limit + 40 + 1)
            }
            if tailTooLong && got.last != .tooLong {
                // The unfinished tail alone exceeds the limit: reported once all of it is in.
                #expect(framer.next() == .tooLong)
            } else {
                #expect(got == expected || (got.last == .tooLong && expected.starts(with: got.dropLast())))
            }
        }
    }
}
