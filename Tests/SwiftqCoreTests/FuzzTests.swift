import Foundation
import OrderedCollections
import SwiftqCore
import Testing

/// A small, fast, reproducible random source (SplitMix64) for the seeded fuzzers.
struct FuzzRandom: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Seeded mutation fuzzing of everything that reads untrusted bytes: the seed corpus is the repository's own
/// fixtures (real kombu envelopes from Python Celery, configuration files), each input is a few random mutations of
/// one of them (bit flips, random bytes, cut, duplicated or spliced ranges, deep nesting, huge numbers), and every
/// target must either accept the input or throw its typed error: a trap, a hang or an unbounded allocation fails the
/// run. `SWIFTQ_FUZZ_SEED` and `SWIFTQ_FUZZ_ITERATIONS` reproduce or lengthen a run; CI runs the defaults.
enum Fuzz {
    static let seed: UInt64 =
        ProcessInfo.processInfo.environment["SWIFTQ_FUZZ_SEED"].flatMap { UInt64($0) }
        ?? 0x5EED_5171_F70A_0001
    static let iterations = ProcessInfo.processInfo.environment["SWIFTQ_FUZZ_ITERATIONS"].flatMap { Int($0) } ?? 4000
    /// Each target stops after this long even if iterations remain (a bound for slow machines, not a test of speed).
    static let timeBound: Duration = .seconds(20)

    /// Runs `body` on `iterations` mutated inputs; returns how many ran.
    @discardableResult
    static func run(
        _ target: String,
        corpus: [[UInt8]],
        seed: UInt64 = Fuzz.seed,
        _ body: ([UInt8]) throws -> Void
    ) rethrows -> Int {
        precondition(!corpus.isEmpty)
        var random = FuzzRandom(seed: seed ^ UInt64(truncatingIfNeeded: target.hashValueStable))
        let deadline = ContinuousClock.now + timeBound
        var executed = 0
        for _ in 0..<iterations {
            if ContinuousClock.now > deadline { break }
            let input = mutate(corpus.randomElement(using: &random)!, corpus: corpus, using: &random)
            try body(input)
            executed += 1
        }
        print("fuzz \(target): \(executed) executions (seed \(seed))")
        return executed
    }

    /// One to four mutations of `input`.
    static func mutate(_ input: [UInt8], corpus: [[UInt8]], using random: inout FuzzRandom) -> [UInt8] {
        var bytes = input
        for _ in 0..<Int.random(in: 1...4, using: &random) {
            let position = bytes.isEmpty ? 0 : Int.random(in: 0..<bytes.count, using: &random)
            switch Int.random(in: 0..<10, using: &random) {
            case 0 where !bytes.isEmpty:  // flip a bit
                bytes[position] ^= 1 << UInt8.random(in: 0..<8, using: &random)
            case 1:  // insert random bytes
                let count = Int.random(in: 1...16, using: &random)
                bytes.insert(
                    contentsOf: (0..<count).map { _ in UInt8.random(in: 0...255, using: &random) },
                    at: position
                )
            case 2 where !bytes.isEmpty:  // delete a range
                let end = min(bytes.count, position + Int.random(in: 1...64, using: &random))
                bytes.removeSubrange(position..<end)
            case 3 where !bytes.isEmpty:  // duplicate a range
                let end = min(bytes.count, position + Int.random(in: 1...128, using: &random))
                bytes.insert(contentsOf: bytes[position..<end], at: position)
            case 4:  // splice another corpus entry
                let other = corpus.randomElement(using: &random)!
                if !other.isEmpty {
                    let from = Int.random(in: 0..<other.count, using: &random)
                    let end = min(other.count, from + Int.random(in: 1...256, using: &random))
                    bytes.insert(contentsOf: other[from..<end], at: position)
                }
            case 5:  // deep nesting
                let depth = Int.random(in: 100...5000, using: &random)
                let open = Array(["[", "{\"a\":", "- ", "[{"].randomElement(using: &random)!.utf8)
                bytes.insert(contentsOf: Array(repeating: open, count: depth).flatMap { $0 }, at: position)
            case 6:  // an interesting token
                let tokens = [
                    "1e999999", "-0", "99999999999999999999999", "\"\\ud800\"", "null", "\u{0}", "\"", "\\", "NaN",
                    "*anchor", "&anchor", "!!python/object", "%YAML 1.1\n", "\r\n", "\t", "\u{FEFF}", "<<: *a",
                ]
                bytes.insert(contentsOf: Array(tokens.randomElement(using: &random)!.utf8), at: position)
            case 7 where !bytes.isEmpty:  // truncate
                bytes.removeSubrange(position...)
            case 8 where !bytes.isEmpty:  // replace a byte with a structural one
                bytes[position] = Array("{}[],:\"' \n-#".utf8).randomElement(using: &random)!
            default:  // change a digit or letter
                if !bytes.isEmpty { bytes[position] = UInt8.random(in: 0x20...0x7E, using: &random) }
            }
        }
        return bytes
    }

    /// The kombu envelopes Python Celery wrote (`Fixtures/celery-v2`).
    static func envelopeCorpus() throws -> [[UInt8]] {
        try CeleryFixture.messageNames.map { try CeleryFixture.load($0).envelopeBytes }
    }

    /// The configuration fixtures, valid and invalid (`Fixtures/config`).
    static func configurationCorpus() throws -> [[UInt8]] {
        let directory = URL(fileURLWithPath: try ConfigurationFixture.path("full.yaml")).deletingLastPathComponent()
        return try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted().map {
            Array(try Data(contentsOf: directory.appending(path: $0)))
        }
    }
}

extension String {
    /// A hash that is the same in every run (Swift's `hashValue` is seeded per process).
    var hashValueStable: Int {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01B3 }
        return Int(truncatingIfNeeded: hash)
    }
}

@Suite("Fuzzing: untrusted input decoders (seeded)") struct FuzzTests {
    /// A kombu envelope off a Redis list, then the task in it: every input decodes or throws
    /// `MessageDecodingError`; a decoded task's id and name are the headers' strings.
    @Test func redisEnvelopeAndTaskMessage() throws {
        var decoded = 0
        try Fuzz.run("envelope+task", corpus: try Fuzz.envelopeCorpus()) { input in
            guard let envelope = try? RedisEnvelope.decode(input) else { return }
            do {
                let task = try TaskMessage.decode(envelope)
                #expect(task.id == envelope.headers["id"]?.stringValue)
                #expect(task.name == envelope.headers["task"]?.stringValue)
                decoded += 1
            } catch let error as MessageDecodingError {
                #expect(!error.message.isEmpty)
            }
        }
        // The mutations must leave some inputs valid, or the fuzzer only tests the first check.
        #expect(decoded > 0)
    }

    /// The task body as a transport hands it over (any content type, compression, headers), including bodies that
    /// inflate hugely: bounded by ``TaskMessage/maximumInflatedBodySize``.
    @Test func taskMessageParts() throws {
        let bodies = try Fuzz.envelopeCorpus().compactMap { try? RedisEnvelope.decode($0).body }
        Fuzz.run("task body", corpus: bodies) { body in
            for compression: JSONValue in [nil, "application/x-gzip", "zlib", "brotli"] {
                var headers: OrderedDictionary<String, JSONValue> = ["task": "t", "id": "i"]
                if compression != nil { headers["compression"] = compression }
                _ = try? TaskMessage.decode(
                    contentType: "application/json",
                    contentEncoding: "utf-8",
                    headers: headers,
                    properties: [:],
                    body: body,
                    redelivered: false
                )
            }
        }
    }

    /// JSON: whatever parses serializes and parses back to the same value (a differential check of the two
    /// directions), nesting is bounded, and the Python-compatible rendering never traps.
    @Test func jsonRoundTrip() throws {
        let corpus = try Fuzz.envelopeCorpus() + Fuzz.envelopeCorpus().compactMap { try? RedisEnvelope.decode($0).body }
        try Fuzz.run("json", corpus: corpus) { input in
            guard let value = try? JSONValue(parsing: input) else { return }
            let again = try JSONValue(parsing: value.serialized())
            #expect(again == value || "\(again)" == "\(value)")
        }
    }

    /// The YAML configuration loader: every input is a configuration or a `ConfigurationError` whose diagnostics
    /// all carry a line and a column inside the file.
    @Test func configurationLoader() throws {
        try Fuzz.run("configuration", corpus: try Fuzz.configurationCorpus()) { input in
            let text = String(decoding: input, as: UTF8.self)
            do {
                _ = try Configuration.parse(text, file: "fuzz.yaml")
            } catch let error as ConfigurationError {
                #expect(!error.diagnostics.isEmpty)
                // YAML's line breaks: LF, CR, CRLF, and NEL, LS, PS (libyaml counts each).
                let breaks = text.unicodeScalars.filter { ["\n", "\r", "\u{85}", "\u{2028}", "\u{2029}"].contains($0) }
                let lines = breaks.count + 2
                for diagnostic in error.diagnostics {
                    if let line = diagnostic.line { #expect(line >= 1 && line <= lines, "\(diagnostic)") }
                }
            }
        }
    }

    /// Frames between swiftq's processes: any split of a stream of frames yields the same frames (differential
    /// against encoding them), and a random stream never makes the decoder allocate past its limit.
    @Test func channelFrames() throws {
        var random = FuzzRandom(seed: Fuzz.seed)
        let payloads = try Fuzz.envelopeCorpus()
        for _ in 0..<Fuzz.iterations / 10 {
            let chosen = (0..<Int.random(in: 1...5, using: &random)).map { _ in payloads.randomElement(using: &random)!
            }
            var stream = chosen.flatMap { ChannelFrame.encode($0) }
            var decoder = ChannelFrame.Decoder(maximumPayload: 1 << 20)
            var got: [[UInt8]] = []
            while !stream.isEmpty {
                let count = min(stream.count, Int.random(in: 1...4096, using: &random))
                decoder.append(stream.prefix(count))
                stream.removeFirst(count)
                while let frame = try decoder.next() { got.append(frame.payload) }
            }
            #expect(got == chosen)
        }
        try Fuzz.run("channel frames", corpus: payloads.map { ChannelFrame.encode($0) }) { input in
            var decoder = ChannelFrame.Decoder(maximumPayload: 1 << 16)
            decoder.append(input)
            do {
                while try decoder.next() != nil {}
            } catch let error as ChannelFrame.OversizedError {
                #expect(error.length > 1 << 16)
            }
            #expect(decoder.bufferedByteCount <= input.count)
        }
    }
}
