import Foundation
import Testing

@testable import SwiftqCore

@Suite struct Base64Tests {
    @Test func roundTripsEveryLengthAgainstFoundation() throws {
        var generator = SystemRandomNumberGenerator()
        for length in 0..<70 {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let encoded = Base64.encode(bytes)
            #expect(encoded == Data(bytes).base64EncodedString())
            #expect(try Base64.decode(encoded) == bytes)
            // From bytes (a JSON string's text in an envelope), contiguous or not.
            #expect(try Base64.decode(Array(encoded.utf8)) == bytes)
            #expect(try Base64.decode(Array(encoded.utf8).lazy.map { $0 }) == bytes)
            // Not contiguous: the generic path gives the same text.
            #expect(Base64.encode(bytes.lazy.map { $0 }) == encoded)
            // Appended after what a buffer already holds, as the kombu envelope encoder does.
            var buffer = Array("prefix".utf8)
            Base64.append(bytes, to: &buffer)
            #expect(buffer == Array(("prefix" + encoded).utf8))
        }
    }

    @Test(arguments: [
        ("", ""), ("YQ==", "a"), ("YQ", "a"), ("YWI=", "ab"), ("YWI", "ab"), ("YWJj", "abc"),
        (" YW\r\nJj\n", "abc"), ("+/+/", "\u{FB}\u{FF}\u{BF}"),
    ])
    func decodes(text: String, expected: String) throws {
        let bytes = try Base64.decode(text)
        #expect(bytes == Array(expected.unicodeScalars.map { UInt8(truncatingIfNeeded: $0.value) }))
    }

    @Test(arguments: ["Y", "YWJjZ", "Y===", "=", "YQ=a", "YQ==YQ==", "YW-j", "YW_j", "YWJj\u{0}", "YWJj=", "YWJ€"])
    func refuses(_ text: String) {
        #expect(throws: Base64.DecodingError.self) { try Base64.decode(text) }
    }

    @Test func namesTheOffendingCharacter() {
        #expect(throws: Base64.DecodingError(message: "invalid character '%' at offset 2")) {
            try Base64.decode("YW%j")
        }
        #expect(throws: Base64.DecodingError(message: "data after padding at offset 3")) {
            try Base64.decode(Array("YQ=a".utf8))
        }
        #expect(throws: Base64.DecodingError(message: "truncated input (5 base64 characters)")) {
            try Base64.decode(Array("YWJj Z".utf8))
        }
    }
}

/// zlib streams made by Python's `zlib` module, covering the three DEFLATE block types.
@Suite struct ZlibTests {
    private func inflate(_ base64: String, limit: Int = 1 << 20) throws -> [UInt8] {
        try Zlib.inflate(try Base64.decode(base64), limit: limit)
    }

    @Test func storedBlock() throws {
        // zlib.compress(b'hello, stored block', 0)
        #expect(try inflate("eAEBEwDs/2hlbGxvLCBzdG9yZWQgYmxvY2tGzgcd") == Array("hello, stored block".utf8))
    }

    @Test func fixedHuffmanBlock() throws {
        // zlib.compressobj(9, DEFLATED, 15, 9, Z_FIXED)
        let expected = Array("fixed huffman fixed huffman fixed huffman".utf8)
        #expect(try inflate("eAFLy6xITVHIKE1Ly03MU0jDzQMARPsPgA==") == expected)
    }

    static let dynamic = """
        eNqNlTFuwzAMRa9iaM4gkpIs5SqGBzcJigB2OjQJEAS9e+VuBf/wFwE2/EyTevqepne4LdslHIdwvV+2GA5DuC+f3/3GFJb96mNfTmHu63NZH/\
        uj8ecw/OeE4sRxSnHJcUZxzXGJ+87iwEyBmh1YKNB8xZEbje+xUmDxQ20UWP0uCqeNRCAOaY6Cqpw8knynYqQHfrpCKtT8jgopEbBICukfqMqJ\
        pBX0yqlkCibcSO9BJnA2JWCTcjalBKqSUVR9r8rZlNVPWDmb8uj3VTmbCrBJOZsKqsrZNKJeOZtGNGEymsC+GmdTAzYZZ1MDDhuZTREcHSPDKY\
        ITa2Q6CQgKy2QUA6OskCyIReOUEgNpbJX9B4A5c1JJ7v+eeYe3r/MffH7111xPob/x9ljX+RcN9Wzu
        """

    @Test func dynamicHuffmanBlock() throws {
        // zlib.compress(json.dumps([[{"name": "item%d" % i, "tags": [...], "value": i * i} ...], ...]).encode(), 9)
        let bytes = try inflate(Self.dynamic)
        #expect(bytes.count == 2_373)
        #expect(Zlib.adler32(bytes) == 234_188_014)
        let value = try JSONValue(parsing: bytes)
        #expect(value[0]?.arrayValue?.count == 40)
        #expect(value[0]?[39]?["value"] == 1_521)
        #expect(value[1] == ["mode": "dynamic"])
    }

    static let run = "eNrtwTEBAAAAwqCs61/CDP5AAQ" + String(repeating: "A", count: 255) + "ACvAczuFpk="

    @Test func longRunsCopyOverlappingBytes() throws {
        // zlib.compress(b'a' * 200000, 9): distance-1 copies, and an Adler-32 over more than 5552 bytes.
        let bytes = try inflate(Self.run)
        #expect(bytes.count == 200_000)
        #expect(bytes.allSatisfy { $0 == UInt8(ascii: "a") })
    }

    @Test func outputLimitStopsABomb() {
        #expect(throws: Zlib.InflateError(message: "inflated body exceeds 1000 bytes")) {
            try inflate(Self.run, limit: 1_000)
        }
    }

    @Test func corruptStreamsAreRefused() throws {
        let good = try Base64.decode("eAFLy6xITVHIKE1Ly03MU0jDzQMARPsPgA==")
        var badChecksum = good
        badChecksum[badChecksum.count - 1] ^= 1
        var badHeader = good
        badHeader[1] ^= 1
        let gzip: [UInt8] = [0x1F, 0x8B, 0x08, 0x00]
        let presetDictionary: [UInt8] = [0x78, 0xBB, 0, 0, 0, 1]
        for stream in [
            badChecksum, badHeader, Array(good.prefix(10)), Array(good.dropLast(4)), gzip, presetDictionary, [],
        ] {
            #expect(throws: Zlib.InflateError.self) { try Zlib.inflate(stream, limit: 1 << 20) }
        }
    }

    @Test func emptyInput() throws {
        #expect(try Zlib.inflate([0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01], limit: 10) == [])
    }
}
