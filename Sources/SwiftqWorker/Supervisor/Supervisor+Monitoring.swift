import OrderedCollections
import SwiftqConsumer
import SwiftqCore
import SwiftqPlatform

/// Health and the monitoring listener (`metrics.listen`): `/metrics` (the consumer's Prometheus registry, asked
/// over the typed channel with `stats`, and the supervisor's own lines) and `/healthz`. The same health test answers
/// `swiftqctl ping` and decides the systemd watchdog ping.
extension Supervisor {
    /// Why the worker is unhealthy, one reason a line; empty when healthy. A consumer still starting is not a
    /// problem here (its bootsteps have their own 30 s limits); the watchdog also waits for it (``isHealthy``).
    var healthProblems: [String] {
        var problems: [String] = []
        guard consumer.isAlive else { return ["the consumer is not running"] }
        guard consumerReady, let beat = lastConsumerHeartbeat else { return [] }
        let silence = beat.duration(to: .now)
        if silence >= Consumer.heartbeatInterval * 5 {
            problems.append("the consumer loop is stalled: no heartbeat for \(Self.seconds(silence))")
        }
        if let fetch = consumerFetch, fetch.starved, fetch.idle >= Self.consumerFetchStallLimit.seconds / 2 {
            problems.append(
                "the consumer stopped fetching: messages wait at the broker and no delivery for "
                    + "\(Int(fetch.idle))s"
            )
        }
        let alive = poolRows.filter { $0["pid"]?.intValue != nil }.count
        if alive == 0 && configuration.worker.concurrency > 0 { problems.append("no pool child is alive") }
        if brokerConnected == false, let since = brokerDownSince {
            let down = since.duration(to: .now)
            if down >= configuration.health.brokerGrace {
                problems.append(
                    "the broker has been unreachable for \(Self.seconds(down)) (health.broker_grace "
                        + "\(Self.seconds(configuration.health.brokerGrace))): \(brokerDetail ?? "?")"
                )
            }
        }
        if crashLooping { problems.append("crash loop: \(statusLine)") }
        return problems
    }

    private static func seconds(_ duration: Duration) -> String {
        let value = duration.seconds
        return value.rounded() == value ? "\(Int(value))s" : "\((value * 10).rounded() / 10)s"
    }

    /// Records when the broker became unreachable (for `health.broker_grace`).
    func noteBrokerState(connected: Bool) {
        if connected {
            brokerDownSince = nil
        } else if brokerDownSince == nil {
            brokerDownSince = .now
        }
    }

    /// Bootstep "Monitoring": listens on `metrics.listen`.
    func startMonitoring() throws {
        guard let listen = configuration.metrics.listen, let address = Configuration.Metrics.address(listen) else {
            return
        }
        let server = try MonitoringServer(host: address.host, port: address.port, loop: loop, logger: logger)
        server.handler = { [unowned self] path, respond in
            switch path {
            case "/metrics":
                metricsText { text in
                    respond(
                        .init(
                            status: 200,
                            contentType: "text/plain; version=0.0.4; charset=utf-8",
                            body: Array(text.utf8)
                        )
                    )
                }
            case "/healthz", "/health":
                let problems = healthProblems
                respond(
                    problems.isEmpty
                        ? .init(status: 200, body: Array("ok\n".utf8))
                        : .init(status: 503, body: Array((problems.joined(separator: "\n") + "\n").utf8))
                )
            default:
                respond(.init(status: 404, body: Array("not found; try /metrics or /healthz\n".utf8)))
            }
        }
        monitoring = server
        logger.info("serving /metrics and /healthz on http://\(server.address)")
    }

    func stopMonitoring() {
        monitoring?.close()
        monitoring = nil
    }

    /// The exposition text: the consumer's registry (when it answers within a second) and the supervisor's lines.
    func metricsText(_ reply: @escaping (String) -> Void) {
        queryStats(timeout: .seconds(1)) { [unowned self] consumerStats in
            var text = consumerStats?["metrics"]?.stringValue ?? ""
            text += supervisorMetrics
            reply(text)
        }
    }

    /// The supervisor's own metrics, written in the same exposition format.
    var supervisorMetrics: String {
        var lines: [String] = []
        func metric(_ name: String, _ type: String, _ help: String, _ samples: [(String, Double)]) {
            lines.append("# HELP \(name) \(help)")
            lines.append("# TYPE \(name) \(type)")
            for (labels, value) in samples {
                let number = value.rounded() == value && abs(value) < 1e15 ? String(Int64(value)) : "\(value)"
                lines.append("\(name)\(labels) \(number)")
            }
        }
        metric("swiftq_healthy", "gauge", "1 when /healthz reports healthy", [("", healthProblems.isEmpty ? 1 : 0)])
        metric(
            "swiftq_consumer_restarts_total",
            "counter",
            "Times the supervisor restarted the consumer process",
            [("", Double(consumer.restarts))]
        )
        metric(
            "swiftq_uptime_seconds",
            "gauge",
            "Seconds since swiftqd started",
            [("", (startedAt.duration(to: .now).seconds * 1000).rounded() / 1000)]
        )
        if isBeatEnabled {
            for family in Self.beatMetrics(beat.info) where !family.samples.isEmpty {
                metric(family.name, family.type, family.help, family.samples)
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Beat's families, from the beat child's last report (``BeatProcess/info``; nil while it starts or is down):
    /// runs and the last run per entry, whether this node holds the lease, and who holds it (an info-style gauge
    /// whose `holder` label is the holder's beat node, present only while someone holds it).
    static func beatMetrics(_ info: JSONValue?) -> [BeatMetricFamily] {
        let entries = info?["entries"]?.arrayValue ?? []
        var runs: [(String, Double)] = []
        var lastRuns: [(String, Double)] = []
        for entry in entries {
            guard let name = entry["name"]?.stringValue else { continue }
            let label = "{entry=\"\(prometheusLabel(name))\"}"
            runs.append((label, Double(entry["runs"]?.intValue ?? 0)))
            if let last = entry["last_run"]?.doubleValue { lastRuns.append((label, last)) }
        }
        var holders: [(String, Double)] = []
        if let holder = info?["lock_holder"]?.stringValue {
            holders.append(("{holder=\"\(prometheusLabel(holder))\"}", 1))
        }
        let lease: Double = info?["holder"]?.boolValue == true ? 1 : 0
        var families: [BeatMetricFamily] = []
        families.append(.init("swiftq_beat_runs_total", "counter", "Beat runs published by this node, by entry", runs))
        families.append(
            .init(
                "swiftq_beat_last_run_timestamp_seconds",
                "gauge",
                "When each beat entry last ran (scheduled time, seconds since the epoch)",
                lastRuns
            )
        )
        families.append(
            .init(
                "swiftq_beat_lease_held_bool",
                "gauge",
                "1 while this node's beat holds the cluster-wide lease",
                [("", lease)]
            )
        )
        families.append(
            .init("swiftq_beat_lock_holder_info", "gauge", "The beat node holding the lease (label holder)", holders)
        )
        return families
    }

    /// A label value in the exposition format: backslash, double quote and newline escaped.
    static func prometheusLabel(_ value: String) -> String {
        var escaped = ""
        for character in value {
            switch character {
            case "\\": escaped += "\\\\"
            case "\"": escaped += "\\\""
            case "\n": escaped += "\\n"
            default: escaped.append(character)
            }
        }
        return escaped
    }
}

/// One metric family of beat's, as the supervisor writes it: name, type, help and the samples (labels, value).
struct BeatMetricFamily {
    let name: String
    let type: String
    let help: String
    let samples: [(String, Double)]

    init(_ name: String, _ type: String, _ help: String, _ samples: [(String, Double)]) {
        self.name = name
        self.type = type
        self.help = help
        self.samples = samples
    }
}
