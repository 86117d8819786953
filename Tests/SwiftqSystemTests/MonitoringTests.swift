import Foundation
import SwiftqCore
import Testing

/// One HTTP/1.1 GET over a plain socket (no client library in the test): the status and the body.
func httpGet(port: Int, _ target: String, timeout: Double = 5) throws -> (status: Int, body: String) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw TestSetupError("socket failed") }
    defer { close(fd) }
    var time = timeval(tv_sec: Int(timeout), tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &time, socklen_t(MemoryLayout<timeval>.size))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = UInt16(port).bigEndian
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
        }
    }
    guard connected else { throw TestSetupError("connect to port \(port) failed (errno \(errno))") }
    let request = Array("GET \(target) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8)
    _ = request.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    var response: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if count <= 0 { break }
        response += buffer[0..<count]
    }
    let text = String(decoding: response, as: UTF8.self)
    guard let split = text.range(of: "\r\n\r\n"),
        let status = Int(text.split(separator: " ").dropFirst().first ?? "")
    else { throw TestSetupError("not an HTTP response: \(text.prefix(200))") }
    return (status, String(text[split.upperBound...]))
}

/// `/metrics` scraped by a real Prometheus, `promtool check metrics`, `/healthz` and `swiftqctl ping` following
/// the broker.
@Suite(.serialized) struct MonitoringTests {
    /// `metrics.listen` is decided at startup: a reload that drops it keeps the listener, and the consumer (which
    /// keeps task counters only while one serves them) keeps counting.
    @Test func aReloadThatDropsTheListenerKeepsItAndItsTaskCounters() throws {
        let redis = try RedisServer()
        let port = try freeLoopbackPort()
        let daemon = try RedisInteropTests.daemon(broker: redis, extraYAML: "metrics:\n  listen: 127.0.0.1:\(port)\n")
        let calls: [JSONValue] = (0..<3).map { ["task": "swiftq.add", "args": [.int(Int64($0)), 1]] }
        #expect(try Python.celeryClient(RedisInteropTests.request(redis, calls: calls)).count == 3)
        try daemon.rewriteConfiguration(
            concurrency: 2,
            extraYAML: "broker:\n  url: \(redis.url)\nresult_backend:\n  url: \(redis.url(db: 1))\n"
        )
        daemon.signal(SIGHUP)
        #expect(eventually { daemon.log.contains("configuration reloaded") }, "\(daemon.log.suffix(3000))")
        #expect(daemon.log.contains("metrics.listen changes take effect on restart"))
        #expect(try Python.celeryClient(RedisInteropTests.request(redis, calls: calls)).count == 3)
        let scraped = try httpGet(port: port, "/metrics")
        #expect(scraped.status == 200)
        #expect(
            scraped.body.contains(#"swiftq_tasks_succeeded_total{task="swiftq.add",queue="celery"} 6"#),
            "\(scraped.body)"
        )
    }

    @Test func prometheusScrapesTheTaskCountersAndPromtoolFindsNoProblem() throws {
        let redis = try RedisServer()
        let port = try freeLoopbackPort()
        let daemon = try RedisInteropTests.daemon(
            broker: redis,
            extraYAML: "metrics:\n  listen: 127.0.0.1:\(port)\n"
        )
        var calls: [JSONValue] = (0..<5).map { ["task": "swiftq.add", "args": [.int(Int64($0)), 1]] }
        calls += [["task": "swiftq.fail", "args": ["no"]], ["task": "swiftq.fail", "args": ["again"]]]
        let results = try Python.celeryClient(RedisInteropTests.request(redis, calls: calls))
        #expect(results.count == 7)

        let scraped = try httpGet(port: port, "/metrics")
        #expect(scraped.status == 200)
        #expect(scraped.body.contains(#"swiftq_tasks_succeeded_total{task="swiftq.add",queue="celery"} 5"#))
        #expect(scraped.body.contains(#"swiftq_tasks_failed_total{task="swiftq.fail",queue="celery"} 2"#))
        #expect(scraped.body.contains(#"swiftq_tasks_received_total{task="swiftq.add",queue="celery"} 5"#))
        #expect(scraped.body.contains(#"swiftq_task_runtime_seconds_count{task="swiftq.add"} 5"#))
        #expect(scraped.body.contains("swiftq_pool_processes{state=\"idle\"} 2.0"))
        #expect(scraped.body.contains("swiftq_prefetch_window_messages 8.0"))
        #expect(scraped.body.contains("swiftq_healthy 1"))

        // The exposition text passes Prometheus's own linter.
        let promtool = try runCommand(try which("promtool"), ["check", "metrics"], input: Data(scraped.body.utf8))
        #expect(promtool.status == 0, "promtool: \(promtool.stdout) \(promtool.stderr)")
        #expect(promtool.stdout.isEmpty && promtool.stderr.isEmpty, "promtool: \(promtool.stdout) \(promtool.stderr)")

        // `swiftqctl metrics` prints the same families.
        let ctl = try runCommand(Binaries.swiftqctl, ["--socket", daemon.socketPath, "metrics"])
        #expect(ctl.status == 0)
        #expect(ctl.stdout.contains(#"swiftq_tasks_succeeded_total{task="swiftq.add",queue="celery"} 5"#))

        // A real Prometheus scrapes it; its HTTP API returns the counter.
        let directory = try TemporaryDirectory()
        let prometheusPort = try freeLoopbackPort()
        let config = try directory.write(
            "prometheus.yml",
            """
            global:
              scrape_interval: 1s
            scrape_configs:
              - job_name: swiftqd
                static_configs:
                  - targets: ['127.0.0.1:\(port)']

            """
        )
        let prometheus = try TestProcess(
            try which("prometheus"),
            [
                "--config.file=\(config)", "--storage.tsdb.path=\(directory.path)/data",
                "--web.listen-address=127.0.0.1:\(prometheusPort)",
            ],
            logFile: directory.path + "/prometheus.log"
        )
        defer { prometheus.stop() }
        let query = "sum(swiftq_tasks_succeeded_total)".addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
        var answer: JSONValue?
        let scrapedByPrometheus = eventually(timeout: 60) {
            guard let reply = try? httpGet(port: prometheusPort, "/api/v1/query?query=\(query)"), reply.status == 200,
                let json = try? JSONValue(parsing: reply.body)
            else { return false }
            answer = json
            return json["data"]?["result"]?[0]?["value"]?[1] == "5"
        }
        #expect(scrapedByPrometheus, "Prometheus answered \(answer.map { String(describing: $0) } ?? "nothing")")
        let up = try httpGet(port: prometheusPort, "/api/v1/query?query=up")
        #expect(up.body.contains(#""value":["#) && up.body.contains(#","1"]"#), "up: \(up.body)")
    }

    @Test func healthzTurnsUnhealthyWithinTheGraceAfterTheBrokerStopsAndHealthyWhenItReturns() throws {
        let redis = try RedisServer()
        let port = try freeLoopbackPort()
        let daemon = try RedisInteropTests.daemon(
            broker: redis,
            extraYAML: "metrics:\n  listen: 127.0.0.1:\(port)\nhealth:\n  broker_grace: 4s\n"
        )
        #expect(eventually(timeout: 10) { (try? httpGet(port: port, "/healthz"))?.status == 200 })
        #expect(try httpGet(port: port, "/healthz").body == "ok\n")
        let ping = try runCommand(Binaries.swiftqctl, ["--socket", daemon.socketPath, "ping"])
        #expect(ping.status == 0)

        // Connected first (mingle at start-up takes up to a second): the stop below is then a loss, and the return
        // a reconnect.
        #expect(eventually(timeout: 20) { (try? daemon.stats())?["broker"]?["connected"] == true })
        // Taken before the stop: the consumer may see the connection drop while redis-server is still exiting.
        let stopped = ContinuousClock.now
        redis.stop()
        // Within the grace the worker is still healthy (a broker blip is not an outage)...
        #expect(try httpGet(port: port, "/healthz").status == 200)
        // ...and unhealthy once it has passed, with the reason.
        var body = ""
        #expect(
            eventually(timeout: 20) {
                guard let reply = try? httpGet(port: port, "/healthz"), reply.status == 503 else { return false }
                body = reply.body
                return true
            }
        )
        #expect(stopped.duration(to: .now) >= .seconds(4))
        #expect(stopped.duration(to: .now) < .seconds(12), "not within the grace period")
        #expect(body.contains("the broker has been unreachable"), "\(body)")
        let unhealthy = try runCommand(Binaries.swiftqctl, ["--socket", daemon.socketPath, "ping"])
        #expect(unhealthy.status == 1)
        #expect(unhealthy.stderr.contains("the broker has been unreachable"), "\(unhealthy.stderr)")
        let metrics = try httpGet(port: port, "/metrics")
        #expect(metrics.body.contains("swiftq_healthy 0"))
        #expect(metrics.body.contains("swiftq_broker_connected_bool 0.0"))

        try redis.start()
        #expect(eventually(timeout: 30) { (try? httpGet(port: port, "/healthz"))?.status == 200 })
        #expect(try runCommand(Binaries.swiftqctl, ["--socket", daemon.socketPath, "ping"]).status == 0)
        // /metrics shows the consumer's last stats sample: the reconnect appears within a sample or two.
        var reconnects: [Substring] = []
        #expect(
            eventually(timeout: 5) {
                reconnects = ((try? httpGet(port: port, "/metrics"))?.body ?? "").split(separator: "\n").filter {
                    $0.hasPrefix("swiftq_broker_reconnects_total")
                }
                return reconnects == ["swiftq_broker_reconnects_total 1"]
            },
            "\(reconnects)\n\(daemon.log.suffix(3000))"
        )
        #expect(try httpGet(port: port, "/nope").status == 404)
    }
}
