import Foundation
import SwiftqCore
import Testing

/// What one invalid fixture must produce: a single diagnostic at this position, for this key, with this message.
struct ExpectedDiagnostic: Sendable, CustomTestStringConvertible {
    var fixture: String
    var line: Int
    var column: Int
    var keyPath: String?
    var message: String

    init(_ fixture: String, _ line: Int, _ column: Int, _ keyPath: String?, _ message: String) {
        self.fixture = fixture
        self.line = line
        self.column = column
        self.keyPath = keyPath
        self.message = message
    }

    var testDescription: String { fixture }
}

@Suite("Configuration: rejected files")
struct ConfigurationErrorTests {
    static let brokerSchemes = "embedded, redis, rediss, redis+socket, unix, sentinel, amqp or amqps"

    static let cases: [ExpectedDiagnostic] = [
        // Wrong types for integer settings: the message shows what was found.
        .init(
            "concurrency-not-integer.yaml",
            4,
            16,
            "worker.concurrency",
            "expected a positive integer, got \"four\""
        ),
        .init("concurrency-float.yaml", 2, 16, "worker.concurrency", "expected a positive integer, got 2.5"),
        .init("concurrency-boolean.yaml", 2, 16, "worker.concurrency", "expected a positive integer, got yes"),
        .init(
            "concurrency-quoted.yaml",
            2,
            16,
            "worker.concurrency",
            "expected a positive integer, got \"4\" (a quoted string)"
        ),
        .init("concurrency-empty.yaml", 2, 15, "worker.concurrency", "expected a positive integer, got nothing"),
        // Out of range.
        .init("concurrency-negative.yaml", 2, 16, "worker.concurrency", "expected an integer from 1 to 1024, got -2"),
        .init(
            "concurrency-too-large.yaml",
            2,
            16,
            "worker.concurrency",
            "expected an integer from 1 to 1024, got 5000"
        ),
        .init(
            "prefetch-negative.yaml",
            2,
            24,
            "worker.prefetch_multiplier",
            "expected an integer from 0 to 65535, got -1"
        ),
        .init(
            "max-request-bytes-too-small.yaml",
            2,
            22,
            "control.max_request_bytes",
            "expected an integer from 1024 to 16777216, got 100"
        ),
        // Unknown keys: position of the key, with a suggestion when one is close.
        .init("unknown-key-nested.yaml", 3, 3, "worker.concurency", "unknown key; did you mean \"concurrency\"?"),
        .init("unknown-section.yaml", 3, 1, "workr", "unknown key; did you mean \"worker\"?"),
        .init("unknown-key-misplaced.yaml", 3, 1, "concurrency", "unknown key; did you mean \"worker.concurrency\"?"),
        .init("unknown-key-no-suggestion.yaml", 2, 3, "logging.destination", "unknown key; expected one of level"),
        .init(
            "merge-key.yaml",
            4,
            3,
            "result_backend.<<",
            "merge keys (<<) are not supported; write the settings out"
        ),
        // Structure.
        .init("section-not-mapping.yaml", 1, 9, "worker", "expected a mapping of worker settings, got 4"),
        .init(
            "top-level-not-mapping.yaml",
            1,
            1,
            nil,
            "expected a mapping of configuration sections (broker, result_backend, worker, control, logging, "
                + "tasks, beat, events, metrics, health), got a list"
        ),
        // YAML syntax: libyaml's position and problem.
        .init("syntax-error.yaml", 3, 16, nil, "mapping values are not allowed in this context"),
        .init(
            "syntax-error-unclosed-quote.yaml",
            5,
            1,
            nil,
            "found unexpected end of stream (while scanning a quoted scalar at line 2, column 8)"
        ),
        .init("multiple-documents.yaml", 3, 1, nil, "expected a single YAML document, found another one"),
        // Duplicate keys: pointed at the repetition, with the first occurrence in the message.
        .init("duplicate-key.yaml", 4, 3, "worker.concurrency", "duplicate key; already set on line 2"),
        .init("duplicate-section.yaml", 5, 1, "worker", "duplicate key; already set on line 1"),
        .init(
            "duplicate-key-flow.yaml",
            1,
            10,
            nil,
            "duplicate key \"concurrency\": each key may appear only once in a mapping"
        ),
        // Durations.
        .init(
            "duration-invalid.yaml",
            2,
            21,
            "worker.shutdown_timeout",
            "expected a duration such as 30s, 5m or 1h30m, got \"soon\""
        ),
        .init(
            "duration-negative.yaml",
            2,
            21,
            "worker.shutdown_timeout",
            "expected a non-negative duration, got \"-5s\""
        ),
        .init(
            "duration-zero-backoff.yaml",
            2,
            24,
            "worker.restart_backoff_max",
            "expected a positive duration such as 30s, got \"0s\""
        ),
        .init(
            "visibility-timeout-negative.yaml",
            2,
            23,
            "broker.visibility_timeout",
            "expected a positive duration such as 30s, got \"-1h\""
        ),
        .init(
            "visibility-timeout-zero.yaml",
            3,
            23,
            "broker.visibility_timeout",
            "expected a positive duration such as 30s, got 0"
        ),
        // Booleans: plain YAML 1.1 booleans only.
        .init("bool-invalid.yaml", 2, 18, "worker.track_started", "expected true or false, got \"maybe\""),
        .init(
            "bool-quoted.yaml",
            2,
            14,
            "worker.acks_late",
            "expected true or false, got \"false\" (a quoted string)"
        ),
        .init("bool-number.yaml", 2, 13, "result_backend.extended", "expected true or false, got 1"),
        // File mode.
        .init(
            "mode-invalid.yaml",
            2,
            9,
            "control.mode",
            "expected an octal file mode from 0 to 0777 such as 0660, got \"rw-rw----\""
        ),
        .init(
            "mode-too-large.yaml",
            2,
            9,
            "control.mode",
            "expected an octal file mode from 0 to 0777 such as 0660, got \"4755\""
        ),
        .init(
            "mode-not-octal.yaml",
            2,
            9,
            "control.mode",
            "expected an octal file mode from 0 to 0777 such as 0660, got 0680"
        ),
        // Socket path.
        .init(
            "socket-relative.yaml",
            2,
            11,
            "control.socket",
            "expected an absolute path, got \"run/swiftq.sock\""
        ),
        .init(
            "socket-too-long.yaml",
            2,
            11,
            "control.socket",
            "expected a path of at most 107 bytes (the limit of a Unix socket address), got 111 bytes"
        ),
        // URLs.
        .init(
            "broker-scheme.yaml",
            2,
            8,
            "broker.url",
            "expected a URL with scheme \(brokerSchemes), got \"reddis://localhost:6379/0\"; did you mean \"redis\"?"
        ),
        .init(
            "result-backend-scheme.yaml",
            2,
            8,
            "result_backend.url",
            "expected a URL with scheme redis, rediss, redis+socket, unix, sentinel, rpc or embedded, "
                + "got \"amqp://guest@localhost//\""
        ),
        // Queues.
        .init(
            "queues-duplicate.yaml",
            5,
            7,
            "worker.queues[2]",
            "\"celery\" is listed twice (first as worker.queues[0])"
        ),
        .init("queues-empty-entry.yaml", 2, 11, "worker.queues[1]", "expected a queue name, got \"\""),
        .init("queues-empty-list.yaml", 2, 11, "worker.queues", "expected at least one queue, got an empty list"),
        .init("queues-item-not-string.yaml", 4, 7, "worker.queues[1]", "expected a string, got a mapping"),
        // Other values.
        .init(
            "hostname-empty.yaml",
            2,
            13,
            "worker.hostname",
            "expected a node name such as celery@%h (not empty, no whitespace), got \"\""
        ),
        .init(
            "log-level-invalid.yaml",
            2,
            10,
            "logging.level",
            "expected one of trace, debug, info, notice, warning, error, critical, got \"warn\"; "
                + "did you mean \"warning\"?"
        ),
        .init(
            "group-not-scalar.yaml",
            2,
            10,
            "control.group",
            "expected a group name or numeric gid, got a list"
        ),
        // Tasks: key paths name the task, then the key and the list index.
        .init(
            "tasks-not-mapping.yaml",
            2,
            3,
            "tasks",
            "expected a mapping of task names to task settings, got a list"
        ),
        .init(
            "task-not-mapping.yaml",
            2,
            19,
            "tasks.reports.render",
            "expected a mapping of task settings (\(ConfigurationTasksTests.keys)), got \"/usr/local/bin/render-report\""
        ),
        .init("task-name-empty.yaml", 2, 3, "tasks", "expected a task name, got \"\""),
        .init(
            "task-reserved-name.yaml",
            3,
            3,
            "tasks.swiftq.ping",
            "task names starting with \"swiftq.\" are reserved for built-in tasks"
        ),
        .init(
            "task-unknown-key.yaml",
            4,
            5,
            "tasks.reports.render.timout",
            "unknown key; did you mean \"timeout\"?"
        ),
        .init("task-exec-missing.yaml", 2, 3, "tasks.reports.render", "missing required key \"exec\""),
        .init(
            "task-exec-not-list.yaml",
            3,
            11,
            "tasks.reports.render.exec",
            "expected a list of the program and its arguments, got \"/usr/local/bin/render-report --format pdf\""
        ),
        .init(
            "task-exec-empty.yaml",
            3,
            11,
            "tasks.reports.render.exec",
            "expected a list with at least the program to run, got an empty list"
        ),
        .init(
            "task-exec-entry-not-string.yaml",
            5,
            9,
            "tasks.reports.render.exec[1]",
            "expected a string, got a mapping"
        ),
        .init(
            "task-exec-entry-empty.yaml",
            3,
            42,
            "tasks.reports.render.exec[1]",
            "expected a non-empty string, got \"\""
        ),
        .init(
            "task-exec-relative.yaml",
            3,
            12,
            "tasks.reports.render.exec[0]",
            "expected an absolute path or a command name to look up in PATH, got \"bin/render-report\""
        ),
        .init(
            "task-timeout-zero.yaml",
            4,
            14,
            "tasks.reports.render.timeout",
            "expected a positive duration such as 30s, got \"0s\""
        ),
        .init("queue-type-invalid.yaml", 2, 15, "broker.queue_type", "expected classic or quorum, got \"lazy\""),
        .init("global-qos-invalid.yaml", 2, 15, "broker.global_qos", "expected auto or false, got true"),
        // A reload must never crash the supervisor: nesting and alias expansion are bounded (found by FuzzTests).
        .init("yaml-too-deep.yaml", 2, 73, nil, "collections nested deeper than 64 levels"),
        .init(
            "yaml-alias-bomb.yaml",
            5,
            36,
            nil,
            "the document stands for more than 100000 nodes once its aliases are expanded"
        ),
        .init(
            "queue-max-priority-too-large.yaml",
            2,
            23,
            "broker.queue_max_priority",
            "expected an integer from 1 to 255, got 256"
        ),
        .init(
            "task-timeout-invalid.yaml",
            4,
            14,
            "tasks.reports.render.timeout",
            "expected a duration such as 30s, 5m or 1h30m, got \"forever\""
        ),
    ]

    @Test(arguments: cases)
    func invalidFixtureIsRejectedWithOneDiagnostic(expected: ExpectedDiagnostic) throws {
        let path = try ConfigurationFixture.path(expected.fixture)
        let diagnostics = try ConfigurationFixture.diagnostics(expected.fixture)
        try #require(diagnostics.count == 1, "\(diagnostics)")
        let diagnostic = diagnostics[0]
        #expect(diagnostic.file == path)
        #expect(diagnostic.line == expected.line)
        #expect(diagnostic.column == expected.column)
        #expect(diagnostic.keyPath == expected.keyPath)
        #expect(diagnostic.message == expected.message)
    }

    @Test func descriptionNamesFileLineColumnKeyAndMessage() throws {
        let path = try ConfigurationFixture.path("concurrency-not-integer.yaml")
        let diagnostics = try ConfigurationFixture.diagnostics("concurrency-not-integer.yaml")
        #expect(
            diagnostics.map(\.description) == [
                "\(path):4:16: worker.concurrency: expected a positive integer, got \"four\""
            ]
        )
    }

    @Test func passEnvironmentTakesNamesAndPrefixes() throws {
        let yaml = """
            worker:
              pass_environment: [APP_SETTING, "1BAD", "A B", APP_SETTING, "*"]

            """
        do {
            _ = try Configuration.parse(yaml, file: "config.yaml")
            Issue.record("accepted")
        } catch {
            let described = error.diagnostics.map(\.description)
            #expect(
                described.first
                    == "config.yaml:2:35: worker.pass_environment[1]: expected an environment variable name (letters, "
                    + "digits and _, not starting with a digit), optionally ending in * for a prefix, got \"1BAD\"",
                "\(described)"
            )
            #expect(described.count == 4, "\(described)")
            #expect(described.contains { $0.contains("pass_environment[2]") && $0.contains("\"A B\"") })
            #expect(described.contains { $0.contains("pass_environment[4]") })
            #expect(described.contains { $0.contains("pass_environment[3]") && $0.contains("APP_SETTING") })
        }
        let good = try Configuration.parse("worker:\n  pass_environment: APP_SETTING, MYAPP_*\n", file: "config.yaml")
        #expect(good.worker.passEnvironment == ["APP_SETTING", "MYAPP_*"])
        #expect(try Configuration.parse("worker:\n  pass_environment: []\n", file: "c").worker.passEnvironment == [])
    }

    @Test func remoteControlKeysAreCheckedWithTheirPositions() {
        let yaml = """
            worker:
              revokes_max: 0
              revokes_expire: soon
              state_db: relative/path.json
            control:
              admin_uids: ["www data"]
              broadcast: sometimes

            """
        do {
            _ = try Configuration.parse(yaml, file: "config.yaml")
            Issue.record("accepted")
        } catch {
            #expect(
                error.diagnostics.map(\.description) == [
                    "config.yaml:2:16: worker.revokes_max: expected an integer from 1 to 10000000, got 0",
                    "config.yaml:3:19: worker.revokes_expire: expected a duration such as 30s, 5m or 1h30m, got \"soon\"",
                    "config.yaml:4:13: worker.state_db: expected an absolute path, got \"relative/path.json\"",
                    "config.yaml:6:16: control.admin_uids[0]: expected a user name or numeric uid, got \"www data\"",
                    "config.yaml:7:14: control.broadcast: expected true, false or read-only, got \"sometimes\"",
                ]
            )
        }
        let good = try? Configuration.parse(
            "worker:\n  revokes_max: 10\n  revokes_expire: 1h\n  state_db: /var/lib/swiftq/revokes.json\n"
                + "control:\n  admin_gids: [0]\n  broadcast: read-only\n",
            file: "config.yaml"
        )
        #expect(good?.worker.revokesMax == 10)
        #expect(good?.worker.revokesExpire == .seconds(3600))
        #expect(good?.worker.stateDB == "/var/lib/swiftq/revokes.json")
        #expect(good?.control.broadcast == .readOnly)
        #expect((try? Configuration.parse("control:\n  broadcast: false\n", file: "c"))?.control.broadcast == .disabled)
        // The rendering the consumer receives reads back as the same value.
        if let good { #expect((try? Configuration.parse(good.yaml(maskingSecrets: false), file: "r")) == good) }
    }

    @Test func parseUsesTheFileNameAsGiven() {
        #expect(throws: ConfigurationError.self) {
            try Configuration.parse("worker:\n  concurrency: four\n", file: "config.yaml")
        }
        do {
            _ = try Configuration.parse("worker:\n  concurrency: four\n", file: "config.yaml")
        } catch {
            #expect(
                error.description == "config.yaml:2:16: worker.concurrency: expected a positive integer, got \"four\""
            )
        }
    }

    @Test func severalErrorsAreReportedTogetherInDocumentOrder() throws {
        let diagnostics = try ConfigurationFixture.diagnostics("several-errors.yaml")
        let summary = diagnostics.map { "\($0.line ?? 0):\($0.column ?? 0) \($0.keyPath ?? "-"): \($0.message)" }
        #expect(
            summary == [
                "3:8 broker.url: expected a URL with scheme \(Self.brokerSchemes), got \"http://localhost\"",
                "6:16 worker.concurrency: expected a positive integer, got \"four\"",
                "7:21 worker.shutdown_timeout: expected a duration such as 30s, 5m or 1h30m, got \"soon\"",
                "8:20 worker.queues[1]: \"celery\" is listed twice (first as worker.queues[0])",
                "11:3 control.mod: unknown key; did you mean \"mode\"?",
            ]
        )
    }

    @Test func everyInvalidListEntryIsReported() throws {
        let diagnostics = try ConfigurationFixture.diagnostics("allow-uids-invalid.yaml")
        let summary = diagnostics.map { "\($0.line ?? 0):\($0.column ?? 0) \($0.keyPath ?? "-"): \($0.message)" }
        #expect(
            summary == [
                "2:22 control.allow_uids[1]: expected a user name or numeric uid, got \"www data\"",
                "2:34 control.allow_uids[2]: expected a user name or numeric uid, got -1",
                "2:38 control.allow_uids[3]: expected a uid from 0 to 4294967294, got 4294967295",
            ]
        )
    }

    @Test func duplicateKeyIsLocatedWithWindowsLineEndings() throws {
        let yaml = "worker:\r\n  concurrency: 4\r\n\r\n  concurrency: 8\r\n"
        do {
            _ = try Configuration.parse(yaml, file: "config.yaml")
            Issue.record("accepted a duplicate key")
        } catch {
            #expect(error.description == "config.yaml:4:3: worker.concurrency: duplicate key; already set on line 2")
        }
    }

    @Test func ambiguousTypoSuggestsEveryCloseKey() throws {
        do {
            _ = try Configuration.parse("control:\n  allow: [root]\n", file: "config.yaml")
            Issue.record("accepted an unknown key")
        } catch {
            #expect(error.diagnostics.map(\.message) == ["unknown key; did you mean \"allow_uids\" or \"allow_gids\"?"])
        }
    }

    @Test func missingFileReportsStrerror() {
        let path = "/nonexistent-\(UUID().uuidString)/config.yaml"
        do {
            _ = try Configuration.load(contentsOf: path)
            Issue.record("loaded a missing file")
        } catch {
            #expect(
                error.diagnostics == [
                    ConfigurationDiagnostic(file: path, message: "cannot read configuration: No such file or directory")
                ]
            )
            #expect(error.description == "\(path): cannot read configuration: No such file or directory")
        }
    }

    @Test func directoryReportsStrerror() throws {
        let path = try ConfigurationFixture.path("")
        do {
            _ = try Configuration.load(contentsOf: path)
            Issue.record("loaded a directory")
        } catch {
            #expect(error.description == "\(path): cannot read configuration: Is a directory")
        }
    }

    @Test func invalidUTF8IsLocated() throws {
        let url = FileManager.default.temporaryDirectory.appending(path: "swiftq-config-\(UUID().uuidString).yaml")
        try Data("worker:\n  hostname: caf\u{E9}".utf8.dropLast(2) + [0xE9, 0x0A]).write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        do {
            _ = try Configuration.load(contentsOf: url.path)
            Issue.record("loaded invalid UTF-8")
        } catch {
            #expect(
                error.diagnostics == [
                    ConfigurationDiagnostic(
                        file: url.path,
                        line: 2,
                        column: 16,
                        message: "cannot read configuration: not valid UTF-8 text"
                    )
                ]
            )
        }
    }
}
