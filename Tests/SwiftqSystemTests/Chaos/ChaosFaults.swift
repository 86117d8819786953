import Foundation

/// The faults the chaos suite injects. Every kind runs at least once per round; their order and the moments they
/// fire (fractions of the round's executions) come from the seed.
enum ChaosFault: String, CaseIterable, Sendable {
    case poolChildKill = "kill -9 of a pool child"
    case consumerKill = "kill -9 of the consumer"
    case supervisorKill = "kill -9 of the supervisor, restarted"
    case brokerRestart = "broker restart"
    case connectionCut = "connections cut by the proxy"
    case connectionStall = "connections stalled by the proxy"
    case poolFull = "pool kept full by long tasks"
    case sighupStorm = "SIGHUP storm"
    case sigtermRestart = "SIGTERM mid-run, restarted"
}

/// One fault as injected: when (unix ms, from its start to the end of its action), and what it touched.
struct InjectedFault: Sendable {
    var kind: ChaosFault
    var started: Int64
    var ended: Int64
    var detail: String
}

/// SplitMix64: a small seeded generator, the same sequence for the same seed on every machine.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// The chaos suite's knobs, from the environment (docs/chaos.md): `SWIFTQ_CHAOS_SEED` (a number; random and
/// printed when unset), `SWIFTQ_CHAOS_TASKS` (tasks per round, at least 10,000 in CI), `SWIFTQ_CHAOS_FAULTS_PER_KIND`
/// (per round), `SWIFTQ_CHAOS_TASK_MS` (each task's sleep), `SWIFTQ_CHAOS_SOAK` (a duration such as `1h` or `20m`: rounds repeat until it has passed).
struct ChaosSettings: Sendable {
    var seed: UInt64
    var tasksPerRound: Int
    var faultsPerKind: Int
    var soak: Double?
    /// How long each of the round's tasks sleeps after its ledger line: paces the run so that the faults land on a
    /// busy worker, and a kill during the sleep makes the task run again.
    var taskSeconds: Double
    var concurrency = 4

    static func fromEnvironment() throws -> ChaosSettings {
        let environment = ProcessInfo.processInfo.environment
        var seed = UInt64.random(in: 1...UInt64(UInt32.max))
        if let given = environment["SWIFTQ_CHAOS_SEED"] {
            guard let value = UInt64(given) else { throw TestSetupError("SWIFTQ_CHAOS_SEED=\(given) is not a number") }
            seed = value
        }
        let tasks = try environment["SWIFTQ_CHAOS_TASKS"].map { given in
            guard let value = Int(given), value > 0 else {
                throw TestSetupError("SWIFTQ_CHAOS_TASKS=\(given) is not a positive number")
            }
            return value
        }
        let perKind = try environment["SWIFTQ_CHAOS_FAULTS_PER_KIND"].map { given in
            guard let value = Int(given), value > 0 else {
                throw TestSetupError("SWIFTQ_CHAOS_FAULTS_PER_KIND=\(given) is not a positive number")
            }
            return value
        }
        let soak = try environment["SWIFTQ_CHAOS_SOAK"].map { given in
            guard let seconds = parseDuration(given) else {
                throw TestSetupError("SWIFTQ_CHAOS_SOAK=\(given) is not a duration (30s, 20m, 1h)")
            }
            return seconds
        }
        let milliseconds = try environment["SWIFTQ_CHAOS_TASK_MS"].map { given in
            guard let value = Int(given), value >= 0 else {
                throw TestSetupError("SWIFTQ_CHAOS_TASK_MS=\(given) is not a number of milliseconds")
            }
            return value
        }
        return ChaosSettings(
            seed: seed,
            tasksPerRound: tasks ?? 10_000,
            faultsPerKind: perKind ?? 2,
            soak: soak,
            taskSeconds: Double(milliseconds ?? 20) / 1000
        )
    }

    /// `90`, `90s`, `20m`, `1h`.
    static func parseDuration(_ text: String) -> Double? {
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600]
        if let last = text.last, let unit = units[last], let value = Double(text.dropLast()), value > 0 {
            return value * unit
        }
        return Double(text).flatMap { $0 > 0 ? $0 : nil }
    }
}

/// A round's faults: each kind `perKind` times, shuffled, each at a fraction of the round's executions.
func chaosSchedule(perKind: Int, using generator: inout SeededGenerator) -> [(at: Double, kind: ChaosFault)] {
    var kinds: [ChaosFault] = []
    for _ in 0..<perKind { kinds += ChaosFault.allCases }
    kinds.shuffle(using: &generator)
    let moments = kinds.map { _ in Double.random(in: 0.03...0.9, using: &generator) }.sorted()
    return Array(zip(moments, kinds)).map { (at: $0.0, kind: $0.1) }
}
