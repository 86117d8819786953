import Foundation
import SwiftqCore
import Testing

/// The chaos suite (docs/chaos.md): at least 10,000 acks_late tasks through the built daemon on each broker while
/// seeded faults hit it — kill -9 of pool children, the consumer and the supervisor, broker restarts, connections cut
/// and stalled by a proxy, a pool kept full, SIGHUP storms, SIGTERM and restart. Every execution is counted in a
/// ledger; the run fails on a lost task, a missing result, a duplicate no injected fault explains (or that the log
/// does not show as redelivered), a leaked process or a growing supervisor. `dev/test` runs it as its own phase.
@Suite(.serialized) struct ChaosTests {
    @Test(.timeLimit(.minutes(30))) func chaosOnRedis() throws {
        try run(try RedisChaosBroker())
    }

    @Test(.timeLimit(.minutes(30))) func chaosOnRabbitMQ() throws {
        try run(try RabbitMQChaosBroker())
    }

    func run(_ broker: ChaosBroker) throws {
        let settings = try ChaosSettings.fromEnvironment()
        print(
            "chaos on \(broker.name): seed \(settings.seed) (SWIFTQ_CHAOS_SEED=\(settings.seed) repeats it), "
                + "\(settings.tasksPerRound) tasks and \(settings.faultsPerKind) faults of each kind per round"
                + (settings.soak.map { ", soak for \(Int($0)) s" } ?? "")
        )
        let run = try ChaosRun(settings: settings, broker: broker)
        let started = Date()
        var rounds = 0
        repeat {
            rounds += 1
            try run.round(rounds)
        } while run.problems.isEmpty && settings.soak.map { Date().timeIntervalSince(started) < $0 } == true
        let results = try run.waitForResults(timeout: 60)
        let duplicates = run.duplicates()
        let leaks = run.stop()
        let lost = run.lost()
        let unknown = run.unknown()
        let rss = run.rssVerdicts()
        let elapsed = Date().timeIntervalSince(started)

        var table = ChaosTable()
        table.row("broker", broker.name)
        table.row("seed", "\(settings.seed)")
        table.row("rounds, time", "\(rounds), \(Int(elapsed)) s")
        table.row("tasks sent", "\(run.tasksSent)")
        table.row("executions (ledger)", "\(run.executions)")
        for kind in ChaosFault.allCases {
            table.row("fault: \(kind.rawValue)", "\(run.faults.filter { $0.kind == kind }.count)")
        }
        table.row("lost (never ran)", "\(lost.count)", ok: lost.isEmpty)
        table.row(
            "results missing or not SUCCESS",
            "\(results.missingCount) \(results.states)",
            ok: results.missingCount == 0
        )
        let unexplained = duplicates.filter { !$0.explained }
        table.row("duplicates", "\(duplicates.count) (unexplained: \(unexplained.count))", ok: unexplained.isEmpty)
        let causes = Dictionary(grouping: duplicates, by: { Self.causeKind($0.cause) }).mapValues(\.count)
        for (cause, count) in causes.sorted(by: { $0.key < $1.key }) { table.row("  caused by", "\(count) × \(cause)") }
        table.row("ids the test never sent", "\(unknown.count)", ok: unknown.isEmpty)
        table.row("leaked processes", leaks.isEmpty ? "none" : leaks.joined(separator: ", "), ok: leaks.isEmpty)
        for verdict in rss {
            table.row(
                "supervisor \(verdict.pid) RSS (KiB)",
                "early \(verdict.early), late \(verdict.late), peak \(verdict.peak)"
                    + (verdict.flat == nil ? " (lived too short to judge)" : ""),
                ok: verdict.flat ?? true
            )
        }
        for (role, kib) in run.maxRSS.sorted(by: { $0.key < $1.key }) { table.row("max RSS \(role)", "\(kib) KiB") }
        for problem in run.problems { table.row("problem", problem, ok: false) }
        print(table.rendered(title: "chaos on \(broker.name), seed \(settings.seed)"))
        for duplicate in duplicates.prefix(50) {
            print("  duplicate \(duplicate.id) ×\(duplicate.executions): \(duplicate.cause)")
        }
        for fault in run.faults { print("  fault at \(fault.started): \(fault.kind.rawValue): \(fault.detail)") }

        let context = "seed \(settings.seed); log: \(run.logPath)"
        #expect(run.tasksSent >= settings.tasksPerRound)
        #expect(lost.isEmpty, "lost: \(lost.prefix(20)) (\(context))")
        #expect(results.missingCount == 0, "no SUCCESS result: \(results.missing) (\(context))")
        #expect(unexplained.isEmpty, "unexplained duplicates: \(unexplained.prefix(10).map(\.cause)) (\(context))")
        #expect(unknown.isEmpty, "\(unknown.prefix(10))")
        #expect(leaks.isEmpty, "leaked: \(leaks)")
        #expect(rss.allSatisfy { $0.flat ?? true }, "supervisor RSS grew: \(rss)")
        #expect(run.problems.isEmpty, "\(run.problems) (\(context))")
        #expect(Set(run.faults.map(\.kind)) == Set(ChaosFault.allCases), "every kind of fault ran")
        let failed = !(lost.isEmpty && unexplained.isEmpty && run.problems.isEmpty && results.missingCount == 0)
        if failed || ProcessInfo.processInfo.environment["SWIFTQ_CHAOS_KEEP"] == "1" {
            // Keep the evidence of a failed run (or when asked): the directory is removed with the run otherwise.
            let kept = "/tmp/swiftq-chaos-\(broker.name.lowercased())-\(settings.seed)"
            try? FileManager.default.removeItem(atPath: kept)
            try? FileManager.default.copyItem(atPath: run.directory.path, toPath: kept)
            print("the run's log, ledger and ids are kept in \(kept)")
        }
    }

    /// The fault part of a duplicate's cause, for the table's summary.
    static func causeKind(_ cause: String) -> String {
        let first = cause.split(separator: "/").first.map(String.init) ?? cause
        let kind = first.split(separator: ";").first.map(String.init) ?? first
        return kind.replacingOccurrences(of: #" \(pid \d+\)"#, with: "", options: .regularExpression)
            .trimmingCharacters(in: .whitespaces)
    }
}

/// The pass-criteria table: one row per criterion, a mark on each row that is judged.
struct ChaosTable {
    private var rows: [(String, String, Bool?)] = []

    mutating func row(_ name: String, _ value: String, ok: Bool? = nil) { rows.append((name, value, ok)) }

    func rendered(title: String) -> String {
        let width = max(36, rows.map(\.0.count).max() ?? 0)
        var text = "\n== \(title)\n"
        for (name, value, ok) in rows {
            let mark = ok.map { $0 ? "PASS" : "FAIL" } ?? "    "
            text += "\(mark)  \(name.padding(toLength: width, withPad: " ", startingAt: 0))  \(value)\n"
        }
        return text
    }
}
