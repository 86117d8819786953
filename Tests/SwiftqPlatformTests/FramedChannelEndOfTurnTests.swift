import SwiftqCore
import Testing

@testable import SwiftqPlatform

#if canImport(Glibc)
import Glibc
#endif

/// Frames sent for the end of the turn (the jobs a turn hands one pool child) go out together, in one write, and
/// in order with the frames written at once; nothing sent is lost when the channel closes first.
@Suite struct FramedChannelEndOfTurnTests {
    /// What the peer can read now, without waiting: nil when nothing is there.
    static func readNow(_ descriptor: CInt) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        return count > 0 ? Array(buffer[0..<count]) : nil
    }

    static func frames(_ bytes: [UInt8]) throws -> [String] {
        var decoder = ChannelFrame.Decoder(maximumPayload: ChannelFrame.defaultMaximumPayload)
        decoder.append(bytes)
        var texts: [String] = []
        while let frame = try decoder.next() { texts.append(String(decoding: frame.payload, as: UTF8.self)) }
        return texts
    }

    /// A channel on a loop, and the peer's end of its socket, for `body`.
    static func withChannel(_ body: (EventLoop, FramedChannel, CInt) throws -> Void) throws {
        let loop = EventLoop()
        let (ours, theirs) = try Descriptors.socketPair()
        let channel = FramedChannel(descriptor: ours, loop: loop)
        defer {
            channel.close()
            Descriptors.close(theirs)
        }
        try body(loop, channel, theirs)
    }

    @Test func framesForTheEndOfTheTurnGoOutTogetherWhenItEnds() throws {
        try Self.withChannel { loop, channel, theirs in
            // A timer makes the turn: the frames are sent from inside it, as the pool sends jobs from a handler.
            loop.schedule(after: .zero) {
                for index in 1...3 { channel.send(serialized: Array("{\"n\":\(index)}".utf8), atEndOfTurn: true) }
                // Still inside the turn: nothing written yet.
                #expect(Self.readNow(theirs) == nil)
            }
            loop.runOnce(timeout: .milliseconds(100))
            // All three, in order.
            let bytes = try #require(Self.readNow(theirs))
            #expect(try Self.frames(bytes) == [#"{"n":1}"#, #"{"n":2}"#, #"{"n":3}"#])
            #expect(Self.readNow(theirs) == nil)
        }
    }

    @Test func aFrameWrittenAtOnceTakesTheWaitingOnesAheadOfIt() throws {
        try Self.withChannel { loop, channel, theirs in
            channel.send(serialized: Array(#"{"n":1}"#.utf8), atEndOfTurn: true)
            channel.send(serialized: Array(#"{"n":2}"#.utf8))
            let bytes = try #require(Self.readNow(theirs))
            #expect(try Self.frames(bytes) == [#"{"n":1}"#, #"{"n":2}"#])
            // The end of the turn finds nothing left to write.
            loop.runOnce(timeout: .zero)
            #expect(Self.readNow(theirs) == nil)
        }
    }

    @Test func closingWritesWhatWaitedForTheEndOfTheTurn() throws {
        let loop = EventLoop()
        let (ours, theirs) = try Descriptors.socketPair()
        defer { Descriptors.close(theirs) }
        let channel = FramedChannel(descriptor: ours, loop: loop)
        channel.send(serialized: Array(#"{"n":1}"#.utf8), atEndOfTurn: true)
        channel.close()
        let bytes = try #require(Self.readNow(theirs))
        #expect(try Self.frames(bytes) == [#"{"n":1}"#])
        // The turn's end, after the close, writes nothing and does not fail.
        loop.runOnce(timeout: .zero)
    }

    @Test func workAddedAtTheEndOfTheTurnStillRunsInIt() {
        final class Work: EndOfTurnWork {
            let loop: EventLoop
            var log: [String] = []
            var again = true
            init(loop: EventLoop) { self.loop = loop }
            func endOfTurn() {
                log.append("end")
                if again {
                    again = false
                    loop.atEndOfTurn(self)
                }
            }
        }
        let loop = EventLoop()
        let work = Work(loop: loop)
        loop.schedule(after: .zero) {
            work.log.append("timer")
            loop.atEndOfTurn(work)
        }
        loop.runOnce(timeout: .milliseconds(100))
        #expect(work.log == ["timer", "end", "end"])
        loop.runOnce(timeout: .zero)
        #expect(work.log == ["timer", "end", "end"])
    }
}
