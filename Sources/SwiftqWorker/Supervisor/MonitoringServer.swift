import Logging
import SwiftqPlatform

#if canImport(Glibc)
import Glibc
#endif

/// A tiny HTTP/1.1 responder on the supervisor's event loop, for `/metrics` and `/healthz`: one `GET` per
/// connection, answered with `Connection: close`. No HTTP library: it costs no threads, no start-up and almost no
/// memory, and a scraper needs nothing more. Requests over 8 KiB or not `GET`/`HEAD` get 400/405; slow clients are
/// cut off after 10 s. *Owner*: the supervisor's loop.
final class MonitoringServer {
    struct Response {
        var status: Int
        var contentType = "text/plain; charset=utf-8"
        var body: [UInt8]
    }

    /// Answers a path (without the query), now or later through the callback.
    var handler: ((_ path: String, _ respond: @escaping (Response) -> Void) -> Void)?

    static let maximumRequestBytes = 8192
    static let maximumConnections = 64

    private let loop: EventLoop
    private let listener: CInt
    private var logger: Logger
    private var connections: [CInt: Connection] = [:]
    let address: String

    init(host: String, port: UInt16, loop: EventLoop, logger: Logger) throws(SystemError) {
        self.loop = loop
        self.logger = logger
        self.address = "\(host):\(port)"
        listener = try TCPSocket.listen(host: host, port: port)
        loop.watch(listener) { [unowned self] _ in acceptPending() }
    }

    func close() {
        loop.unwatch(listener)
        Descriptors.close(listener)
        for connection in connections.values { connection.close() }
        connections = [:]
    }

    private func acceptPending() {
        while true {
            let fd: CInt
            do {
                guard let accepted = try UnixSocket.accept(listener) else { return }
                fd = accepted
            } catch {
                logger.error("monitoring listener accept failed: \(error)")
                return
            }
            guard connections.count < Self.maximumConnections else {
                Descriptors.close(fd)
                continue
            }
            let connection = Connection(descriptor: fd, loop: loop)
            connection.onRequest = { [unowned self, unowned connection] head in
                switch head {
                case .bad(let status):
                    connection.respond(Response(status: status, body: Array("bad request\n".utf8)), head: false)
                case .request(let method, let path):
                    guard let handler else { return }
                    handler(path) { [weak connection] response in
                        connection?.respond(response, head: method == "HEAD")
                    }
                }
            }
            connection.onClose = { [unowned self] in connections[fd] = nil }
            connections[fd] = connection
            loop.schedule(after: .seconds(10)) { [weak connection] in connection?.close() }
        }
    }

    /// The request line of an HTTP/1.x request head, or why it is refused.
    enum Head: Equatable {
        case request(method: String, path: String)
        case bad(status: Int)

        /// Parses a complete head (up to the empty line); nil while incomplete.
        static func parse(_ bytes: [UInt8]) -> Head? {
            let text = String(decoding: bytes, as: UTF8.self)
            guard text.contains("\r\n\r\n") || text.contains("\n\n") else {
                return bytes.count > MonitoringServer.maximumRequestBytes ? .bad(status: 431) : nil
            }
            let line = text.split(whereSeparator: \.isNewline).first ?? ""
            let parts = line.split(separator: " ")
            guard parts.count == 3, parts[2].hasPrefix("HTTP/1.") else { return .bad(status: 400) }
            guard parts[0] == "GET" || parts[0] == "HEAD" else { return .bad(status: 405) }
            let target = parts[1]
            let path = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            return .request(method: String(parts[0]), path: String(path))
        }
    }

    static func reason(_ status: Int) -> String {
        switch status {
        case 200: "OK"
        case 400: "Bad Request"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 431: "Request Header Fields Too Large"
        case 503: "Service Unavailable"
        default: "Error"
        }
    }

    final class Connection {
        let descriptor: CInt
        private let loop: EventLoop
        private var input: [UInt8] = []
        private var output: [UInt8] = []
        private var answered = false
        private var isClosed = false
        var onRequest: ((Head) -> Void)?
        var onClose: (() -> Void)?

        init(descriptor: CInt, loop: EventLoop) {
            self.descriptor = descriptor
            self.loop = loop
            loop.watch(descriptor) { [unowned self] _ in readable() }
        }

        private func readable() {
            guard !isClosed else { return }
            let bytes: [UInt8]
            do {
                bytes = try Descriptors.read(descriptor, maximum: 4096)
            } catch {
                if error.errno != EAGAIN { close() }
                return
            }
            if bytes.isEmpty {
                if !answered { close() } else { loop.unwatch(descriptor) }
                return
            }
            guard !answered else { return }
            input += bytes
            guard let head = Head.parse(input) else { return }
            answered = true
            loop.unwatch(descriptor)
            onRequest?(head)
        }

        func respond(_ response: Response, head: Bool) {
            guard !isClosed else { return }
            answered = true
            var text = "HTTP/1.1 \(response.status) \(MonitoringServer.reason(response.status))\r\n"
            text += "Content-Type: \(response.contentType)\r\n"
            text += "Content-Length: \(response.body.count)\r\n"
            text += "Connection: close\r\n\r\n"
            output = Array(text.utf8) + (head ? [] : response.body)
            flush()
        }

        private func flush() {
            while !output.isEmpty && !isClosed {
                let written = output.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
                if written > 0 {
                    output.removeFirst(written)
                } else if written < 0 && errno == EINTR {
                    continue
                } else if written < 0 && errno == EAGAIN {
                    loop.watch(descriptor, for: .writable) { [unowned self] _ in flush() }
                    return
                } else {
                    close()
                    return
                }
            }
            close()
        }

        func close() {
            guard !isClosed else { return }
            isClosed = true
            loop.unwatch(descriptor)
            Descriptors.close(descriptor)
            onClose?()
        }
    }
}
