import OrderedCollections
import SwiftqCore
import SwiftqPlatform

#if canImport(Glibc)
import Glibc
#endif

/// A blocking client of the control socket, as used by `swiftqctl`.
///
/// One connection, one request at a time. Failures to reach the daemon come back as
/// ``ControlError/Code/unavailable`` (exit 69 in `swiftqctl`), refusals as
/// ``ControlError/Code/permissionDenied``.
public final class ControlClient {
    private let descriptor: CInt
    private var framer = LineFramer(limit: 256 * 1024 * 1024)
    private var nextID: Int64 = 1
    /// The socket path connected to.
    public let path: String

    /// Connects to the daemon's control socket.
    public init(path: String) throws(ControlError) {
        self.path = path
        do {
            descriptor = try UnixSocket.connect(path: path)
        } catch {
            let hint: String
            switch error.errno {
            case ENOENT: hint = "no socket there: is swiftqd running, and is control.socket the same path?"
            case ECONNREFUSED: hint = "nothing is listening: swiftqd is not running (a stale socket file)"
            case EACCES, EPERM: hint = "permission denied: ask for membership of the socket's group"
            default: hint = error.reason
            }
            throw ControlError(.unavailable, "cannot reach swiftqd at \(path): \(hint)")
        }
    }

    deinit {
        Descriptors.close(descriptor)
    }

    /// Sends `command` and waits up to `timeout` for its reply; returns the result or throws the error reply.
    public func call(
        _ command: String,
        arguments: [String: JSONValue] = [:],
        timeout: Duration = .seconds(30)
    ) throws(ControlError) -> JSONValue {
        let id = JSONValue.int(nextID)
        nextID += 1
        var ordered: OrderedDictionary<String, JSONValue> = [:]
        for key in arguments.keys.sorted() { ordered[key] = arguments[key] }
        let request = ControlRequest(id: id, command: command, arguments: ordered)
        let reply = try exchange(request.line, timeout: timeout)
        switch reply.outcome {
        case .success(let value): return value
        case .failure(let error): throw error
        }
    }

    /// Writes raw bytes and waits for the next reply line: the building block of ``call(_:arguments:timeout:)``,
    /// public so tests can send malformed requests.
    public func exchange(_ bytes: [UInt8], timeout: Duration) throws(ControlError) -> ControlReply {
        do {
            try Descriptors.writeAll(descriptor, bytes)
        } catch {
            // The daemon may have answered and closed before reading (a refused caller): prefer its words.
            if let reply = try? readReply(timeout: .milliseconds(500)) { return reply }
            throw ControlError(.unavailable, "lost the connection to swiftqd at \(path): \(error.reason)")
        }
        return try readReply(timeout: timeout)
    }

    /// Waits for the next reply line.
    public func readReply(timeout: Duration) throws(ControlError) -> ControlReply {
        let deadline = ContinuousClock.now + timeout
        while true {
            switch framer.next() {
            case .line(let line)?: return try ControlReply(line: line)
            case .tooLong?: throw ControlError(.invalidReply, "reply too long")
            case nil: break
            }
            let left = ContinuousClock.now.duration(to: deadline)
            guard left > .zero, Descriptors.waitReadable(descriptor, timeout: left) else {
                throw ControlError(.timeout, "swiftqd did not answer within \(timeout)")
            }
            let bytes: [UInt8]
            do {
                bytes = try Descriptors.read(descriptor, maximum: 65536)
            } catch {
                throw ControlError(.unavailable, "lost the connection to swiftqd at \(path): \(error.reason)")
            }
            if bytes.isEmpty {
                throw ControlError(.unavailable, "swiftqd closed the connection at \(path)")
            }
            framer.append(bytes)
        }
    }
}
