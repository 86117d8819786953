import CSwiftqPlatform
import SwiftqCore

#if canImport(Glibc)
import Glibc
#endif

/// One frame received on a ``FramedChannel``: a JSON payload and the descriptors that came with it.
public struct ReceivedFrame {
    /// The decoded JSON payload.
    public var message: JSONValue
    /// Descriptors passed with the frame (owned by the receiver from now on).
    public var descriptors: [CInt]
}

/// A non-blocking, event-loop driven channel of ``ChannelFrame`` frames over a unix stream socket,
/// able to pass descriptors (`SCM_RIGHTS`).
///
/// Owns its descriptor: ``close()`` closes it. Sends are queued and written as the socket accepts them,
/// so a slow peer never blocks the loop. Confined to the loop's thread.
public final class FramedChannel: EndOfTurnWork {
    /// The socket.
    public let descriptor: CInt
    /// Called for each frame, in order.
    public var onFrame: ((ReceivedFrame) -> Void)?
    /// When set, called for each frame instead of ``onFrame``, with the payload undecoded: for a receiver that
    /// decodes only part of it (the pool child leaves a task's request context as text until the task reads it).
    public var onPayload: ((_ payload: [UInt8], _ descriptors: [CInt]) -> Void)?
    /// Called once when the peer closes, the stream breaks, or a frame is malformed.
    public var onClose: ((ChannelCloseReason) -> Void)?

    private let loop: EventLoop
    private var decoder: ChannelFrame.Decoder
    private var receivedDescriptors: [CInt] = []
    private var outgoing: [(bytes: [UInt8], offset: Int, descriptors: [CInt])] = []
    private var isClosed = false
    /// Frames queued with ``send(serialized:atEndOfTurn:)`` wait for the loop's turn to end.
    private var flushAtEndOfTurn = false
    /// Allocated, never initialised: a zero-filled array made all 256 KiB resident at once, in every channel of
    /// every process (five channels with two pool children), while frames are mostly a few hundred bytes. Pages
    /// of this buffer become resident only as large frames actually arrive.
    private let readBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 256 * 1024, alignment: 16)
    /// Where `recvmsg` puts the descriptors that came with a read: allocated once, not on every read.
    private let descriptorBuffer = UnsafeMutableBufferPointer<CInt>.allocate(capacity: 16)
    /// How many `recvmsg` calls the channel made (tests count what ``readPending()`` costs).
    private(set) var receiveCalls = 0

    /// Wraps a connected stream socket and starts watching it.
    public init(descriptor: CInt, loop: EventLoop, maximumPayload: Int = ChannelFrame.defaultMaximumPayload) {
        self.descriptor = descriptor
        self.loop = loop
        self.decoder = ChannelFrame.Decoder(maximumPayload: maximumPayload)
        try? Descriptors.setNonBlocking(descriptor)
        loop.watch(descriptor, for: .readable) { [unowned self] readiness in
            self.handle(readiness)
        }
    }

    deinit {
        readBuffer.deallocate()
        descriptorBuffer.deallocate()
    }

    /// Whether the channel is still open.
    public var isOpen: Bool { !isClosed }

    /// Bytes queued but not yet written.
    public var pendingOutputBytes: Int { outgoing.reduce(0) { $0 + $1.bytes.count - $1.offset } }

    /// Queues a message; `descriptors` travel with it and are closed here once sent (ownership moves
    /// to the channel).
    public func send(_ message: JSONValue, descriptors: [CInt] = []) {
        send(serialized: message.serialized(), descriptors: descriptors)
    }

    /// Queues a message already serialized as one JSON object (e.g. with a task body spliced in as it arrived).
    ///
    /// Written now, unless `atEndOfTurn`: then it waits for the end of the loop's current turn, so that the frames
    /// a turn sends to one peer go out in one write and wake it once (the jobs the consumer hands one pool child as
    /// results come in). A frame written now takes the waiting ones, in order, with it.
    public func send(serialized payload: [UInt8], descriptors: [CInt] = [], atEndOfTurn: Bool = false) {
        guard !isClosed else {
            descriptors.forEach(Descriptors.close)
            return
        }
        let frame = ChannelFrame.encode(payload, descriptorCount: descriptors.count)
        if descriptors.isEmpty, !outgoing.isEmpty, outgoing[outgoing.count - 1].offset == 0 {
            // Behind unwritten frames: one buffer, one write. (Descriptors go with the first byte of an entry, so a
            // frame that carries some starts one of its own, and any frame may join the entry it starts.)
            outgoing[outgoing.count - 1].bytes.append(contentsOf: frame)
        } else {
            outgoing.append((frame, 0, descriptors))
        }
        if atEndOfTurn {
            if !flushAtEndOfTurn {
                flushAtEndOfTurn = true
                loop.atEndOfTurn(self)
            }
        } else {
            flush()
        }
    }

    /// Writes the frames that waited for the end of the turn.
    public func endOfTurn() {
        guard flushAtEndOfTurn else { return }
        flushAtEndOfTurn = false
        flush()
    }

    /// Writes as much queued output as the socket takes now, blocking up to `timeout` for the rest
    /// (used before a process exits, so its last words are not lost).
    public func flush(blockingFor timeout: Duration) {
        let deadline = ContinuousClock.now + timeout
        flush()
        while !outgoing.isEmpty && !isClosed && ContinuousClock.now < deadline {
            var entry = pollfd(fd: descriptor, events: Int16(POLLOUT), revents: 0)
            _ = poll(&entry, 1, 50)
            flush()
        }
    }

    /// Hands on, now, every frame the peer has already written: those read but not handed on yet (when called from
    /// a frame handler, the frames after the current one), then everything the socket holds, without waiting for
    /// the loop. For a decision that must see everything the peer said before it: the pool child before it starts
    /// a queued job, the pool before it tells a queued job from a started one.
    public func readPending() {
        guard !isClosed else { return }
        dispatchFrames()
        while !isClosed && readAvailable() {}
    }

    /// Closes the channel (without calling `onClose`). Frames still waiting for the end of the turn are written
    /// first, as far as the socket takes them without blocking, as if they had been written when sent.
    public func close() {
        guard !isClosed else { return }
        if flushAtEndOfTurn {
            flushAtEndOfTurn = false
            flush()
            guard !isClosed else { return }
        }
        isClosed = true
        loop.unwatch(descriptor)
        Descriptors.close(descriptor)
        receivedDescriptors.forEach(Descriptors.close)
        receivedDescriptors = []
        for entry in outgoing { entry.descriptors.forEach(Descriptors.close) }
        outgoing = []
    }

    private func fail(_ reason: ChannelCloseReason) {
        guard !isClosed else { return }
        close()
        onClose?(reason)
    }

    private func handle(_ readiness: EventLoop.Readiness) {
        if readiness.contains(.writable) { flush() }
        if readiness.contains(.readable) && !isClosed { readAvailable() }
    }

    /// One read, and the frames it completes handed on; returns whether more may be waiting (false: the read
    /// emptied the socket, nothing was waiting, or the channel closed).
    ///
    /// A read that neither filled the buffer nor brought descriptors emptied the socket: on a unix stream socket
    /// `recvmsg` copies queued data until the buffer is full or the queue is empty, stopping early only after data
    /// that carried descriptors (without `SO_PASSCRED`, which no channel sets). So ``readPending()`` makes no
    /// further read that would only fail with `EAGAIN` (in a pool child, after a read before a job that found data).
    @discardableResult
    private func readAvailable() -> Bool {
        var count: CInt = 0
        receiveCalls &+= 1
        let received = CSwiftqPlatform_receiveWithDescriptors(
            descriptor,
            readBuffer.baseAddress,
            readBuffer.count,
            descriptorBuffer.baseAddress,
            CInt(descriptorBuffer.count),
            &count
        )
        if received < 0 {
            if errno == EINTR { return true }
            if errno == EAGAIN { return false }
            fail(.error(SystemError.current("recvmsg")))
            return false
        }
        if count > 0 { receivedDescriptors.append(contentsOf: descriptorBuffer[0..<Int(count)]) }
        if received == 0 {
            fail(.peerClosed)
            return false
        }
        decoder.append(UnsafeRawBufferPointer(rebasing: readBuffer[0..<received]))
        dispatchFrames()
        return !isClosed && (received == readBuffer.count || count > 0)
    }

    /// Hands on the complete frames in the decoder, in order. A handler may call ``readPending()``, which hands on
    /// the following frames itself: this loop then finds none left.
    private func dispatchFrames() {
        while !isClosed {
            let frame: (payload: [UInt8], descriptorCount: Int)?
            do {
                frame = try decoder.next()
            } catch {
                fail(.malformed(error.description))
                return
            }
            guard let frame else { return }
            guard frame.descriptorCount <= receivedDescriptors.count else {
                fail(.malformed("frame announces \(frame.descriptorCount) descriptors, none arrived"))
                return
            }
            var attached: [CInt] = []
            if frame.descriptorCount > 0 {
                attached = Array(receivedDescriptors.prefix(frame.descriptorCount))
                receivedDescriptors.removeFirst(frame.descriptorCount)
            }
            if let onPayload {
                onPayload(frame.payload, attached)
                continue
            }
            let message: JSONValue
            do {
                message = try JSONValue(parsing: frame.payload)
            } catch {
                attached.forEach(Descriptors.close)
                fail(.malformed("undecodable frame: \(error)"))
                return
            }
            onFrame?(ReceivedFrame(message: message, descriptors: attached))
        }
    }

    private func flush() {
        while !isClosed, !outgoing.isEmpty {
            let entry = outgoing[0]
            let descriptorsToSend = entry.offset == 0 ? entry.descriptors : []
            let written = entry.bytes.withUnsafeBytes { buffer in
                CSwiftqPlatform_sendWithDescriptors(
                    descriptor,
                    buffer.baseAddress! + entry.offset,
                    buffer.count - entry.offset,
                    descriptorsToSend,
                    CInt(descriptorsToSend.count)
                )
            }
            if written < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN { break }
                fail(.error(SystemError.current("sendmsg")))
                return
            }
            if entry.offset == 0 { entry.descriptors.forEach(Descriptors.close) }
            outgoing[0].descriptors = []
            outgoing[0].offset += written
            if outgoing[0].offset == entry.bytes.count { outgoing.removeFirst() }
        }
        if !isClosed { loop.setInterest(descriptor, outgoing.isEmpty ? .readable : [.readable, .writable]) }
    }
}

/// Why a ``FramedChannel`` closed.
public enum ChannelCloseReason: CustomStringConvertible {
    /// End of file: the peer closed its end or exited.
    case peerClosed
    /// A socket error.
    case error(SystemError)
    /// The peer sent something that is not a frame of JSON.
    case malformed(String)

    public var description: String {
        switch self {
        case .peerClosed: "peer closed the channel"
        case .error(let error): "\(error)"
        case .malformed(let detail): "malformed frame: \(detail)"
        }
    }
}
