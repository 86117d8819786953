import Foundation
import Testing

/// `swiftqd --print-config`, the environment overrides and password files, through the real binaries.
@Suite struct ConfigurationCommandTests {
    /// The environment of the test runner without any variable that overrides the configuration.
    static var cleanEnvironment: [String: String] {
        var environment = ProcessInfo.processInfo.environment
        for variable in ["SWIFTQ_BROKER_URL", "SWIFTQ_RESULT_BACKEND_URL", "SWIFTQ_CONTROL_SOCKET"] {
            environment[variable] = nil
        }
        return environment
    }

    static func swiftqd(_ arguments: [String], environment: [String: String] = [:]) throws -> CommandResult {
        try runCommand(
            Binaries.swiftqd,
            arguments,
            environment: cleanEnvironment.merging(environment) { $1 }
        )
    }

    @Test func printConfigShowsDefaultsAndMasksPasswords() throws {
        let directory = try TemporaryDirectory()
        let password = try directory.write("backend.password", "b@ckend-secret\n")
        let path = try directory.write(
            "config.yaml",
            """
            broker:
              url: amqp://celery:broker-secret@mq.example:5672/swiftq
            result_backend:
              url: redis://redis.example:6379/1
              password_file: \(password)

            """
        )
        let result = try Self.swiftqd(["--print-config", "--config", path])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("  url: amqp://celery:***@mq.example:5672/swiftq\n"))
        #expect(result.stdout.contains("  url: redis://:***@redis.example:6379/1\n"))
        #expect(result.stdout.contains("  password_file: \(password)\n"))
        #expect(!result.stdout.contains("broker-secret") && !result.stdout.contains("ckend-secret"))
        // Defaults are filled in.
        #expect(result.stdout.contains("  visibility_timeout: 1h\n"))
        #expect(result.stdout.contains("  shutdown_timeout: 30s\n"))
        #expect(result.stdout.contains("  socket: /run/swiftq/swiftqd.sock\n"))
    }

    @Test func theEnvironmentBeatsTheFileAndSocketBeatsBoth() throws {
        let directory = try TemporaryDirectory()
        let path = try directory.write(
            "config.yaml",
            "broker:\n  url: redis://file.example:6379/0\ncontrol:\n  socket: /run/file.sock\n"
        )
        let fileOnly = try Self.swiftqd(["--print-config", "--config", path])
        #expect(fileOnly.stdout.contains("  url: redis://file.example:6379/0\n"))
        let result = try Self.swiftqd(
            ["--print-config", "--config", path, "--socket", "/run/option.sock"],
            environment: [
                "SWIFTQ_BROKER_URL": "redis://:env-secret@env.example:6379/3",
                "SWIFTQ_RESULT_BACKEND_URL": "redis://env.example:6379/4",
                "SWIFTQ_CONTROL_SOCKET": "/run/env.sock",
            ]
        )
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("  url: redis://:***@env.example:6379/3\n"))
        #expect(result.stdout.contains("  url: redis://env.example:6379/4\n"))
        #expect(result.stdout.contains("  socket: /run/option.sock\n"))
        #expect(result.stdout.contains("# broker.url is set by $SWIFTQ_BROKER_URL."))
        #expect(!result.stdout.contains("file.example") && !result.stdout.contains("env-secret"))
        // Without password files, the output is itself a valid configuration file.
        let printed = try directory.write("printed.yaml", result.stdout)
        let check = try Self.swiftqd(["--check-config", "--config", printed])
        #expect(check.status == 0, "\(check.stderr)")
    }

    @Test func printConfigFailsLikeCheckConfig() throws {
        let directory = try TemporaryDirectory()
        let path = try directory.write("config.yaml", "worker:\n  concurrency: four\n")
        let environment = ["SWIFTQ_RESULT_BACKEND_URL": "http://nope"]
        let check = try Self.swiftqd(["--check-config", "--config", path], environment: environment)
        let print = try Self.swiftqd(["--print-config", "--config", path], environment: environment)
        #expect(check.status == 78)
        #expect(print.status == 78)
        #expect(print.stdout.isEmpty)
        #expect(print.stderr == check.stderr)
        #expect(print.stderr.contains("\(path):2:16: worker.concurrency: expected a positive integer"))
        #expect(print.stderr.contains("$SWIFTQ_RESULT_BACKEND_URL: result_backend.url: expected a URL"))
    }

    @Test func passwordFileErrorsNameTheKeyAndTheSystemError() throws {
        let directory = try TemporaryDirectory()
        let missing = directory.path + "/missing.password"
        let path = try directory.write(
            "config.yaml",
            "broker:\n  url: redis://localhost:6379/0\n  password_file: \(missing)\n"
        )
        let result = try Self.swiftqd(["--check-config", "--config", path])
        #expect(result.status == 78)
        #expect(
            result.stderr.contains(
                "\(path):3:3: broker.password_file: cannot read password file \(missing): No such file or directory"
            ),
            "\(result.stderr)"
        )
        let both = try Self.swiftqd(
            ["--check-config", "--config", path],
            environment: ["SWIFTQ_BROKER_URL": "redis://:inline@localhost:6379/0"]
        )
        #expect(both.status == 78)
        #expect(both.stderr.contains("SWIFTQ_BROKER_URL already contains a password"), "\(both.stderr)")
        #expect(both.stderr.contains("broker.password_file"))
    }

    /// The consumer connects with the password from the file (the supervisor hands it the resolved configuration),
    /// and a reload reads the password file again.
    @Test func aDaemonUsesThePasswordFileAndReloadRereadsIt() throws {
        let password = "pa:ss@word/\(UUID().uuidString.prefix(8))"
        let redis = try RedisServer(extraArguments: ["--requirepass", password])
        let secrets = try TemporaryDirectory()
        let passwordFile = try secrets.write("broker.password", password + "\n")
        let daemon = try Daemon(
            extraYAML: """
                broker:
                  url: \(redis.url)
                  password_file: \(passwordFile)
                result_backend:
                  url: \(redis.url(db: 1))
                  password_file: \(passwordFile)

                """,
            environment: ["SWIFTQ_BROKER_URL": "", "SWIFTQ_RESULT_BACKEND_URL": ""]
        )
        let encoded = password.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? password
        let call = try runCommand(
            Binaries.swiftqctl,
            [
                "call", "swiftq.add", "2", "3", "--wait", "--timeout", "20",
                "--broker", "redis://:\(encoded)@127.0.0.1:\(redis.port)/0",
                "--backend", "redis://:\(encoded)@127.0.0.1:\(redis.port)/1",
            ]
        )
        #expect(call.status == 0, "\(call.stderr)\n\(daemon.log)")
        #expect(call.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "5")

        try FileManager.default.removeItem(atPath: passwordFile)
        let reload = try daemon.ctl(["reload"])
        #expect(reload.status == 1)
        #expect(
            reload.stderr.contains("broker.password_file: cannot read password file \(passwordFile)"),
            "\(reload.stdout)\(reload.stderr)"
        )
    }
}
