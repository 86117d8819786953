import CHiredis

#if canImport(Glibc)
import Glibc
#endif

/// The only code in SwiftqRedis that touches hiredis or a C pointer.
///
/// Everything here blocks the calling thread: hiredis' synchronous API reads and writes the socket directly.
/// Replies are copied into ``RedisReply`` values and freed in the same function, errors become ``RedisError``,
/// and no pointer leaves this file.
///
/// A `HiredisContext` owns its `redisContext *` and is noncopyable, so exactly one value frees it. After hiredis
/// reports an error on a context (`redisContext.err` set), hiredis refuses every further call on it; the owner,
/// ``RedisConnection``, records that and never calls again.
struct HiredisContext: ~Copyable {
    private let context: UnsafeMutablePointer<redisContext>
    /// The peer, redacted, for error messages.
    private let peer: String

    private init(context: UnsafeMutablePointer<redisContext>, peer: String) {
        self.context = context
        self.peer = peer
    }

    deinit {
        redisFree(context)
    }

    /// Opens a blocking connection; `timeout` bounds the TCP or unix `connect` only (hiredis 0.14 does not apply it
    /// to reads). Failures are ``RedisError/Code-swift.struct/connect`` with hiredis' `errstr` as the cause. The
    /// corresponding C functions are `redisConnectWithTimeout` and `redisConnectUnixWithTimeout`.
    static func connect(to endpoint: RedisURL.Endpoint, timeout: Duration, peer: String) throws(RedisError)
        -> HiredisContext
    {
        let interval = timeval(timeout)
        let raw: UnsafeMutablePointer<redisContext>? =
            switch endpoint {
            case .tcp(let host, let port): host.withCString { redisConnectWithTimeout($0, Int32(port), interval) }
            case .unix(let path): path.withCString { redisConnectUnixWithTimeout($0, interval) }
            }
        guard let raw else {
            throw RedisError(code: .connect, message: "connecting to \(peer) failed", cause: "hiredis is out of memory")
        }
        if raw.pointee.err != 0 {
            let cause = errorText(raw)
            redisFree(raw)
            throw RedisError(code: .connect, message: "connecting to \(peer) failed", cause: cause)
        }
        return HiredisContext(context: raw, peer: peer)
    }

    /// Bounds every later read and write (`SO_RCVTIMEO`/`SO_SNDTIMEO`); `nil` waits forever. The corresponding C
    /// function is `redisSetTimeout`.
    func setTimeout(_ timeout: Duration?) throws(RedisError) {
        let interval = timeout.map { timeval($0) } ?? timeval(tv_sec: 0, tv_usec: 0)
        if redisSetTimeout(context, interval) != REDIS_OK {
            throw failure("setting the socket timeout on \(peer) failed", errnoAfterCall: errno)
        }
    }

    /// Turns on TCP keepalive probes (hiredis uses a 15 s interval), so a peer that vanished without closing the
    /// connection is noticed during long idle waits. The corresponding C function is `redisEnableKeepAlive`.
    func enableKeepAlive() throws(RedisError) {
        if redisEnableKeepAlive(context) != REDIS_OK {
            throw failure("enabling TCP keepalive on \(peer) failed", errnoAfterCall: errno)
        }
    }

    /// Sends one command and reads its reply. An error reply is returned as ``RedisReply/error(_:)``, not thrown.
    /// The corresponding C function is `redisCommandArgv`.
    func command(_ arguments: [RedisArgument]) throws(RedisError) -> RedisReply {
        let raw = Self.withArgv(arguments) { argc, argv, lengths in redisCommandArgv(context, argc, argv, lengths) }
        let savedErrno = errno
        guard let raw else {
            throw failure("\(Self.name(of: arguments)) on \(peer) failed", errnoAfterCall: savedErrno)
        }
        defer { freeReplyObject(raw) }
        return Self.copy(raw.assumingMemoryBound(to: redisReply.self))
    }

    /// Queues a command in hiredis' output buffer without sending it; ``readReply()`` sends everything queued.
    /// The corresponding C function is `redisAppendCommandArgv`.
    func append(_ arguments: [RedisArgument]) throws(RedisError) {
        let status = Self.withArgv(arguments) { argc, argv, lengths in
            redisAppendCommandArgv(context, argc, argv, lengths)
        }
        if status != REDIS_OK {
            throw failure("queueing \(Self.name(of: arguments)) for \(peer) failed", errnoAfterCall: errno)
        }
    }

    /// Sends everything queued by ``append(_:)`` without reading anything, blocking (up to the socket timeout)
    /// until the kernel has taken it all. The corresponding C function is `redisBufferWrite`.
    func flush() throws(RedisError) {
        var done: Int32 = 0
        while done == 0 {
            let status = redisBufferWrite(context, &done)
            let savedErrno = errno
            if status != REDIS_OK {
                throw failure("sending to \(peer) failed", errnoAfterCall: savedErrno)
            }
        }
    }

    /// Sends anything queued, then blocks (up to the socket timeout) until one complete reply has been read.
    /// The corresponding C function is `redisGetReply`.
    func readReply() throws(RedisError) -> RedisReply {
        var raw: UnsafeMutableRawPointer?
        let status = redisGetReply(context, &raw)
        let savedErrno = errno
        guard status == REDIS_OK, let raw else {
            throw failure("reading a reply from \(peer) failed", errnoAfterCall: savedErrno)
        }
        defer { freeReplyObject(raw) }
        return Self.copy(raw.assumingMemoryBound(to: redisReply.self))
    }

    /// A complete reply already read from the socket into hiredis' buffer, without any I/O; `nil` when there is
    /// none. The corresponding C function is `redisGetReplyFromReader`.
    func bufferedReply() throws(RedisError) -> RedisReply? {
        var raw: UnsafeMutableRawPointer?
        if redisGetReplyFromReader(context, &raw) != REDIS_OK {
            throw failure("parsing a reply from \(peer) failed", errnoAfterCall: errno)
        }
        guard let raw else { return nil }
        defer { freeReplyObject(raw) }
        return Self.copy(raw.assumingMemoryBound(to: redisReply.self))
    }

    /// Waits until the socket has something to read (data, EOF or an error) or `timeout` passes, without
    /// reading; `nil` waits forever. The corresponding C function is `poll`.
    func waitUntilReadable(timeout: Duration?) throws(RedisError) -> Bool {
        let clock = ContinuousClock()
        let deadline = timeout.map { clock.now.advanced(by: $0) }
        while true {
            var milliseconds: Int32 = -1
            if let deadline {
                let remaining = clock.now.duration(to: deadline)
                let (seconds, attoseconds) = remaining.components
                let total = max(0, seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000)
                milliseconds = Int32(clamping: total)
            }
            var descriptor = pollfd(fd: context.pointee.fd, events: Int16(POLLIN), revents: 0)
            let result = poll(&descriptor, 1, milliseconds)
            if result > 0 { return true }
            if result == 0 { return false }
            let savedErrno = errno
            if savedErrno == EINTR { continue }
            throw RedisError(
                code: .io,
                message: "waiting for data from \(peer) failed",
                cause: String(cString: strerror(savedErrno))
            )
        }
    }

    // MARK: - Private

    /// The error hiredis recorded in `redisContext.err`/`errstr`, mapped to a ``RedisError`` code. `errno` is
    /// passed in because it must be read right after the failing call.
    private func failure(_ message: String, errnoAfterCall savedErrno: Int32) -> RedisError {
        let text = Self.errorText(context)
        let code: RedisError.Code
        switch context.pointee.err {
        case REDIS_ERR_EOF:
            code = .eof
        case REDIS_ERR_PROTOCOL, REDIS_ERR_OTHER:
            code = .protocol
        case REDIS_ERR_IO:
            let isTimeout =
                savedErrno == EAGAIN || savedErrno == EWOULDBLOCK || text == String(cString: strerror(EAGAIN))
            code = isTimeout ? .timeout : .io
        default:
            code = .io
        }
        return RedisError(code: code, message: message, cause: text.isEmpty ? nil : text)
    }

    /// `redisContext.errstr`, a fixed `char[128]` that imports as a tuple.
    private static func errorText(_ context: UnsafeMutablePointer<redisContext>) -> String {
        withUnsafeBytes(of: context.pointee.errstr) { buffer in
            let bytes = buffer.prefix { $0 != 0 }
            return String(decoding: bytes, as: UTF8.self)
        }
    }

    /// Copies a reply tree into Swift values; the caller frees the C tree afterwards.
    private static func copy(_ reply: UnsafePointer<redisReply>) -> RedisReply {
        let value = reply.pointee
        switch value.type {
        case REDIS_REPLY_STRING:
            return .bulk(bytes(value.str, value.len))
        case REDIS_REPLY_STATUS:
            return .status(String(decoding: bytes(value.str, value.len), as: UTF8.self))
        case REDIS_REPLY_ERROR:
            return .error(String(decoding: bytes(value.str, value.len), as: UTF8.self))
        case REDIS_REPLY_INTEGER:
            return .integer(Int64(value.integer))
        case REDIS_REPLY_NIL:
            return .null
        case REDIS_REPLY_ARRAY:
            var elements: [RedisReply] = []
            elements.reserveCapacity(Int(value.elements))
            for index in 0..<Int(value.elements) {
                if let element = value.element?[index] {
                    elements.append(copy(element))
                } else {
                    elements.append(.null)
                }
            }
            return .array(elements)
        default:
            return .error("hiredis returned a reply of unknown type \(value.type)")
        }
    }

    private static func bytes(_ pointer: UnsafeMutablePointer<CChar>?, _ count: Int) -> [UInt8] {
        guard let pointer, count > 0 else { return [] }
        return Array(UnsafeRawBufferPointer(start: pointer, count: count))
    }

    /// Lays the arguments out in one buffer and lends hiredis `argv`/`argvlen` arrays into it, so that every
    /// argument goes out with its explicit length (binary-safe, no copy per argument, no `strdup`).
    private static func withArgv<Result>(
        _ arguments: [RedisArgument],
        _ body: (Int32, UnsafeMutablePointer<UnsafePointer<CChar>?>, UnsafePointer<Int>) -> Result
    ) -> Result {
        precondition(!arguments.isEmpty, "a Redis command needs at least its name")
        var joined: [UInt8] = []
        joined.reserveCapacity(arguments.reduce(1) { $0 + $1.bytes.count })
        var lengths: [Int] = []
        lengths.reserveCapacity(arguments.count)
        for argument in arguments {
            joined.append(contentsOf: argument.bytes)
            lengths.append(argument.bytes.count)
        }
        joined.append(0)  // never empty, so the buffer always has an address
        return joined.withUnsafeBytes { buffer in
            var pointers: [UnsafePointer<CChar>?] = []
            pointers.reserveCapacity(lengths.count)
            var offset = 0
            for length in lengths {
                pointers.append(buffer.baseAddress.map { ($0 + offset).assumingMemoryBound(to: CChar.self) })
                offset += length
            }
            return pointers.withUnsafeMutableBufferPointer { argv in
                lengths.withUnsafeBufferPointer { argvlen in
                    guard let argvBase = argv.baseAddress, let lengthBase = argvlen.baseAddress else {
                        preconditionFailure("non-empty arrays always have storage")
                    }
                    return body(Int32(arguments.count), argvBase, lengthBase)
                }
            }
        }
    }

    /// The command name, for messages (`"EVALSHA"`), without any arguments that might be secrets or payloads.
    static func name(of arguments: [RedisArgument]) -> String {
        guard let first = arguments.first else { return "command" }
        return String(decoding: first.bytes.prefix(32), as: UTF8.self).uppercased()
    }
}

extension timeval {
    /// A `timeval` for a duration, rounded down to microseconds but never below 1 µs: hiredis reads a zero
    /// `timeval` as "no timeout", the opposite of what a tiny duration means.
    fileprivate init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        let microseconds = Int(attoseconds / 1_000_000_000_000)
        if seconds < 0 || (seconds == 0 && microseconds == 0) {
            self.init(tv_sec: 0, tv_usec: 1)
        } else {
            self.init(tv_sec: Int(seconds), tv_usec: microseconds)
        }
    }
}
