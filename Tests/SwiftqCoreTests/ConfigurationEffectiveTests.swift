import Foundation
import OrderedCollections
import SwiftqCore
import Testing

/// The configuration the daemon runs with: environment overrides, password files, and the YAML it is printed as
/// (`--print-config`) and handed to the consumer.
@Suite("Configuration: effective values")
struct ConfigurationEffectiveTests {
    /// A directory for password files, removed afterwards.
    final class Scratch {
        let path: String
        init() throws {
            path = FileManager.default.temporaryDirectory.appending(path: "swiftq-effective-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        }
        deinit { try? FileManager.default.removeItem(atPath: path) }
        func write(_ name: String, _ text: String) throws -> String {
            let file = path + "/" + name
            try Data(text.utf8).write(to: URL(filePath: file))
            return file
        }
    }

    static func diagnostics(_ yaml: String, environment: [String: String] = [:]) -> [String] {
        do {
            _ = try Configuration.effective(parsing: yaml, file: "config.yaml", environment: environment)
            Issue.record("accepted:\n\(yaml)")
            return []
        } catch {
            return error.diagnostics.map(\.description)
        }
    }

    // MARK: - Environment

    @Test func environmentBeatsTheFileAndTheFileBeatsTheDefault() throws {
        let yaml = "broker:\n  url: redis://file:6379/0\nresult_backend:\n  url: redis://file:6379/1\n"
        let fileOnly = try Configuration.effective(parsing: yaml, file: "config.yaml", environment: [:])
        #expect(fileOnly.broker.url == "redis://file:6379/0")
        let overridden = try Configuration.effective(
            parsing: yaml,
            file: "config.yaml",
            environment: [
                "SWIFTQ_BROKER_URL": "redis://env:6379/0", "SWIFTQ_RESULT_BACKEND_URL": "redis://env:6379/1",
                "SWIFTQ_CONTROL_SOCKET": "/run/swiftq/a/swiftqd.sock",
            ]
        )
        #expect(overridden.broker.url == "redis://env:6379/0")
        #expect(overridden.resultBackend.url == "redis://env:6379/1")
        #expect(overridden.control.socket == "/run/swiftq/a/swiftqd.sock")
        let defaults = try Configuration.effective(
            parsing: "",
            file: "config.yaml",
            environment: ["SWIFTQ_BROKER_URL": "amqp://guest@mq//"]
        )
        #expect(defaults.broker.url == "amqp://guest@mq//")
        #expect(defaults.resultBackend.url == nil)
    }

    @Test func anEmptyVariableCountsAsUnset() throws {
        let configuration = try Configuration.effective(
            parsing: "broker:\n  url: redis://file:6379/0\n",
            file: "config.yaml",
            environment: ["SWIFTQ_BROKER_URL": ""]
        )
        #expect(configuration.broker.url == "redis://file:6379/0")
    }

    @Test func anInvalidVariableIsReportedByName() {
        #expect(
            Self.diagnostics("", environment: ["SWIFTQ_BROKER_URL": "localhost:6379"]) == [
                "$SWIFTQ_BROKER_URL: broker.url: expected a URL with scheme embedded, redis, rediss, redis+socket, "
                    + "unix, sentinel, amqp or amqps, got \"localhost:6379\""
            ]
        )
        #expect(
            Self.diagnostics("", environment: ["SWIFTQ_CONTROL_SOCKET": "relative.sock"]) == [
                "$SWIFTQ_CONTROL_SOCKET: control.socket: expected an absolute path, got \"relative.sock\""
            ]
        )
    }

    @Test func parseAloneIgnoresTheEnvironmentAndPasswordFiles() throws {
        let configuration = try Configuration.parse(
            "broker:\n  url: redis://h:6379/0\n  password_file: /nonexistent/password\n",
            file: "config.yaml"
        )
        #expect(configuration.broker.url == "redis://h:6379/0")
        #expect(configuration.broker.passwordFile == "/nonexistent/password")
    }

    // MARK: - Password files

    @Test func thePasswordFileGoesIntoTheURLPercentEncoded() throws {
        let scratch = try Scratch()
        let broker = try scratch.write("broker", "p@ss:w/rd%\n")
        let backend = try scratch.write("backend", "s3cret\r\nsecond line is ignored\n")
        let configuration = try Configuration.effective(
            parsing: """
                broker:
                  url: amqp://celery@mq.example:5672/swiftq
                  password_file: \(broker)
                result_backend:
                  url: redis://redis.example:6379/1
                  password_file: \(backend)

                """,
            file: "config.yaml",
            environment: [:]
        )
        #expect(configuration.broker.url == "amqp://celery:p%40ss%3Aw%2Frd%25@mq.example:5672/swiftq")
        #expect(configuration.resultBackend.url == "redis://:s3cret@redis.example:6379/1")
        #expect(configuration.broker.passwordFile == broker)
    }

    @Test func thePasswordFileAppliesToTheURLFromTheEnvironment() throws {
        let scratch = try Scratch()
        let password = try scratch.write("password", "hunter2")
        let configuration = try Configuration.effective(
            parsing: "broker:\n  url: redis://file:6379/0\n  password_file: \(password)\n",
            file: "config.yaml",
            environment: ["SWIFTQ_BROKER_URL": "unix:///run/redis/redis.sock?db=2"]
        )
        #expect(configuration.broker.url == "unix://:hunter2@/run/redis/redis.sock?db=2")
    }

    @Test func anUnreadablePasswordFileIsReportedAtItsKeyWithTheSystemError() throws {
        let scratch = try Scratch()
        let missing = scratch.path + "/missing"
        let empty = try scratch.write("empty", "\n")
        #expect(
            Self.diagnostics(
                """
                broker:
                  url: redis://h:6379/0
                  password_file: \(missing)
                result_backend:
                  url: redis://h:6379/1
                  password_file: \(empty)

                """
            ) == [
                "config.yaml:3:3: broker.password_file: cannot read password file \(missing): No such file or directory",
                "config.yaml:6:3: result_backend.password_file: password file \(empty) is empty: expected the "
                    + "password on its first line",
            ]
        )
        #expect(
            Self.diagnostics("broker:\n  url: redis://h/0\n  password_file: \(scratch.path)\n") == [
                "config.yaml:3:3: broker.password_file: cannot read password file \(scratch.path): Is a directory"
            ]
        )
    }

    @Test func passwordFilesCanBeLeftUnread() throws {
        let configuration = try Configuration.effective(
            parsing: "broker:\n  url: redis://h:6379/0\n  password_file: /nonexistent/password\n",
            file: "config.yaml",
            environment: ["SWIFTQ_CONTROL_SOCKET": "/run/x.sock"],
            readingPasswordFiles: false
        )
        #expect(configuration.broker.url == "redis://h:6379/0")
        #expect(configuration.control.socket == "/run/x.sock")
    }

    @Test func aPasswordInTheURLAndAPasswordFileIsAnErrorNamingBoth() throws {
        let scratch = try Scratch()
        let password = try scratch.write("password", "new")
        #expect(
            Self.diagnostics("broker:\n  url: amqp://guest:old@mq//\n  password_file: \(password)\n") == [
                "config.yaml:3:3: broker.password_file: broker.url already contains a password: give it either in "
                    + "broker.url or in broker.password_file, not both"
            ]
        )
        #expect(
            Self.diagnostics(
                "broker:\n  password_file: \(password)\n",
                environment: ["SWIFTQ_BROKER_URL": "redis://h:6379/0?password=old"]
            ) == [
                "config.yaml:2:3: broker.password_file: SWIFTQ_BROKER_URL already contains a password: give it either "
                    + "in SWIFTQ_BROKER_URL or in broker.password_file, not both"
            ]
        )
    }

    @Test func aPasswordFileNeedsAURLThatTakesAPassword() throws {
        let scratch = try Scratch()
        let password = try scratch.write("password", "pw")
        #expect(
            Self.diagnostics("broker:\n  password_file: \(password)\n") == [
                "config.yaml:2:3: broker.password_file: broker.url is embedded, which takes no password; remove "
                    + "broker.password_file"
            ]
        )
        #expect(
            Self.diagnostics("result_backend:\n  password_file: \(password)\n") == [
                "config.yaml:2:3: result_backend.password_file: result_backend.url is not set: a password file needs "
                    + "a URL to put the password in"
            ]
        )
        #expect(
            Self.diagnostics("broker:\n  password_file: relative/password\n") == [
                "config.yaml:2:18: broker.password_file: expected an absolute path, got \"relative/password\""
            ]
        )
    }

    // MARK: - YAML output

    static let tricky = Configuration(
        broker: Configuration.Broker(
            url: "amqp://user:p%40ss@mq:5672/v",
            visibilityTimeout: .milliseconds(1500),
            globalQoS: .never
        ),
        resultBackend: Configuration.ResultBackend(
            url: "unix://:pw@/run/redis.sock?db=1",
            expires: .zero,
            extended: true,
            passwordFile: "/etc/swiftq/backend password"
        ),
        worker: Configuration.Worker(
            hostname: "no",
            queues: ["celery", "8", "a: b", "#hash", "ünï ✓", "yes", "-", "~"],
            concurrency: 3,
            prefetchMultiplier: 0,
            acksLate: false,
            trackStarted: true,
            shutdownTimeout: .seconds(5400),
            restartBackoffMax: .seconds(2)
        ),
        control: Configuration.Control(
            socket: "/run/swiftq/x.sock",
            mode: 0o600,
            group: .name("swiftq"),
            allowUIDs: [.id(0), .name("deploy")],
            allowGIDs: [.id(27)],
            maxRequestBytes: 2048
        ),
        logging: Configuration.Logging(level: .debug),
        tasks: [
            "reports.render": Configuration.ExecTask(
                name: "reports.render",
                argv: ["/usr/bin/render", "--title", "\"quoted\" \\ back\tslash\nnewline", "null"],
                timeout: .seconds(600)
            ),
            "true": Configuration.ExecTask(name: "true", argv: ["true"]),
        ]
    )

    @Test(arguments: [Configuration(), Self.tricky])
    func theYAMLReadsBackAsTheSameConfiguration(_ configuration: Configuration) throws {
        let yaml = configuration.yaml(maskingSecrets: false)
        #expect(try Configuration.parse(yaml, file: "printed.yaml") == configuration, "\(yaml)")
    }

    @Test func theYAMLShowsEveryKeyWithItsDefault() throws {
        let yaml = Configuration().yaml(maskingSecrets: true)
        var section = ""
        var shown: Set<String> = []
        for line in yaml.split(separator: "\n") {
            if !line.hasPrefix(" "), let name = line.split(separator: ":").first {
                section = String(name)
            } else if line.hasPrefix("  "), !line.hasPrefix("   "), let key = line.split(separator: ":").first {
                shown.insert("\(section).\(key.trimmingCharacters(in: .whitespaces))")
            }
        }
        #expect(shown == Set(Configuration.knownKeyPaths))
        #expect(yaml.contains("  visibility_timeout: 1h\n"))
        #expect(yaml.contains("  mode: 0660\n"))
        #expect(yaml.contains("tasks: {}\n"))
    }

    @Test func maskingHidesPasswordsAndNothingElse() throws {
        let masked = Self.tricky.yaml(maskingSecrets: true)
        #expect(masked.contains("  url: amqp://user:***@mq:5672/v\n"))
        #expect(masked.contains("  url: unix://:***@/run/redis.sock?db=1\n"))
        #expect(!masked.contains("p%40ss") && !masked.contains(":pw@"))
        #expect(masked.contains("  password_file: \"/etc/swiftq/backend password\"\n"))
        // The masked text is still a valid file, with the mask as the password.
        let reread = try Configuration.parse(masked, file: "printed.yaml")
        #expect(reread.broker.url == "amqp://user:***@mq:5672/v")
        #expect(reread.worker == Self.tricky.worker)
    }

    @Test func urlCredentials() {
        #expect(URLCredentials.masked("redis://h:6379/0?db=1&password=x") == "redis://h:6379/0?db=1&password=***")
        #expect(URLCredentials.masked("amqp://guest@mq//") == "amqp://guest@mq//")
        #expect(URLCredentials.masked("embedded") == "embedded")
        #expect(URLCredentials.hasPassword("amqp://guest:guest@mq//"))
        #expect(URLCredentials.hasPassword("redis+socket:///s.sock?password=x"))
        #expect(!URLCredentials.hasPassword("amqp://guest@mq//"))
        #expect(!URLCredentials.hasPassword("redis://h:6379/0"))
        #expect(URLCredentials.settingPassword("ü €", in: "redis://h/0") == "redis://:%C3%BC%20%E2%82%AC@h/0")
    }
}
