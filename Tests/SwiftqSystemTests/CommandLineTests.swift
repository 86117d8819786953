import Foundation
import Testing

/// The command-line interfaces of `swiftqd` and `swiftqctl`: options, output and exit codes.
@Suite struct CommandLineTests {
    static var repositoryRoot: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().path
    }

    @Test func checkConfigAcceptsTheShippedSampleConfiguration() throws {
        let result = try runCommand(
            Binaries.swiftqd,
            ["--check-config", "--config", Self.repositoryRoot + "/etc/swiftq/config.yaml"]
        )
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("configuration is valid"))
    }

    @Test func checkConfigExits78WithFileLineColumnAndKeyPath() throws {
        let directory = try TemporaryDirectory()
        let path = try directory.write(
            "config.yaml",
            """
            worker:
              concurrency: four
              concurency: 3
            logging:
              level: loud

            """
        )
        let result = try runCommand(Binaries.swiftqd, ["--check-config", "--config", path])
        #expect(result.status == 78)
        #expect(result.stderr.contains("\(path):2:16: worker.concurrency: expected a positive integer, got \"four\""))
        #expect(result.stderr.contains("worker.concurency"))
        #expect(result.stderr.contains("did you mean \"concurrency\"?"))
        #expect(result.stderr.contains("\(path):5:10: logging.level"))
    }

    @Test func checkConfigReportsYAMLSyntaxErrorsWithPosition() throws {
        let directory = try TemporaryDirectory()
        let path = try directory.write("config.yaml", "worker:\n  concurrency: [1, 2\n")
        let result = try runCommand(Binaries.swiftqd, ["--check-config", "--config", path])
        #expect(result.status == 78)
        #expect(result.stderr.contains("\(path):"))
        #expect(result.stderr.range(of: #":\d+:\d+: "#, options: .regularExpression) != nil, "\(result.stderr)")
    }

    @Test func aMissingConfigurationFileIsAConfigurationError() throws {
        let result = try runCommand(Binaries.swiftqd, ["--check-config", "--config", "/nonexistent/swiftq.yaml"])
        #expect(result.status == 78)
        #expect(
            result.stderr.contains("/nonexistent/swiftq.yaml: cannot read configuration: No such file or directory")
        )
    }

    @Test func theDaemonRefusesToStartOnAnInvalidConfiguration() throws {
        let directory = try TemporaryDirectory()
        let path = try directory.write("config.yaml", "workr:\n  concurrency: 2\n")
        let result = try runCommand(Binaries.swiftqd, ["--config", path])
        #expect(result.status == 78)
        #expect(result.stderr.contains("did you mean \"worker\"?"))
    }

    @Test func graphPrintsTheSupervisorBlueprintAsDOT() throws {
        let result = try runCommand(
            Binaries.swiftqd,
            ["--graph", "--config", Self.repositoryRoot + "/etc/swiftq/config.yaml"]
        )
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.hasPrefix("digraph \"supervisor\" {"))
        // The pool is the consumer's (its blueprint's "Pool" step), no longer a supervisor step.
        #expect(result.stdout.contains("\"Consumer\" -> \"Lifeline\";"))
        #expect(!result.stdout.contains("\"Pool\""))
        #expect(result.stdout.contains("\"Notify\" -> \"Consumer\";"))
        // Without WATCHDOG_USEC the watchdog step is disabled, drawn dashed.
        #expect(result.stdout.contains("\"Watchdog\" [style=dashed];"))
        let consumer = try runCommand(
            Binaries.swiftqd,
            ["--graph", "--blueprint", "consumer", "--config", Self.repositoryRoot + "/etc/swiftq/config.yaml"]
        )
        #expect(consumer.stdout.hasPrefix("digraph \"consumer\" {"))
        #expect(consumer.stdout.contains("\"Heart\" -> \"Pool\";"))
    }

    @Test func versionAndUsage() throws {
        let version = try runCommand(Binaries.swiftqd, ["--version"])
        #expect(version.status == 0)
        #expect(version.stdout == "swiftqd 0.1.0\n")
        let bad = try runCommand(Binaries.swiftqd, ["--no-such-flag"])
        #expect(bad.status == 64)
    }

    @Test func swiftqctlExitCodes() throws {
        let directory = try TemporaryDirectory()
        let missing = try runCommand(Binaries.swiftqctl, ["--socket", directory.path + "/none.sock", "ping"])
        #expect(missing.status == 69)
        #expect(missing.stderr.contains("cannot reach swiftqd"))
        #expect(missing.stderr.contains("is swiftqd running"))

        let usage = try runCommand(Binaries.swiftqctl, ["frobnicate"])
        #expect(usage.status == 2)
        let noCommand = try runCommand(Binaries.swiftqctl, [])
        #expect(noCommand.status == 2)
        let badFlag = try runCommand(Binaries.swiftqctl, ["stats", "--bogus"])
        #expect(badFlag.status == 2)
        let help = try runCommand(Binaries.swiftqctl, ["--help"])
        #expect(help.status == 0)
        for command in ["ping", "stats", "reload", "shutdown"] { #expect(help.stdout.contains(command)) }
    }

    @Test func swiftqctlFindsTheSocketThroughTheConfigurationFile() throws {
        let daemon = try Daemon(concurrency: 1)
        let result = try runCommand(Binaries.swiftqctl, ["ping", "--config", daemon.configPath])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("pong"))
    }
}
