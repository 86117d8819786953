import Testing

@testable import SwiftqCore

/// `String(validatingUTF8Bytes:)`: plain ASCII takes the word-at-a-time path, anything else the full validation;
/// both must agree with the standard library's, wherever in the text (in a whole word or in the tail) the first
/// byte above 0x7F is.
@Suite struct UTF8ValidationTests {
    static func decoded(_ bytes: [UInt8]) -> String? {
        bytes.withUnsafeBufferPointer { String(validatingUTF8Bytes: $0) }
    }

    @Test func asciiOfEveryLengthDecodes() {
        for length in 0...40 {
            let text = String((0..<length).map { Character(Unicode.Scalar(UInt8(0x20 + $0 % 90))) })
            #expect(Self.decoded(Array(text.utf8)) == text)
        }
    }

    @Test func aNonASCIIByteAnywhereIsValidatedNotTakenAsASCII() {
        for length in 0...24 {
            for position in 0...length {
                var valid = Array(repeating: UInt8(ascii: "a"), count: length)
                valid.insert(contentsOf: Array("é".utf8), at: position)
                #expect(Self.decoded(valid) == String(decoding: valid, as: UTF8.self))

                var invalid = Array(repeating: UInt8(ascii: "a"), count: length)
                invalid.insert(0xFF, at: position)
                #expect(Self.decoded(invalid) == nil)

                var truncated = Array(repeating: UInt8(ascii: "a"), count: length)
                truncated.insert(contentsOf: [0xE2, 0x9C], at: position)  // "✓" without its last byte
                #expect(Self.decoded(truncated) == nil)
            }
        }
        #expect(Self.decoded(Array("héllo ✓ 🐍 and a long ASCII tail".utf8)) == "héllo ✓ 🐍 and a long ASCII tail")
    }
}
