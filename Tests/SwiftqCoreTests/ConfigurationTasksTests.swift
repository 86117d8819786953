import SwiftqCore
import Testing

/// The `tasks` section: names chosen in the file, each a program to run. One rejected file per error lives in
/// `ConfigurationErrorTests`; these cover what the fixtures do not.
@Suite("Configuration: exec tasks")
struct ConfigurationTasksTests {
    /// The keys of a task entry, as messages list them.
    static let keys =
        "exec, timeout, max_retries, default_retry_delay, retry_backoff, retry_backoff_max, retry_jitter, "
        + "autoretry, soft_time_limit, time_limit, rate_limit, acks_late, reject_on_worker_lost, "
        + "acks_on_failure_or_timeout"

    @Test func tasksKeepTheFileOrder() throws {
        let yaml = """
            tasks:
              zeta.last:
                exec: [/bin/true]
              alpha.first:
                exec: [/bin/false]
              mid:
                exec: [true]
            """
        let configuration = try Configuration.parse(yaml, file: "config.yaml")
        #expect(Array(configuration.tasks.keys) == ["zeta.last", "alpha.first", "mid"])
        #expect(configuration.tasks["mid"] == Configuration.ExecTask(name: "mid", argv: ["true"]))
    }

    @Test(arguments: ["tasks:\n", "tasks: ~\n", "tasks: {}\n", "tasks:\n  # reports.render:\n  #   exec: [x]\n"])
    func emptyTasksSectionMeansNoTasks(yaml: String) throws {
        #expect(try Configuration.parse(yaml, file: "config.yaml").tasks.isEmpty)
    }

    @Test func argumentsAreTakenVerbatim() throws {
        let yaml = """
            tasks:
              t:
                exec:
                  - /usr/bin/env
                  - "  two  spaces  "
                  - 1.0
                  - on
                  - "~"
                  - |
                    line
                  - --name=a b
            """
        let configuration = try Configuration.parse(yaml, file: "config.yaml")
        #expect(
            configuration.tasks["t"]?.argv == [
                "/usr/bin/env", "  two  spaces  ", "1.0", "on", "~", "line\n", "--name=a b",
            ]
        )
    }

    @Test func timeoutIsOptionalAndNullMeansNoLimit() throws {
        let yaml = """
            tasks:
              a:
                exec: [a]
              b:
                exec: [b]
                timeout: ~
              c:
                exec: [c]
                timeout: 1.5
            """
        let configuration = try Configuration.parse(yaml, file: "config.yaml")
        #expect(configuration.tasks["a"]?.timeout == nil)
        #expect(configuration.tasks["b"]?.timeout == nil)
        #expect(configuration.tasks["c"]?.timeout == .milliseconds(1500))
    }

    @Test(arguments: ["swiftq", "Swiftq.ping", "swiftqx.ping", "app.swiftq.ping", "name with spaces", "1"])
    func onlyTheSwiftqDotPrefixIsReserved(name: String) throws {
        let configuration = try Configuration.parse("tasks:\n  \"\(name)\":\n    exec: [x]\n", file: "config.yaml")
        #expect(Array(configuration.tasks.keys) == [name])
        #expect(configuration.tasks[name]?.name == name)
    }

    @Test func everyProblemInATaskIsReported() {
        let yaml = """
            tasks:
              swiftq.custom:
                exec: [./run, "", [nested], ~]
                timeout: -5s
                retries: 3
            """
        let expected: [String] = [
            "2:3: tasks.swiftq.custom: task names starting with \"swiftq.\" are reserved for built-in tasks",
            "3:12: tasks.swiftq.custom.exec[0]: expected an absolute path or a command name to look up in PATH, "
                + "got \"./run\"",
            "3:19: tasks.swiftq.custom.exec[1]: expected a non-empty string, got \"\"",
            "3:23: tasks.swiftq.custom.exec[2]: expected a string, got a list",
            "3:33: tasks.swiftq.custom.exec[3]: expected a string, got ~",
            "4:14: tasks.swiftq.custom.timeout: expected a positive duration such as 30s, got \"-5s\"",
            "5:5: tasks.swiftq.custom.retries: unknown key; expected one of \(Self.keys)",
        ]
        do {
            _ = try Configuration.parse(yaml, file: "config.yaml")
            Issue.record("accepted invalid tasks")
        } catch {
            let found = error.diagnostics.map { String($0.description.dropFirst("config.yaml:".count)) }
            #expect(found == expected)
        }
    }

    @Test func nullTaskIsNotATask() {
        do {
            _ = try Configuration.parse("tasks:\n  reports.render:\n", file: "config.yaml")
            Issue.record("accepted a task without settings")
        } catch {
            #expect(
                error.description
                    == "config.yaml:2:18: tasks.reports.render: expected a mapping of task settings (\(Self.keys)), "
                    + "got nothing"
            )
        }
    }

    @Test func nulInAnArgumentIsRejected() {
        do {
            _ = try Configuration.parse("tasks:\n  t:\n    exec: [x, \"a\\0b\"]\n", file: "config.yaml")
            Issue.record("accepted a NUL character")
        } catch {
            #expect(
                error.description
                    == "config.yaml:3:15: tasks.t.exec[1]: expected a string without NUL characters, got \"a\\u{0}b\""
            )
        }
    }

    /// YAML treats a plain `yes` (a boolean) and a quoted `"yes"` as different keys; as task names they are one.
    @Test func sameNameWrittenTwoWaysIsADuplicate() {
        let yaml = """
            tasks:
              yes:
                exec: [a]
              "yes":
                exec: [b]
            """
        do {
            _ = try Configuration.parse(yaml, file: "config.yaml")
            Issue.record("accepted a duplicate task")
        } catch {
            #expect(error.description == "config.yaml:4:3: tasks.yes: duplicate key; already set on line 2")
        }
    }

    @Test func duplicateTaskKeyIsLocated() {
        let yaml = """
            tasks:
              reports.render:
                exec: [a]
                timeout: 1m
                exec: [b]
            """
        do {
            _ = try Configuration.parse(yaml, file: "config.yaml")
            Issue.record("accepted a duplicate key")
        } catch {
            #expect(
                error.description == "config.yaml:5:5: tasks.reports.render.exec: duplicate key; already set on line 3"
            )
        }
    }

    @Test func taskKeyOutsideATaskPointsToTasks() {
        do {
            _ = try Configuration.parse("worker:\n  exec: [render]\n", file: "config.yaml")
            Issue.record("accepted exec under worker")
        } catch {
            #expect(error.diagnostics.map(\.message) == ["unknown key; did you mean \"tasks.<name>.exec\"?"])
        }
    }

    @Test func misspeltSectionSuggestsTasks() {
        do {
            _ = try Configuration.parse("task:\n  t:\n    exec: [x]\n", file: "config.yaml")
            Issue.record("accepted task:")
        } catch {
            #expect(error.diagnostics.map(\.message) == ["unknown key; did you mean \"tasks\"?"])
        }
    }

    @Test func execTaskInitDefaultsToNoTimeout() {
        let task = Configuration.ExecTask(name: "reports.render", argv: ["render"])
        #expect(task.timeout == nil)
        #expect(Configuration.ExecTask.reservedNamePrefix == "swiftq.")
        #expect(Configuration().tasks.isEmpty)
    }
}
