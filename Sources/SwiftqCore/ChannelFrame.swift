/// Framing of the channels between swiftq's own processes (supervisor, consumer, pool children).
///
/// A frame is a 4-byte big-endian payload length, one byte saying how many file descriptors travel with
/// the frame (passed alongside as `SCM_RIGHTS`), then the payload (a JSON object). Length-prefixed
/// rather than line-delimited so that a payload of any size or content (a 1 MiB argument, a newline in a
/// string) needs no escaping and no scanning.
public enum ChannelFrame {
    /// Bytes before the payload.
    public static let headerSize = 5
    /// Largest payload accepted (a larger length is a protocol error, not an allocation).
    public static let defaultMaximumPayload = 256 * 1024 * 1024

    /// Encodes one frame.
    public static func encode(_ payload: [UInt8], descriptorCount: Int = 0) -> [UInt8] {
        precondition(descriptorCount >= 0 && descriptorCount < 256, "too many descriptors in one frame")
        var frame: [UInt8] = []
        frame.reserveCapacity(headerSize + payload.count)
        let length = UInt32(payload.count)
        frame.append(UInt8(truncatingIfNeeded: length >> 24))
        frame.append(UInt8(truncatingIfNeeded: length >> 16))
        frame.append(UInt8(truncatingIfNeeded: length >> 8))
        frame.append(UInt8(truncatingIfNeeded: length))
        frame.append(UInt8(descriptorCount))
        frame.append(contentsOf: payload)
        return frame
    }

    /// A frame whose length field exceeds the limit: the stream cannot be resynchronised.
    public struct OversizedError: Error, CustomStringConvertible, Equatable {
        /// The announced payload length.
        public var length: Int
        /// The limit in force.
        public var limit: Int
        public var description: String { "channel frame of \(length) bytes exceeds the limit of \(limit) bytes" }
    }

    /// Accumulates bytes from a stream and yields whole frames; feed it any split of the stream.
    public struct Decoder {
        private var buffer: [UInt8] = []
        private var start = 0
        private let maximumPayload: Int

        /// Creates a decoder that rejects payloads above `maximumPayload`.
        public init(maximumPayload: Int = ChannelFrame.defaultMaximumPayload) {
            self.maximumPayload = maximumPayload
        }

        /// Bytes buffered but not yet returned as a frame.
        public var bufferedByteCount: Int { buffer.count - start }

        /// Appends bytes read from the stream.
        public mutating func append(_ bytes: some Sequence<UInt8>) {
            if start > 0 && start == buffer.count {
                buffer.removeAll(keepingCapacity: true)
                start = 0
            }
            buffer.append(contentsOf: bytes)
        }

        /// The next whole frame, or nil until more bytes arrive.
        public mutating func next() throws(OversizedError) -> (payload: [UInt8], descriptorCount: Int)? {
            guard buffer.count - start >= ChannelFrame.headerSize else { return nil }
            let length =
                Int(buffer[start]) << 24 | Int(buffer[start + 1]) << 16 | Int(buffer[start + 2]) << 8
                | Int(buffer[start + 3])
            guard length <= maximumPayload else { throw OversizedError(length: length, limit: maximumPayload) }
            let descriptorCount = Int(buffer[start + 4])
            let end = start + ChannelFrame.headerSize + length
            guard buffer.count >= end else { return nil }
            let payload = Array(buffer[(start + ChannelFrame.headerSize)..<end])
            start = end
            if start > 65536 && start * 2 > buffer.count {
                buffer.removeFirst(start)
                start = 0
            }
            return (payload, descriptorCount)
        }
    }
}
