import Testing

@testable import SwiftqWorker

/// The monitoring listener's request parsing, without sockets.
struct MonitoringServerTests {
    @Test func requestHeadsAreParsedOrRefused() {
        typealias Head = MonitoringServer.Head
        #expect(
            Head.parse(Array("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
                == .request(method: "GET", path: "/metrics")
        )
        #expect(
            Head.parse(Array("HEAD /healthz?verbose=1 HTTP/1.0\r\n\r\n".utf8))
                == .request(method: "HEAD", path: "/healthz")
        )
        #expect(Head.parse(Array("GET /metrics HTTP/1.1\r\nHost: x\r\n".utf8)) == nil, "incomplete: wait for more")
        #expect(Head.parse(Array("POST /metrics HTTP/1.1\r\n\r\n".utf8)) == .bad(status: 405))
        #expect(Head.parse(Array("hello\r\n\r\n".utf8)) == .bad(status: 400))
        #expect(Head.parse([UInt8](repeating: 65, count: 9000)) == .bad(status: 431))
    }
}
