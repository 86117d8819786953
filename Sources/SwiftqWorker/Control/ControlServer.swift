import Logging
import SwiftqConsumer
import SwiftqControl
import SwiftqCore
import SwiftqPlatform
import SwiftqPool

#if canImport(Glibc)
import Glibc
#endif

/// The control socket's server side: accepts connections on the supervisor's loop, checks each peer with
/// `SO_PEERCRED`, frames newline-delimited JSON requests, and hands them to `handler`.
///
/// Garbage never takes the daemon down: malformed JSON and unknown commands get an error reply and the
/// connection stays usable; a line over `control.max_request_bytes` gets an error reply and the
/// connection is closed (its stream cannot be resynchronised). Replies may come later (a `stats` that
/// asks the consumer), through the ``ControlResponder`` handed to the handler. Owned by the supervisor.
///
/// Bounded against clients that misbehave: at most ``maximumConnections`` at once, and when the table is full the
/// connection idle the longest (nothing owed to it) makes room for the new one, so connections opened and left
/// silent cannot lock operators out; a client that sends requests without reading the replies is not read from
/// while more than ``ControlConnection/maximumPendingOutput`` bytes of replies wait for it.
final class ControlServer {
    /// Called for each well-formed request.
    var handler: ((ControlRequest, ControlResponder) -> Void)?

    private let configuration: Configuration.Control
    private let loop: EventLoop
    private var logger: Logger
    private let listener: CInt
    private var connections: [CInt: ControlConnection] = [:]
    private let allowedUIDs: Set<uid_t>
    private let allowedGIDs: Set<gid_t>
    private let adminUIDs: Set<uid_t>
    private let adminGIDs: Set<gid_t>
    static let maximumConnections = 128

    /// Binds the socket with the configured mode and group.
    init(configuration: Configuration.Control, loop: EventLoop, logger: Logger) throws {
        self.configuration = configuration
        self.loop = loop
        self.logger = logger
        let group = try configuration.group.map { try Accounts.groupID($0) }
        allowedUIDs = Set(try configuration.allowUIDs.map { try Accounts.userID($0) })
        allowedGIDs = Set(try configuration.allowGIDs.map { try Accounts.groupID($0) })
        adminUIDs = Set(try configuration.adminUIDs.map { try Accounts.userID($0) })
        adminGIDs = Set(try configuration.adminGIDs.map { try Accounts.groupID($0) })
        listener = try UnixSocket.listen(path: configuration.socket, mode: mode_t(configuration.mode), group: group)
        loop.watch(listener) { [unowned self] _ in acceptPending() }
    }

    /// Stops listening, closes every connection and removes the socket file.
    func close() {
        loop.unwatch(listener)
        Descriptors.close(listener)
        for connection in connections.values { connection.close() }
        connections = [:]
        unlink(configuration.socket)
    }

    private func acceptPending() {
        while true {
            let fd: CInt
            do {
                guard let accepted = try UnixSocket.accept(listener) else { return }
                fd = accepted
            } catch {
                logger.error("control socket accept failed: \(error)")
                return
            }
            let connection = ControlConnection(descriptor: fd, loop: loop, limit: configuration.maxRequestBytes)
            if connections.count >= Self.maximumConnections {
                if let idlest = connections.values.filter(\.isIdle).min(by: { $0.lastActivity < $1.lastActivity }) {
                    logger.warning("control socket full: closing the connection idle the longest")
                    idlest.sendAndClose(
                        ControlReply.failure(
                            id: .null,
                            ControlError(.unavailable, "closed: idle while the control socket was full")
                        )
                    )
                } else {
                    connection.sendAndClose(
                        ControlReply.failure(id: .null, ControlError(.unavailable, "too many control connections"))
                    )
                    continue
                }
            }
            guard let credentials = try? PeerCredentials(of: fd) else {
                connection.close()
                continue
            }
            guard isAllowed(credentials, descriptor: fd) else {
                logger.warning(
                    "control connection refused",
                    metadata: ["uid": "\(credentials.uid)", "gid": "\(credentials.gid)", "pid": "\(credentials.pid)"]
                )
                connection.sendAndClose(
                    ControlReply.failure(
                        id: .null,
                        ControlError(
                            .permissionDenied,
                            "uid \(credentials.uid) is not allowed on this control socket (control.allow_uids, control.allow_gids)"
                        )
                    )
                )
                continue
            }
            connections[fd] = connection
            let isAdmin = isAdmin(credentials, descriptor: fd)
            connection.onRequest = { [unowned self, unowned connection] request in
                handler?(request, ControlResponder(connection: connection, peerUID: credentials.uid, isAdmin: isAdmin))
            }
            connection.onClose = { [unowned self] in connections[fd] = nil }
        }
    }

    /// Whether a peer may run the state-changing commands: everyone accepted when no admin list is set; otherwise
    /// root, the daemon's own uid, and the admin uids and groups (primary or supplementary).
    private func isAdmin(_ peer: PeerCredentials, descriptor: CInt) -> Bool {
        if adminUIDs.isEmpty && adminGIDs.isEmpty { return true }
        if peer.uid == 0 || peer.uid == getuid() || adminUIDs.contains(peer.uid) || adminGIDs.contains(peer.gid) {
            return true
        }
        guard !adminGIDs.isEmpty, let groups = try? PeerCredentials.supplementaryGroups(of: descriptor) else {
            return false
        }
        return !adminGIDs.isDisjoint(with: groups)
    }

    /// Root and the daemon's own uid are always allowed; others by uid, or by primary or supplementary
    /// group (`SO_PEERCRED` carries only the primary group; `SO_PEERGROUPS` the others).
    private func isAllowed(_ peer: PeerCredentials, descriptor: CInt) -> Bool {
        if peer.uid == 0 || peer.uid == getuid() || allowedUIDs.contains(peer.uid) { return true }
        if allowedGIDs.contains(peer.gid) { return true }
        guard !allowedGIDs.isEmpty, let groups = try? PeerCredentials.supplementaryGroups(of: descriptor) else {
            return false
        }
        return !allowedGIDs.isDisjoint(with: groups)
    }
}

/// Answers one request, now or later; answering twice or after the client left does nothing.
struct ControlResponder {
    fileprivate weak var connection: ControlConnection?
    /// The caller's uid (`SO_PEERCRED`), for logs of refused requests.
    var peerUID: uid_t = 0
    /// Whether the caller may run state-changing commands (`control.admin_uids`, `control.admin_gids`).
    var isAdmin = true

    /// Sends the reply.
    func reply(_ reply: ControlReply) {
        connection?.deliver(reply)
    }
}

/// One accepted control connection: its line framer and its pending output.
final class ControlConnection {
    var onRequest: ((ControlRequest) -> Void)?
    var onClose: (() -> Void)?

    private let descriptor: CInt
    private let loop: EventLoop
    private var framer: LineFramer
    private var output: [UInt8] = []
    private var closeAfterFlush = false
    private var isClosed = false
    /// Requests handed to the handler and not answered yet: a client that half-closes after its request
    /// (`echo … | socat`) still gets every answer, even one that waits for the consumer.
    private var pendingReplies = 0
    private var peerFinished = false
    /// When the client last sent something (or connected).
    private(set) var lastActivity = ContinuousClock.now
    /// Replies waiting to be written above which the client is not read from until it reads them.
    static let maximumPendingOutput = 1 << 20

    /// Nothing is owed to the client: closing it loses no answer.
    var isIdle: Bool { pendingReplies == 0 && output.isEmpty && !isClosed }

    init(descriptor: CInt, loop: EventLoop, limit: Int) {
        self.descriptor = descriptor
        self.loop = loop
        self.framer = LineFramer(limit: limit)
        loop.watch(descriptor) { [unowned self] readiness in handle(readiness) }
    }

    func send(_ reply: ControlReply) {
        guard !isClosed else { return }
        output.append(contentsOf: reply.line)
        flush()
    }

    /// Sends the answer to a request that was handed to the handler.
    func deliver(_ reply: ControlReply) {
        pendingReplies = max(0, pendingReplies - 1)
        send(reply)
    }

    /// Sends a last reply and stops reading: the connection closes once everything owed is written.
    func sendAndClose(_ reply: ControlReply) {
        closeAfterFlush = true
        peerFinished = true
        loop.unwatch(descriptor)
        send(reply)
    }

    func close() {
        guard !isClosed else { return }
        isClosed = true
        loop.unwatch(descriptor)
        Descriptors.close(descriptor)
        onClose?()
    }

    private func handle(_ readiness: EventLoop.Readiness) {
        if readiness.contains(.writable) { flush() }
        guard readiness.contains(.readable), !isClosed, !peerFinished, !closeAfterFlush else { return }
        guard output.count <= Self.maximumPendingOutput else {
            loop.setInterest(descriptor, .writable)
            return
        }
        lastActivity = .now
        let bytes: [UInt8]
        do {
            bytes = try Descriptors.read(descriptor, maximum: 65536)
        } catch {
            if error.errno != EAGAIN { close() }
            return
        }
        if bytes.isEmpty {
            // The client finished sending; answer what is pending, then close. Stop watching: a socket at
            // end of file is always readable, and the loop would spin until the last answer is out.
            peerFinished = true
            closeAfterFlush = true
            loop.unwatch(descriptor)
            flush()
            return
        }
        framer.append(bytes)
        while !isClosed && !closeAfterFlush, let line = framer.next() {
            switch line {
            case .tooLong:
                sendAndClose(
                    ControlReply.failure(
                        id: .null,
                        ControlError(
                            .requestTooLarge,
                            "request exceeds \(framer.limit) bytes (control.max_request_bytes)"
                        )
                    )
                )
            case .line(let bytes):
                if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { continue }
                do {
                    let request = try ControlRequest(line: bytes)
                    pendingReplies += 1
                    onRequest?(request)
                } catch {
                    send(ControlReply.failure(id: error.id, error))
                }
            }
        }
    }

    private func flush() {
        while !output.isEmpty && !isClosed {
            let written = output.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
            if written > 0 {
                output.removeFirst(written)
            } else if written < 0 && errno == EINTR {
                continue
            } else if written < 0 && errno == EAGAIN {
                break
            } else {
                close()
                return
            }
        }
        guard !isClosed else { return }
        if output.isEmpty && closeAfterFlush && pendingReplies == 0 {
            close()
        } else if peerFinished {
            if output.isEmpty {
                loop.unwatch(descriptor)
            } else {
                loop.watch(descriptor, for: .writable) { [unowned self] readiness in
                    if readiness.contains(.writable) { flush() }
                }
            }
        } else if output.count > Self.maximumPendingOutput {
            loop.setInterest(descriptor, .writable)
        } else {
            loop.setInterest(descriptor, output.isEmpty ? .readable : [.readable, .writable])
        }
    }
}
