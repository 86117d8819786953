import Foundation
import SwiftqCore
import Testing

@testable import SwiftqPlatform

#if canImport(Glibc)
import Glibc
#endif

/// Every swiftq process holds channels for its whole life (a pool child one, the consumer one per slot plus
/// the supervisor's): an idle channel must not cost its whole read buffer in resident memory.
@Suite(.serialized) struct FramedChannelMemoryTests {
    /// `RssAnon` of this process, in KiB.
    static func residentAnonymousKiB() throws -> Int {
        let status = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
        let line = try #require(status.split(separator: "\n").first { $0.hasPrefix("RssAnon:") })
        return try #require(Int(line.split(separator: " ", omittingEmptySubsequences: true)[1]))
    }

    @Test func idleChannelsDoNotMakeTheirReadBuffersResident() throws {
        let loop = EventLoop()
        var channels: [FramedChannel] = []
        var peers: [CInt] = []
        defer {
            channels.forEach { $0.close() }
            peers.forEach { Descriptors.close($0) }
        }
        // Enough channels that their buffers, were they resident, would dwarf what tests running meanwhile
        // allocate (CI once saw 2 MiB of such noise against 32 channels' 2 MiB bound).
        let count = 128
        let before = try Self.residentAnonymousKiB()
        for _ in 0..<count {
            let (ours, theirs) = try Descriptors.socketPair()
            channels.append(FramedChannel(descriptor: ours, loop: loop))
            peers.append(theirs)
        }
        let grown = try Self.residentAnonymousKiB() - before
        // A zero-filled 256 KiB buffer each would be 32 MiB; a quarter of that allows for other tests' noise.
        #expect(grown < count * 256 / 4, "\(count) idle channels grew RssAnon by \(grown) KiB")

        // And the buffer still works: a frame sent from the peer arrives.
        var received: [JSONValue] = []
        channels[0].onFrame = { received.append($0.message) }
        let frame = ChannelFrame.encode(JSONValue.object(["type": "hello"]).serialized(), descriptorCount: 0)
        try Descriptors.writeAll(peers[0], frame)
        let deadline = ContinuousClock.now + .seconds(5)
        while received.isEmpty && ContinuousClock.now < deadline { loop.runOnce(timeout: .milliseconds(50)) }
        #expect(received == [.object(["type": "hello"])])
    }
}
