import Foundation
import SwiftqCore
import Testing

@Suite("Configuration: defaults and valid files")
struct ConfigurationParsingTests {
    @Test func defaultsMatchTheDocumentedValues() {
        let configuration = Configuration()
        #expect(Configuration.defaultPath == "/etc/swiftq/config.yaml")
        #expect(configuration.broker.url == "embedded")
        #expect(configuration.broker.visibilityTimeout == .seconds(3600))
        #expect(configuration.broker.heartbeat == .seconds(60))
        #expect(configuration.broker.connectTimeout == .seconds(10))
        #expect(
            configuration.broker.tls == Configuration.Broker.TLS(caFile: nil, certFile: nil, keyFile: nil, verify: true)
        )
        #expect(configuration.broker.queueMaxPriority == nil)
        #expect(configuration.broker.queueType == .classic)
        #expect(configuration.broker.globalQoS == .auto)
        #expect(configuration.resultBackend.url == nil)
        #expect(configuration.resultBackend.expires == .seconds(86400))
        #expect(configuration.resultBackend.extended == false)
        #expect(configuration.worker.hostname == "celery@%h")
        #expect(configuration.worker.queues == ["celery"])
        let cpus = ProcessInfo.processInfo.activeProcessorCount
        #expect(configuration.worker.concurrency == min(max(cpus, 1), 1024))
        #expect(configuration.worker.prefetchMultiplier == 4)
        #expect(configuration.worker.acksLate == true)
        #expect(configuration.worker.trackStarted == false)
        #expect(configuration.worker.shutdownTimeout == .seconds(30))
        #expect(configuration.worker.restartBackoffMax == .seconds(30))
        #expect(configuration.control.socket == "/run/swiftq/swiftqd.sock")
        #expect(configuration.control.mode == 0o660)
        #expect(configuration.control.group == nil)
        #expect(configuration.control.allowUIDs == [])
        #expect(configuration.control.allowGIDs == [])
        #expect(configuration.control.maxRequestBytes == 65536)
        #expect(configuration.logging.level == .info)
        #expect(configuration.tasks.isEmpty)
    }

    @Test(arguments: ["empty.yaml", "comments-only.yaml"])
    func fileWithoutSettingsIsAllDefaults(fixture: String) throws {
        let configuration = try Configuration.load(contentsOf: ConfigurationFixture.path(fixture))
        #expect(configuration == Configuration())
    }

    @Test(arguments: ["", "\n\n", "# only a comment\n", "---\n", "~\n", "worker:\ncontrol:\n"])
    func textWithoutSettingsIsAllDefaults(yaml: String) throws {
        #expect(try Configuration.parse(yaml, file: "config.yaml") == Configuration())
    }

    @Test func fullFileSetsEveryKey() throws {
        let configuration = try Configuration.load(contentsOf: ConfigurationFixture.path("full.yaml"))
        var expected = Configuration()
        expected.broker = Configuration.Broker(
            url: "amqp://guest:guest@rabbit.example:5672/swiftq",
            visibilityTimeout: .seconds(12 * 3600),
            heartbeat: .zero,
            connectTimeout: .seconds(3),
            tls: Configuration.Broker.TLS(
                caFile: "/etc/ssl/rabbit-ca.pem",
                certFile: "/etc/swiftq/client.pem",
                keyFile: "/etc/swiftq/client.key",
                verify: false
            ),
            queueMaxPriority: 10,
            queueType: .quorum,
            globalQoS: .never
        )
        expected.resultBackend = Configuration.ResultBackend(
            url: "redis://redis.example:6379/1",
            expires: .zero,
            extended: true
        )
        expected.worker = Configuration.Worker(
            hostname: "swiftq@%h",
            queues: ["high", "default", "low"],
            concurrency: 8,
            prefetchMultiplier: 0,
            acksLate: false,
            trackStarted: true,
            shutdownTimeout: .seconds(5400),
            restartBackoffMax: .milliseconds(2500)
        )
        expected.control = Configuration.Control(
            socket: "/run/swiftq/control.sock",
            mode: 0o600,
            group: .name("swiftq"),
            allowUIDs: [.id(0), .name("deploy"), .id(1000)],
            allowGIDs: [.name("adm"), .id(27)],
            maxRequestBytes: 1_048_576
        )
        expected.logging.level = .debug
        expected.tasks = [
            "reports.render": Configuration.ExecTask(
                name: "reports.render",
                argv: ["/usr/local/bin/render-report", "--format", "pdf"],
                timeout: .seconds(600)
            ),
            // Arguments are taken as written: a plain `no` is the text "no", not a boolean.
            "images.thumbnail": Configuration.ExecTask(
                name: "images.thumbnail",
                argv: ["convert", "-resize", "128x128", "no", "1"]
            ),
        ]
        #expect(configuration == expected)
        #expect(Array(configuration.tasks.keys) == ["reports.render", "images.thumbnail"])
    }

    @Test(arguments: [
        ("queues: celery, high ,low", ["celery", "high", "low"]),
        ("queues: celery", ["celery"]),
        ("queues: [celery, high]", ["celery", "high"]),
        ("queues:\n    - celery\n    - \"high\"", ["celery", "high"]),
        // YAML 1.1 would read these as a boolean and a number; queue names take the text as written.
        ("queues: [on, 1]", ["on", "1"]),
    ])
    func queuesFromListOrCommaSeparatedString(line: String, queues: [String]) throws {
        let configuration = try Configuration.parse("worker:\n  \(line)\n", file: "config.yaml")
        #expect(configuration.worker.queues == queues)
    }

    @Test(arguments: ["0660", "660", "0o660", "\"0660\"", "'660'", "\"0o660\"", "0x1b0", "0_660"])
    func modeIsReadAsOctal(written: String) throws {
        let configuration = try Configuration.parse("control:\n  mode: \(written)\n", file: "config.yaml")
        #expect(configuration.control.mode == 0o660)
    }

    @Test(arguments: [("0", UInt32(0)), ("0777", 0o777), ("600", 0o600), ("\"0400\"", 0o400), ("0o7", 0o7)])
    func modeBounds(written: String, mode: UInt32) throws {
        let configuration = try Configuration.parse("control:\n  mode: \(written)\n", file: "config.yaml")
        #expect(configuration.control.mode == mode)
    }

    @Test func plainScalarsThatYAMLReadsAsBooleansStayTextInTextSettings() throws {
        let yaml = """
            worker:
              hostname: no
              queues: [yes, off]
            control:
              group: on
            """
        let configuration = try Configuration.parse(yaml, file: "config.yaml")
        #expect(configuration.worker.hostname == "no")
        #expect(configuration.worker.queues == ["yes", "off"])
        #expect(configuration.control.group == .name("on"))
    }

    @Test func integersFollowYAML11() throws {
        let yaml = """
            worker:
              concurrency: 0x10
              prefetch_multiplier: 010
            control:
              max_request_bytes: 1_048_576
            """
        let configuration = try Configuration.parse(yaml, file: "config.yaml")
        #expect(configuration.worker.concurrency == 16)
        #expect(configuration.worker.prefetchMultiplier == 8)
        #expect(configuration.control.maxRequestBytes == 1_048_576)
    }

    @Test func usersAndGroupsAreNamesOrIds() throws {
        let yaml = """
            control:
              group: "100"
              allow_uids: [0, www-data, "1000", svc.deploy$]
              allow_gids: 4294967294
            """
        let configuration = try Configuration.parse(yaml, file: "config.yaml")
        #expect(configuration.control.group == .id(100))
        #expect(configuration.control.allowUIDs == [.id(0), .name("www-data"), .id(1000), .name("svc.deploy$")])
        #expect(configuration.control.allowGIDs == [.id(4_294_967_294)])
    }

    @Test(arguments: [
        ("redis://localhost:6379/0", "rpc://"),
        ("rediss://:secret@redis.example:6380/2", "embedded"),
        ("redis+socket:///run/redis/redis.sock", "unix:///run/redis/redis.sock"),
        ("unix:///run/redis/redis.sock", "redis+socket:///run/redis.sock?virtual_host=1"),
        ("amqps://user:pass@rabbit.example:5671/vhost", "rediss://redis.example:6380/0"),
        ("AMQP://guest@localhost//", "Redis://localhost"),
    ])
    func acceptedURLSchemes(broker: String, backend: String) throws {
        let yaml = "broker:\n  url: \(broker)\nresult_backend:\n  url: \(backend)\n"
        let configuration = try Configuration.parse(yaml, file: "config.yaml")
        #expect(configuration.broker.url == broker)
        #expect(configuration.resultBackend.url == backend)
    }

    @Test func nullResultBackendMeansNoResults() throws {
        let configuration = try Configuration.parse("result_backend:\n  url: ~\n", file: "config.yaml")
        #expect(configuration.resultBackend.url == nil)
    }

    @Test(arguments: LogLevel.allCases)
    func logLevelsAreCaseInsensitive(level: LogLevel) throws {
        for written in [level.rawValue, level.rawValue.uppercased()] {
            let configuration = try Configuration.parse("logging:\n  level: \(written)\n", file: "config.yaml")
            #expect(configuration.logging.level == level)
        }
    }

    @Test func logLevelsAreOrderedByVerbosity() {
        #expect(LogLevel.trace < .debug)
        #expect(LogLevel.warning < .error)
        #expect(!(LogLevel.critical < .critical))
        #expect(LogLevel.allCases == LogLevel.allCases.sorted())
    }

    @Test func durationsInTheFile() throws {
        let yaml = """
            worker:
              shutdown_timeout: 0
              restart_backoff_max: "2m30s"
            """
        let configuration = try Configuration.parse(yaml, file: "config.yaml")
        #expect(configuration.worker.shutdownTimeout == .zero)
        #expect(configuration.worker.restartBackoffMax == .seconds(150))
    }

    @Test(arguments: [
        ("true", true), ("false", false), ("yes", true), ("no", false), ("on", true), ("off", false),
        ("True", true), ("FALSE", false), ("Yes", true), ("NO", false), ("On", true), ("OFF", false),
    ])
    func booleansFollowYAML11(written: String, value: Bool) throws {
        let yaml = """
            result_backend:
              extended: \(written)
            worker:
              acks_late: \(written)
              track_started: \(written)
            """
        let configuration = try Configuration.parse(yaml, file: "config.yaml")
        #expect(configuration.resultBackend.extended == value)
        #expect(configuration.worker.acksLate == value)
        #expect(configuration.worker.trackStarted == value)
    }

    @Test(arguments: [
        ("\"true\"", "\"true\" (a quoted string)"),
        ("'no'", "\"no\" (a quoted string)"),
        ("\"enabled\"", "\"enabled\""),
        ("1", "1"),
        ("0", "0"),
        ("y", "\"y\""),
        ("~", "~"),
        ("", "nothing"),
        ("[true]", "a list"),
    ])
    func onlyPlainBooleansAreBooleans(written: String, found: String) {
        do {
            _ = try Configuration.parse("worker:\n  track_started: \(written)\n", file: "config.yaml")
            Issue.record("accepted \(written)")
        } catch {
            #expect(error.diagnostics.map(\.keyPath) == ["worker.track_started"])
            #expect(error.diagnostics.map(\.message) == ["expected true or false, got \(found)"])
        }
    }

    @Test func resultsMayNeverExpire() throws {
        let configuration = try Configuration.parse("result_backend:\n  expires: 0s\n", file: "config.yaml")
        #expect(configuration.resultBackend.expires == .zero)
    }

    @Test func anchorsAndAliasesResolve() throws {
        let yaml = """
            worker:
              shutdown_timeout: &timeout 45s
              restart_backoff_max: *timeout
            """
        let configuration = try Configuration.parse(yaml, file: "config.yaml")
        #expect(configuration.worker.restartBackoffMax == .seconds(45))
    }

    @Test func diagnosticDescriptionFormats() {
        let positioned = ConfigurationDiagnostic(
            file: "config.yaml",
            line: 12,
            column: 16,
            keyPath: "worker.concurrency",
            message: "expected a positive integer, got \"four\""
        )
        #expect(
            positioned.description == "config.yaml:12:16: worker.concurrency: expected a positive integer, got \"four\""
        )
        let unpositioned = ConfigurationDiagnostic(file: "config.yaml", message: "cannot read configuration: oops")
        #expect(unpositioned.description == "config.yaml: cannot read configuration: oops")
        let error = ConfigurationError(diagnostics: [positioned, unpositioned])
        #expect(error.description == "\(positioned)\n\(unpositioned)")
    }
}
