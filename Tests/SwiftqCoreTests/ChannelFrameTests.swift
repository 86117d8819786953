import Testing

@testable import SwiftqCore

@Suite struct ChannelFrameTests {
    @Test func encodesLengthDescriptorCountAndPayload() {
        #expect(ChannelFrame.encode([1, 2, 3], descriptorCount: 2) == [0, 0, 0, 3, 2, 1, 2, 3])
    }

    @Test func dripFedStreamYieldsEveryFrameInOrder() throws {
        let payloads: [[UInt8]] = [[], Array("{\"type\":\"hello\"}".utf8), Array(repeating: 7, count: 70_000)]
        var stream: [UInt8] = []
        for (index, payload) in payloads.enumerated() {
            stream += ChannelFrame.encode(payload, descriptorCount: index)
        }
        var decoder = ChannelFrame.Decoder()
        var frames: [(payload: [UInt8], descriptorCount: Int)] = []
        var position = 0
        var chunk = 1
        while position < stream.count {
            let end = min(stream.count, position + chunk)
            decoder.append(stream[position..<end])
            position = end
            chunk = chunk * 3 % 1031 + 1
            while let frame = try decoder.next() { frames.append(frame) }
        }
        #expect(frames.map(\.payload) == payloads)
        #expect(frames.map(\.descriptorCount) == [0, 1, 2])
        #expect(decoder.bufferedByteCount == 0)
    }

    @Test func anOversizedLengthIsAnErrorNotAnAllocation() {
        var decoder = ChannelFrame.Decoder(maximumPayload: 1024)
        decoder.append([0, 0, 4, 1, 0])
        #expect(throws: ChannelFrame.OversizedError(length: 1025, limit: 1024)) { try decoder.next() }
    }

    @Test func waitsForTheWholeFrame() throws {
        var decoder = ChannelFrame.Decoder()
        decoder.append([0, 0, 0, 2, 0, 9])
        #expect(try decoder.next() == nil)
        decoder.append([8])
        #expect(try decoder.next()?.payload == [9, 8])
    }
}
