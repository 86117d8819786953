import ArgumentParser
import Logging
import SwiftqConsumer
import SwiftqCore
import SwiftqPlatform
import SwiftqPool
@_exported import SwiftqTasks

#if canImport(Glibc)
import Glibc
#endif

/// The entry point of a swiftq worker binary: the stock `swiftqd`, or a user's own binary that
/// registers Swift tasks and then calls ``main(registry:)``.
///
/// The same binary plays every role: it is the supervisor when run by a person or systemd, and re-executes
/// itself with an internal role argument for the consumer and each pool child, so all of them share the
/// task registry built by the caller.
public enum SwiftqDaemon {
    /// Exit codes (sysexits.h where one fits).
    public enum ExitCode {
        /// Clean exit, including a warm or cold shutdown on request.
        public static let success: Int32 = 0
        /// Startup failed (e.g. the control socket could not be bound).
        public static let failure: Int32 = 1
        /// Bad command-line usage (EX_USAGE).
        public static let usage: Int32 = 64
        /// The configuration is invalid (EX_CONFIG).
        public static let configuration: Int32 = 78
    }

    /// Runs the role named by the command line and exits the process with its code.
    public static func main(registry: TaskRegistry = .builtIn) -> Never {
        UnixSignal.unblockAll()
        let arguments = CommandLine.arguments
        let code: Int32
        switch arguments.dropFirst().first {
        case InternalRole.poolChild?:
            code = runPoolChild(arguments: Array(arguments.dropFirst(2)), registry: registry)
        case InternalRole.exec?:
            let command = Array(arguments.dropFirst(2))
            guard !command.isEmpty else { exit(ExitCode.usage) }
            // SIGTERM, not SIGKILL: the program gets to clean up (redis-server removes its socket file).
            try? ChildProcess.setParentDeathSignal(SIGTERM)
            if ChildProcess.parentIsGone { exit(70) }
            let error = ChildProcess.execute(command)
            writeStandardError("swiftqd: cannot run \(command[0]): \(error)\n")
            code = 127
        case InternalRole.beat?:
            DaemonLog.bootstrap(role: "beat", level: logLevelFromEnvironment)
            code = BeatProcess(configurationPath: nil).run()
        case "beat"?:
            code = BeatCommand.run(arguments: Array(arguments.dropFirst(2)))
        case InternalRole.consumer?:
            DaemonLog.bootstrap(role: "consumer", level: logLevelFromEnvironment)
            let consumer = Consumer(registry: registry)
            consumer.events.softwareVersion = SwiftqVersion.current
            code = consumer.run()
        default:
            code = runSupervisorCommand(arguments: Array(arguments.dropFirst()), registry: registry)
        }
        exit(code)
    }

    static var logLevelFromEnvironment: Logger.Level {
        getenv("SWIFTQ_LOG_LEVEL").flatMap { Logger.Level(rawValue: String(cString: $0)) } ?? .info
    }

    private static func runPoolChild(arguments: [String], registry: TaskRegistry) -> Int32 {
        DaemonLog.bootstrap(role: "pool", level: logLevelFromEnvironment)
        guard arguments.count == 2, arguments[0] == "--slot", let slot = Int(arguments[1]), slot >= 0 else {
            DaemonLog.logger(role: "pool").critical("usage: \(InternalRole.poolChild) --slot N")
            return ExitCode.usage
        }
        return PoolChild(slot: slot, registry: registry).run()
    }

    private static func runSupervisorCommand(arguments: [String], registry: TaskRegistry) -> Int32 {
        let command: SwiftqdCommand
        do {
            command = try SwiftqdCommand.parse(arguments)
        } catch {
            let code = SwiftqdCommand.exitCode(for: error)
            let message = SwiftqdCommand.fullMessage(for: error)
            if code == .success {
                print(message)
                return ExitCode.success
            }
            writeStandardError(message + "\n")
            return ExitCode.usage
        }
        return command.execute(registry: registry)
    }
}

/// `swiftqd`'s command line.
struct SwiftqdCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "swiftqd",
        abstract: "Celery-compatible task worker daemon.",
        discussion: """
            Runs a supervisor that spawns a consumer process and a prefork pool of worker processes, \
            configured by a YAML file. See swiftqd(8) and swiftq.yaml(5).
            """
    )

    @Option(name: .shortAndLong, help: "Configuration file.")
    var config: String = Configuration.defaultPath

    @Flag(name: .customLong("check-config"), help: "Validate the configuration and exit (0 if valid, 78 if not).")
    var checkConfig = false

    @Flag(
        name: .customLong("print-config"),
        help: "Print the effective configuration as YAML, secrets masked, and exit (78 if invalid)."
    )
    var printConfig = false

    @Option(
        help: ArgumentHelp(
            "Control socket path, overriding control.socket (the same as $SWIFTQ_CONTROL_SOCKET).",
            valueName: "path"
        )
    )
    var socket: String?

    @Flag(help: "Run the embedded beat scheduler too, as if beat.enabled were true (see swiftq.yaml(5)).")
    var beat = false

    @Flag(help: "Print the bootsteps graph as Graphviz DOT and exit.")
    var graph = false

    @Option(help: "With --graph: which blueprint (supervisor or consumer).")
    var blueprint: String = "supervisor"

    @Flag(help: "Print the version and exit.")
    var version = false

    func execute(registry: TaskRegistry) -> Int32 {
        if version {
            print("swiftqd \(SwiftqVersion.current)")
            return SwiftqDaemon.ExitCode.success
        }
        if let socket {
            // Through the environment, so that a reload (which re-reads it) keeps the override.
            setenv("SWIFTQ_CONTROL_SOCKET", socket, 1)
        }
        let configuration: Configuration
        do {
            // The environment and password files are applied here, once: the daemon, --check-config,
            // --print-config and reloads all see the same effective configuration.
            configuration = try Configuration.load(contentsOf: config)
        } catch {
            writeStandardError("\(error)\n")
            return SwiftqDaemon.ExitCode.configuration
        }
        if checkConfig {
            print("\(config): configuration is valid")
            return SwiftqDaemon.ExitCode.success
        }
        if printConfig {
            print(printedConfiguration(configuration), terminator: "")
            return SwiftqDaemon.ExitCode.success
        }
        if !graph {
            // Before any Logger exists: a logger made earlier keeps swift-log's default handler.
            DaemonLog.bootstrap(role: "supervisor", level: Logger.Level(configuration.logging.level))
        }
        // The consumer gets the resolved configuration (environment applied, passwords in place) as text.
        let supervisor = Supervisor(
            configuration: configuration,
            text: configuration.yaml(maskingSecrets: false),
            path: config,
            registry: registry
        )
        if graph {
            switch blueprint {
            case "supervisor": print(Supervisor.blueprint().dot(context: supervisor), terminator: "")
            case "consumer": print(Consumer.blueprint().dot(), terminator: "")
            default:
                writeStandardError("--blueprint must be supervisor or consumer\n")
                return SwiftqDaemon.ExitCode.usage
            }
            return SwiftqDaemon.ExitCode.success
        }
        setenv("SWIFTQ_LOG_LEVEL", configuration.logging.level.rawValue, 1)
        if beat { setenv(Supervisor.beatEnvironmentVariable, "1", 1) }
        return supervisor.run()
    }
}

extension SwiftqdCommand {
    /// `--print-config`: a header naming the file and the variables that override it, then the YAML.
    func printedConfiguration(_ configuration: Configuration) -> String {
        var header = "# swiftqd --print-config: the effective configuration of \(config), secrets masked.\n"
        for override in Configuration.environmentOverrides {
            if let value = getenv(override.variable), value.pointee != 0 {
                header += "# \(override.keyPath) is set by $\(override.variable).\n"
            }
        }
        return header + configuration.yaml(maskingSecrets: true)
    }
}

func writeStandardError(_ text: String) {
    let bytes = Array(text.utf8)
    try? Descriptors.writeAll(2, bytes)
}
