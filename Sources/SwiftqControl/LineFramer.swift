/// Splits a byte stream into newline-terminated lines, refusing to buffer more than a limit.
///
/// The limit protects the daemon from a client that never sends a newline: once the buffered partial
/// line exceeds it, ``next()`` reports ``Line/tooLong`` and the connection must be dropped (its stream
/// cannot be resynchronised).
public struct LineFramer {
    /// One step of the framer.
    public enum Line: Equatable {
        /// A complete line, without its newline (a trailing `\r` is removed too).
        case line([UInt8])
        /// The pending line is longer than the limit.
        case tooLong
    }

    private var buffer: [UInt8] = []
    private var start = 0
    private var scanned = 0
    /// The largest line accepted, in bytes.
    public let limit: Int

    /// Creates a framer.
    public init(limit: Int) {
        self.limit = limit
    }

    /// Appends bytes read from the stream.
    public mutating func append(_ bytes: some Sequence<UInt8>) {
        buffer.append(contentsOf: bytes)
    }

    /// Bytes of the unfinished line.
    public var pendingByteCount: Int { buffer.count - start }

    /// The next complete line, ``Line/tooLong``, or nil until more bytes arrive.
    public mutating func next() -> Line? {
        while scanned < buffer.count {
            if buffer[scanned] == 0x0A {
                var end = scanned
                if end > start && buffer[end - 1] == 0x0D { end -= 1 }
                let line = Array(buffer[start..<end])
                scanned += 1
                start = scanned
                compact()
                if line.count > limit { return .tooLong }
                return .line(line)
            }
            scanned += 1
        }
        if buffer.count - start > limit { return .tooLong }
        return nil
    }

    private mutating func compact() {
        if start == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            start = 0
            scanned = 0
        } else if start > 4096 {
            buffer.removeFirst(start)
            scanned -= start
            start = 0
        }
    }
}
