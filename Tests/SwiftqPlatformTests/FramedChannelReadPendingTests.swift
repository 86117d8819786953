import SwiftqCore
import Testing

@testable import SwiftqPlatform

#if canImport(Glibc)
import Glibc
#endif

/// ``FramedChannel/readPending()`` hands on everything the peer wrote before it, with no read beyond the one that
/// emptied the socket (a pool child calls it before each job), but goes on reading after data that brought
/// descriptors, where the kernel ends a read early.
@Suite struct FramedChannelReadPendingTests {
    /// Our channel, the peer's channel on the other end (its own loop), and the payloads ours hands on.
    static func withChannels(_ body: (FramedChannel, FramedChannel, () -> [(String, [CInt])]) throws -> Void) throws {
        let (ours, theirs) = try Descriptors.socketPair()
        let channel = FramedChannel(descriptor: ours, loop: EventLoop())
        let peer = FramedChannel(descriptor: theirs, loop: EventLoop())
        defer {
            channel.close()
            peer.close()
        }
        var received: [(String, [CInt])] = []
        channel.onPayload = { payload, descriptors in
            received.append((String(decoding: payload, as: UTF8.self), descriptors))
        }
        try body(channel, peer) { received }
    }

    @Test func oneReadThatEmptiesTheSocketIsAllItTakes() throws {
        try Self.withChannels { channel, peer, received in
            for index in 1...3 { peer.send(serialized: Array("{\"n\":\(index)}".utf8)) }
            #expect(peer.pendingOutputBytes == 0)
            channel.readPending()
            #expect(received().map(\.0) == [#"{"n":1}"#, #"{"n":2}"#, #"{"n":3}"#])
            #expect(channel.receiveCalls == 1)
            // Nothing waiting: one read, which finds nothing.
            channel.readPending()
            #expect(channel.receiveCalls == 2)
            #expect(received().count == 3)
        }
    }

    @Test func aReadThatBroughtDescriptorsIsFollowedByAnother() throws {
        try Self.withChannels { channel, peer, received in
            let pipe = try Descriptors.pipe()
            defer { Descriptors.close(pipe.read) }
            // The kernel ends a read after the data that carried descriptors: the frame after it needs a second.
            peer.send(serialized: Array(#"{"n":1}"#.utf8), descriptors: [pipe.write])
            peer.send(serialized: Array(#"{"n":2}"#.utf8))
            peer.send(serialized: Array(#"{"n":3}"#.utf8))
            #expect(peer.pendingOutputBytes == 0)
            channel.readPending()
            let frames = received()
            #expect(frames.map(\.0) == [#"{"n":1}"#, #"{"n":2}"#, #"{"n":3}"#])
            #expect(frames.map(\.1.count) == [1, 0, 0])
            #expect(channel.receiveCalls == 2)
            frames.flatMap(\.1).forEach(Descriptors.close)
        }
    }
}
