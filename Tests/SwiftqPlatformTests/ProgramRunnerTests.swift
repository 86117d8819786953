import Foundation
import SwiftqCore
import Testing

@testable import SwiftqPlatform

#if canImport(Glibc)
import Glibc
#endif

@Suite struct ProgramRunnerTests {
    let environment = ["PATH=/usr/bin:/bin", "LC_ALL=C"]

    init() {
        // A program that exits without reading its stdin makes our write fail with EPIPE; as in every swiftq
        // process, SIGPIPE must be ignored for that (see ProgramRunner).
        UnixSignal.ignore(SIGPIPE)
    }

    @Test func feedsStdinAndCollectsStdout() throws {
        let input = Array(String(repeating: "héllo\n", count: 50_000).utf8)
        let outcome = try ProgramRunner.run(
            arguments: ["cat"],
            environment: environment,
            input: input,
            timeout: .seconds(10)
        )
        #expect(outcome.status == .exited(code: 0))
        #expect(outcome.standardOutput == input)
        #expect(!outcome.timedOut)
    }

    @Test func keepsTheTailOfStderrAndTheExitCode() throws {
        let outcome = try ProgramRunner.run(
            arguments: ["/bin/sh", "-c", "i=0; while [ $i -lt 3000 ]; do echo line$i >&2; i=$((i+1)); done; exit 3"],
            environment: environment,
            input: [],
            timeout: .seconds(10)
        )
        #expect(outcome.status == .exited(code: 3))
        let tail = String(decoding: outcome.standardErrorTail, as: UTF8.self)
        #expect(tail.hasSuffix("line2999\n"))
        #expect(outcome.standardErrorTail.count <= ProgramRunner.standardErrorTailSize)
        #expect(!tail.contains("line0\n"))
    }

    @Test func aTimeoutKillsTheWholeProcessGroup() throws {
        let directory = "/tmp/swiftq-runner-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        mkdir(directory, 0o755)
        defer {
            _ = try? ProgramRunner.run(
                arguments: ["rm", "-rf", directory],
                environment: environment,
                input: [],
                timeout: nil
            )
        }
        let started = ContinuousClock.now
        let outcome = try ProgramRunner.run(
            arguments: ["/bin/sh", "-c", "sleep 30 & echo $! > \(directory)/child; sleep 30"],
            environment: environment,
            input: [],
            timeout: .milliseconds(300)
        )
        #expect(outcome.timedOut)
        #expect(outcome.status == nil)
        #expect(started.duration(to: .now) < .seconds(5))
        let childPID = try String(contentsOfFile: "\(directory)/child", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let pid = try #require(Int32(childPID))
        usleep(100_000)
        #expect(kill(pid, 0) != 0 || isZombie(pid), "the program's own child survived the timeout")
    }

    @Test func anAbortDescriptorEndsTheRun() throws {
        let lifeline = try Descriptors.pipe()
        defer { Descriptors.close(lifeline.read) }
        Descriptors.close(lifeline.write)
        let outcome = try ProgramRunner.run(
            arguments: ["sleep", "30"],
            environment: environment,
            input: [],
            timeout: nil,
            abortDescriptor: lifeline.read
        )
        #expect(outcome.aborted)
    }

    @Test func aMissingProgramIsATypedError() {
        #expect(throws: SystemError.self) {
            try ProgramRunner.run(
                arguments: ["/nonexistent/program"],
                environment: environment,
                input: [],
                timeout: .seconds(1)
            )
        }
    }

    @Test func aProgramThatIgnoresItsInputDoesNotBlockTheRun() throws {
        let outcome = try ProgramRunner.run(
            arguments: ["/bin/sh", "-c", "echo done"],
            environment: environment,
            input: Array(repeating: 65, count: 4 * 1024 * 1024),
            timeout: .seconds(10)
        )
        #expect(outcome.status == .exited(code: 0))
        #expect(outcome.standardOutput == Array("done\n".utf8))
    }

    func isZombie(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else {
            return true
        }
        return stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).hasPrefix("Z")
    }
}
