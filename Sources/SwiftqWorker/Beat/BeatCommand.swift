import ArgumentParser
import Logging
import SwiftqConsumer
import SwiftqCore
import SwiftqPool

/// `swiftqd beat`: the scheduler alone, without a pool or a control socket, for hosts that only schedule.
struct BeatCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "swiftqd beat",
        abstract: "Run only the beat scheduler: publish the entries of beat.schedule when they are due.",
        discussion: """
            Reads the same configuration file as swiftqd; SIGHUP reloads the schedule, SIGTERM or SIGINT stops. \
            Any number of beats may run against one broker: a lease lets only one publish. See swiftq.yaml(5).
            """
    )

    @Option(name: .shortAndLong, help: "Configuration file.")
    var config: String = Configuration.defaultPath

    static func run(arguments: [String]) -> Int32 {
        let command: BeatCommand
        do {
            command = try BeatCommand.parse(arguments)
        } catch {
            let code = BeatCommand.exitCode(for: error)
            let message = BeatCommand.fullMessage(for: error)
            if code == .success {
                print(message)
                return SwiftqDaemon.ExitCode.success
            }
            writeStandardError(message + "\n")
            return SwiftqDaemon.ExitCode.usage
        }
        let level: Logger.Level
        switch Result(catching: { try Configuration.load(contentsOf: command.config) }) {
        case .success(let configuration): level = Logger.Level(configuration.logging.level)
        case .failure(let error):
            writeStandardError("\(error)\n")
            return SwiftqDaemon.ExitCode.configuration
        }
        DaemonLog.bootstrap(role: "beat", level: level)
        return BeatProcess(configurationPath: command.config).run()
    }
}
