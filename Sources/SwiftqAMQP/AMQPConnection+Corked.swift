#if canImport(Glibc)
import Glibc
#endif

extension AMQPConnection {
    /// Runs `body` with the socket corked (`TCP_CORK`): rabbitmq-c writes each frame of a publish with its own `send`
    /// and pushes the last one to the network at once, so a batch of publishes (Celery's events, three per task) went
    /// out as one TCP segment each. Corked, the frames wait in the socket and leave together when `body` ends.
    /// Not a TCP socket (or the option refused): `body` runs as it would have.
    public func corked<Result>(_ body: () throws -> Result) rethrows -> Result {
        let socket = descriptor
        var on: CInt = 1
        let didCork =
            socket >= 0
            && setsockopt(socket, CInt(IPPROTO_TCP), TCP_CORK, &on, socklen_t(MemoryLayout<CInt>.size)) == 0
        defer {
            if didCork {
                var off: CInt = 0
                _ = setsockopt(socket, CInt(IPPROTO_TCP), TCP_CORK, &off, socklen_t(MemoryLayout<CInt>.size))
            }
        }
        return try body()
    }
}
