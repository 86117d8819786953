/// Decompression of zlib streams (RFC 1950 around RFC 1951 DEFLATE), for task bodies sent with
/// `compression='zlib'` or `'gzip'`: kombu labels both `application/x-gzip` but writes a zlib stream
/// (celery-wire-protocol.md §1.5, trap 14).
///
/// Why a decoder in Swift: Foundation on Linux exposes no zlib API (`NSData.decompressed(using:)` is Apple-only),
/// and SwiftqCore stays free of C modules. It follows the structure of zlib's reference decoder `puff.c`: canonical
/// Huffman tables decoded one bit at a time. That is slower than zlib, but task bodies are small, and it is simple
/// enough to check by reading. The Adler-32 checksum is verified, and `limit` caps the output so that a small
/// hostile body cannot expand into gigabytes.
enum Zlib {
    /// Why a stream was rejected.
    struct InflateError: Error, Equatable {
        /// What is wrong, for example `invalid distance too far back`.
        var message: String
    }

    /// The bytes compressed in the zlib stream `input`. Bytes after the checksum are ignored, as Python's
    /// `zlib.decompress` ignores them.
    ///
    /// - Throws: ``InflateError`` for a malformed or truncated stream, a preset dictionary (never used by kombu),
    ///   a checksum mismatch, or output longer than `limit` bytes.
    static func inflate(_ input: [UInt8], limit: Int) throws(InflateError) -> [UInt8] {
        guard input.count >= 2 else { throw InflateError(message: "truncated zlib header") }
        let cmf = input[0]
        let flags = input[1]
        guard cmf & 0x0F == 8, cmf >> 4 <= 7 else {
            throw InflateError(message: "not a zlib stream (compression method \(cmf & 0x0F))")
        }
        guard (UInt16(cmf) << 8 | UInt16(flags)) % 31 == 0 else {
            throw InflateError(message: "zlib header check failed")
        }
        guard flags & 0x20 == 0 else { throw InflateError(message: "zlib preset dictionaries are not supported") }

        var inflater = Inflater(input: input, position: 2, limit: limit)
        try inflater.inflateBlocks()
        let output = inflater.output
        let trailer = inflater.alignedPosition
        guard trailer + 4 <= input.count else { throw InflateError(message: "truncated zlib checksum") }
        let expected = input[trailer..<trailer + 4].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        guard adler32(output) == expected else { throw InflateError(message: "zlib checksum mismatch") }
        return output
    }

    /// The Adler-32 checksum (RFC 1950 §8.2).
    static func adler32(_ bytes: [UInt8]) -> UInt32 {
        var low: UInt32 = 1
        var high: UInt32 = 0
        var index = 0
        // 5552 is the most bytes that can be summed before `high` could overflow 32 bits (zlib's NMAX).
        while index < bytes.count {
            let end = min(index + 5552, bytes.count)
            while index < end {
                low += UInt32(bytes[index])
                high += low
                index += 1
            }
            low %= 65521
            high %= 65521
        }
        return high << 16 | low
    }
}

/// A canonical Huffman code: the number of codes of each length and the symbols in canonical order (`puff.c`).
private struct HuffmanCode {
    var counts = [Int](repeating: 0, count: 16)
    var symbols: [Int]

    /// Builds the code from each symbol's code length (0 = unused).
    init(lengths: ArraySlice<Int>) throws(Zlib.InflateError) {
        for length in lengths { counts[length] += 1 }
        var left = 1
        for length in 1...15 {
            left = left << 1 - counts[length]
            guard left >= 0 else { throw Zlib.InflateError(message: "over-subscribed Huffman code") }
        }
        var offsets = [Int](repeating: 0, count: 16)
        for length in 1..<15 { offsets[length + 1] = offsets[length] + counts[length] }
        symbols = [Int](repeating: 0, count: lengths.count)
        for (symbol, length) in lengths.enumerated() where length != 0 {
            symbols[offsets[length]] = symbol
            offsets[length] += 1
        }
    }
}

/// The DEFLATE block decoder. Bits are read least significant first, as RFC 1951 §3.1.1 specifies.
private struct Inflater {
    let input: [UInt8]
    var position: Int
    let limit: Int
    var output: [UInt8] = []
    var bitBuffer: UInt32 = 0
    var bitCount = 0

    init(input: [UInt8], position: Int, limit: Int) {
        self.input = input
        self.position = position
        self.limit = limit
    }

    /// The input position after the last whole byte consumed (the trailer starts here).
    var alignedPosition: Int { position }

    private static let lengthBase = [
        3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227,
        258,
    ]
    private static let lengthExtra = [
        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
    ]
    private static let distanceBase = [
        1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097,
        6145, 8193, 12289, 16385, 24577,
    ]
    private static let distanceExtra = [
        0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13,
    ]
    /// The order in which code-length code lengths are sent (RFC 1951 §3.2.7).
    private static let codeLengthOrder = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15]

    private static let fixedCodes: (literals: HuffmanCode, distances: HuffmanCode)? = {
        var lengths = [Int](repeating: 8, count: 288)
        for symbol in 144..<256 { lengths[symbol] = 9 }
        for symbol in 256..<280 { lengths[symbol] = 7 }
        guard let literals = try? HuffmanCode(lengths: lengths[...]),
            let distances = try? HuffmanCode(lengths: [Int](repeating: 5, count: 30)[...])
        else { return nil }
        return (literals, distances)
    }()

    mutating func inflateBlocks() throws(Zlib.InflateError) {
        var last = false
        while !last {
            last = try bits(1) == 1
            switch try bits(2) {
            case 0:
                try storedBlock()
            case 1:
                guard let fixed = Self.fixedCodes else { throw Zlib.InflateError(message: "internal: fixed codes") }
                try codesBlock(literals: fixed.literals, distances: fixed.distances)
            case 2:
                try dynamicBlock()
            default:
                throw Zlib.InflateError(message: "invalid block type")
            }
        }
        // Drop the unused bits of the last byte; whole bytes still buffered are given back.
        position -= bitCount / 8
        bitBuffer = 0
        bitCount = 0
    }

    private mutating func bits(_ count: Int) throws(Zlib.InflateError) -> Int {
        while bitCount < count {
            guard position < input.count else { throw Zlib.InflateError(message: "truncated deflate stream") }
            bitBuffer |= UInt32(input[position]) << UInt32(bitCount)
            position += 1
            bitCount += 8
        }
        let value = Int(bitBuffer & (UInt32(1) << UInt32(count) - 1))
        bitBuffer >>= UInt32(count)
        bitCount -= count
        return value
    }

    private mutating func append(_ byte: UInt8) throws(Zlib.InflateError) {
        guard output.count < limit else { throw Zlib.InflateError(message: "inflated body exceeds \(limit) bytes") }
        output.append(byte)
    }

    private mutating func storedBlock() throws(Zlib.InflateError) {
        position -= bitCount / 8  // whole buffered bytes belong to the block header's successor
        bitBuffer = 0
        bitCount = 0
        guard position + 4 <= input.count else { throw Zlib.InflateError(message: "truncated stored block") }
        let length = Int(input[position]) | Int(input[position + 1]) << 8
        let complement = Int(input[position + 2]) | Int(input[position + 3]) << 8
        guard length == ~complement & 0xFFFF else {
            throw Zlib.InflateError(message: "stored block length does not match its complement")
        }
        position += 4
        guard position + length <= input.count else { throw Zlib.InflateError(message: "truncated stored block") }
        guard output.count + length <= limit else {
            throw Zlib.InflateError(message: "inflated body exceeds \(limit) bytes")
        }
        output.append(contentsOf: input[position..<position + length])
        position += length
    }

    private mutating func decode(_ code: HuffmanCode) throws(Zlib.InflateError) -> Int {
        var value = 0
        var first = 0
        var index = 0
        for length in 1...15 {
            value |= try bits(1)
            let count = code.counts[length]
            if value - count < first {
                return code.symbols[index + value - first]
            }
            index += count
            first = (first + count) << 1
            value <<= 1
        }
        throw Zlib.InflateError(message: "invalid Huffman code")
    }

    private mutating func codesBlock(literals: HuffmanCode, distances: HuffmanCode) throws(Zlib.InflateError) {
        while true {
            let symbol = try decode(literals)
            if symbol < 256 {
                try append(UInt8(symbol))
            } else if symbol == 256 {
                return
            } else {
                let lengthIndex = symbol - 257
                guard lengthIndex < Self.lengthBase.count else {
                    throw Zlib.InflateError(message: "invalid literal/length symbol \(symbol)")
                }
                let length = Self.lengthBase[lengthIndex] + (try bits(Self.lengthExtra[lengthIndex]))
                let distanceSymbol = try decode(distances)
                guard distanceSymbol < Self.distanceBase.count else {
                    throw Zlib.InflateError(message: "invalid distance symbol \(distanceSymbol)")
                }
                let distance = Self.distanceBase[distanceSymbol] + (try bits(Self.distanceExtra[distanceSymbol]))
                guard distance <= output.count else {
                    throw Zlib.InflateError(message: "invalid distance too far back")
                }
                guard output.count + length <= limit else {
                    throw Zlib.InflateError(message: "inflated body exceeds \(limit) bytes")
                }
                // Byte by byte: the source may overlap the bytes being written (a run).
                var from = output.count - distance
                for _ in 0..<length {
                    output.append(output[from])
                    from += 1
                }
            }
        }
    }

    private mutating func dynamicBlock() throws(Zlib.InflateError) {
        let literalCount = try bits(5) + 257
        let distanceCount = try bits(5) + 1
        let codeLengthCount = try bits(4) + 4
        guard literalCount <= 286, distanceCount <= 30 else {
            throw Zlib.InflateError(message: "too many length or distance codes")
        }
        var codeLengthLengths = [Int](repeating: 0, count: 19)
        for index in 0..<codeLengthCount {
            codeLengthLengths[Self.codeLengthOrder[index]] = try bits(3)
        }
        let codeLengthCode = try HuffmanCode(lengths: codeLengthLengths[...])

        var lengths = [Int](repeating: 0, count: literalCount + distanceCount)
        var index = 0
        while index < lengths.count {
            let symbol = try decode(codeLengthCode)
            if symbol < 16 {
                lengths[index] = symbol
                index += 1
                continue
            }
            let value: Int
            let repeatCount: Int
            switch symbol {
            case 16:
                guard index > 0 else { throw Zlib.InflateError(message: "repeat with no previous length") }
                value = lengths[index - 1]
                repeatCount = 3 + (try bits(2))
            case 17:
                value = 0
                repeatCount = 3 + (try bits(3))
            default:
                value = 0
                repeatCount = 11 + (try bits(7))
            }
            guard index + repeatCount <= lengths.count else {
                throw Zlib.InflateError(message: "too many code lengths")
            }
            for _ in 0..<repeatCount {
                lengths[index] = value
                index += 1
            }
        }
        guard lengths[256] != 0 else { throw Zlib.InflateError(message: "no end-of-block code") }
        let literals = try HuffmanCode(lengths: lengths[0..<literalCount])
        let distances = try HuffmanCode(lengths: lengths[literalCount...])
        try codesBlock(literals: literals, distances: distances)
    }
}
