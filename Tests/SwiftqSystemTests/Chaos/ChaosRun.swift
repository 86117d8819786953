import Foundation
import SwiftqControl
import SwiftqCore
import SwiftqPlatform
import Testing

/// What differs between the brokers in a chaos run.
protocol ChaosBroker: AnyObject {
    var name: String { get }
    /// The broker's own port (the proxy forwards to it).
    var upstreamPort: Int { get }
    /// The broker URL swiftqd uses: through the proxy listening on `proxyPort`.
    func workerBrokerURL(proxyPort: Int) -> String
    /// The result backend swiftqd uses (through the proxy when it is the broker's own Redis).
    func workerBackendURL(proxyPort: Int) -> String
    /// The broker URL of the producer (straight to the broker).
    var producerURL: String { get }
    /// The result backend the checker reads (straight).
    var checkerBackendURL: String { get }
    /// Stops the broker and starts it again with its data.
    func restart() throws
    /// Whether the task queue holds nothing, ready or unacknowledged.
    func isDrained() -> Bool
}

/// A Redis broker with its result backend on db 1 of the same server, both behind the proxy. Persistence is on
/// (AOF, fsync at every write): a restart keeps queued and unacked messages, as production needs.
final class RedisChaosBroker: ChaosBroker {
    let server: RedisServer
    init() throws { server = try RedisServer(extraArguments: ["--appendonly", "yes", "--appendfsync", "always"]) }
    var name: String { "Redis" }
    var upstreamPort: Int { server.port }
    func workerBrokerURL(proxyPort: Int) -> String { "redis://127.0.0.1:\(proxyPort)/0" }
    func workerBackendURL(proxyPort: Int) -> String { "redis://127.0.0.1:\(proxyPort)/1" }
    var producerURL: String { server.url }
    var checkerBackendURL: String { server.url(db: 1) }
    func restart() throws {
        server.stop()
        try server.start()
    }
    func isDrained() -> Bool {
        let queued = (try? server.cli(["LLEN", "celery"]))?.trimmingCharacters(in: .whitespacesAndNewlines)
        let unacked = (try? server.cli(["HLEN", "unacked"]))?.trimmingCharacters(in: .whitespacesAndNewlines)
        return queued == "0" && unacked == "0"
    }
}

/// A private RabbitMQ node behind the proxy, the result backend on a Redis of its own (AOF on, not proxied).
final class RabbitMQChaosBroker: ChaosBroker {
    let node: RabbitMQNode
    let backend: RedisServer
    let port: Int
    init() throws {
        node = try RabbitMQNode.privateNode()
        backend = try RedisServer(extraArguments: ["--appendonly", "yes", "--appendfsync", "always"])
        let hostPort = node.url.split(separator: "@", maxSplits: 1)[1].split(separator: "/", maxSplits: 1)[0]
        guard let port = hostPort.split(separator: ":").last.flatMap({ Int($0) }) else {
            throw TestSetupError("no port in \(node.url)")
        }
        self.port = port
    }
    var name: String { "RabbitMQ" }
    var upstreamPort: Int { port }
    func workerBrokerURL(proxyPort: Int) -> String { "amqp://guest:guest@127.0.0.1:\(proxyPort)//" }
    func workerBackendURL(proxyPort: Int) -> String { backend.url(db: 1) }
    var producerURL: String { node.url }
    var checkerBackendURL: String { backend.url(db: 1) }
    func restart() throws { try node.restart(pause: 1) }
    func isDrained() -> Bool { node.isEmpty("celery") }
}

/// One execution of a task, as its pool child wrote it to the ledger.
struct LedgerEntry: Sendable {
    var id: String
    var pid: Int32
    var milliseconds: Int64
    var retries: Int
}

/// A supervisor the run started, with its pid history for the leak check and its RSS samples.
final class ChaosSupervisor {
    let process: TestProcess
    let started = Date()
    var rssSamples: [(seconds: Double, kib: Int)] = []

    init(binary: String, configPath: String, logPath: String) throws {
        var environment = ProcessInfo.processInfo.environment
        for key in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM"] { environment[key] = nil }
        process = try TestProcess(binary, ["--config", configPath], environment: environment, logFile: logPath)
    }

    var pid: Int32 { process.pid }
}

/// Resident memory of a process in KiB (VmRSS), or nil once it has gone.
func residentKiB(of pid: Int32) -> Int? {
    guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
    for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
    }
    return nil
}

/// The chaos run: sends the tasks, injects the seeded faults, waits until every task has a result, stops swiftqd,
/// then judges the ledger, the results, the log and the processes. ``report`` is the table printed at the end.
final class ChaosRun {
    let settings: ChaosSettings
    let broker: ChaosBroker
    let directory: TemporaryDirectory
    let proxy: ChaosProxy
    let configPath: String
    let logPath: String
    let ledgerPath: String
    let idsPath: String
    let socketPath: String
    let binary = Binaries.directory + "/swiftq-chaos-worker"
    private var generator: SeededGenerator

    private(set) var supervisors: [ChaosSupervisor] = []
    private(set) var faults: [InjectedFault] = []
    private(set) var tasksSent = 0
    /// Every pid of the run seen in `stats` or started here (the leak check wants them all gone).
    private(set) var seenPIDs: [Int32: String] = [:]
    /// Pool children that ended by a fault of the test (killed, or with their consumer or supervisor).
    private(set) var faultedPoolPIDs: [Int32: ChaosFault] = [:]
    private(set) var maxRSS: [String: Int] = [:]
    private var ledger: [LedgerEntry] = []
    private var ledgerOffset: UInt64 = 0
    private var lastSample = Date.distantPast
    private var lastStats = Date.distantPast
    private(set) var problems: [String] = []

    init(settings: ChaosSettings, broker: ChaosBroker) throws {
        self.settings = settings
        self.broker = broker
        generator = SeededGenerator(seed: settings.seed ^ (broker.name == "Redis" ? 0 : 0x5bd1_e995))
        directory = try TemporaryDirectory()
        proxy = try ChaosProxy(upstreamPort: broker.upstreamPort)
        socketPath = directory.path + "/swiftqd.sock"
        logPath = directory.path + "/swiftqd.log"
        ledgerPath = directory.path + "/ledger"
        idsPath = directory.path + "/ids"
        configPath = try directory.write(
            "config.yaml",
            """
            broker:
              url: \(broker.workerBrokerURL(proxyPort: proxy.port))
              heartbeat: 4s
            result_backend:
              url: \(broker.workerBackendURL(proxyPort: proxy.port))
            worker:
              hostname: chaos@localhost
              concurrency: \(settings.concurrency)
              prefetch_multiplier: 4
              acks_late: true
              reject_on_worker_lost: true
              poison_threshold: 1000
              shutdown_timeout: 10s
            control:
              socket: \(socketPath)
            logging:
              level: info

            """
        )
        _ = FileManager.default.createFile(atPath: ledgerPath, contents: nil)
        _ = FileManager.default.createFile(atPath: idsPath, contents: nil)
    }

    static func milliseconds() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    var supervisor: ChaosSupervisor? { supervisors.last }

    // MARK: Processes

    func startSupervisor() throws {
        let started = try ChaosSupervisor(binary: binary, configPath: configPath, logPath: logPath)
        supervisors.append(started)
        seenPIDs[started.pid] = "supervisor"
        guard eventually(timeout: 60, { (try? self.call("ping")) != nil }) else {
            throw TestSetupError("swiftqd did not answer on its control socket within 60 s")
        }
        refreshPIDs()
    }

    func call(_ command: String) throws -> JSONValue {
        let client = try ControlClient(path: socketPath)
        return try client.call(command, arguments: [:], timeout: .seconds(5))
    }

    /// The children `stats` lists (role, pid); empty while the control socket does not answer.
    func children() -> [(role: String, pid: Int32)] {
        guard let stats = try? call("stats") else { return [] }
        return (stats["children"]?.arrayValue ?? []).compactMap { child in
            guard let role = child["role"]?.stringValue, let pid = child["pid"]?.intValue else { return nil }
            return (role, Int32(pid))
        }
    }

    private func refreshPIDs() {
        for (role, pid) in children() { seenPIDs[pid] = role }
        lastStats = Date()
    }

    /// Samples RSS (every second) and the process list (every two); called while waiting.
    private func tick() {
        if Date().timeIntervalSince(lastStats) >= 2 { refreshPIDs() }
        guard Date().timeIntervalSince(lastSample) >= 1 else { return }
        lastSample = Date()
        if let supervisor, let kib = residentKiB(of: supervisor.pid) {
            supervisor.rssSamples.append((Date().timeIntervalSince(supervisor.started), kib))
        }
        for (pid, role) in seenPIDs {
            guard let kib = residentKiB(of: pid), !processHasEnded(pid) else { continue }
            maxRSS[role] = max(maxRSS[role] ?? 0, kib)
        }
    }

    /// Polls until `condition` holds (sampling meanwhile), or `timeout` seconds pass.
    private func wait(timeout: Double, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            tick()
            if condition() { return true }
            usleep(100_000)
        }
        return condition()
    }

    // MARK: Ledger

    /// Reads the ledger lines written since the last call.
    private func readLedger() {
        guard let handle = FileHandle(forReadingAtPath: ledgerPath) else { return }
        defer { try? handle.close() }
        try? handle.seek(toOffset: ledgerOffset)
        let data = handle.readDataToEndOfFile()
        guard let lastNewline = data.lastIndex(of: UInt8(ascii: "\n")) else { return }
        let complete = data[data.startIndex...lastNewline]
        ledgerOffset += UInt64(complete.count)
        for line in complete.split(separator: UInt8(ascii: "\n")) {
            let fields = line.split(separator: UInt8(ascii: " ")).map { String(decoding: $0, as: UTF8.self) }
            guard fields.count == 4, let pid = Int32(fields[1]), let ms = Int64(fields[2]), let retries = Int(fields[3])
            else {
                problems.append("malformed ledger line: \(String(decoding: line, as: UTF8.self))")
                continue
            }
            ledger.append(LedgerEntry(id: fields[0], pid: pid, milliseconds: ms, retries: retries))
        }
    }

    var executions: Int {
        readLedger()
        return ledger.count
    }

    // MARK: Producing

    /// Sends `count` tasks that sleep `seconds` each, with a stock Celery producer straight to the broker.
    func send(_ count: Int, seconds: Double = 0) throws {
        let result = try runCommand(
            Python.interpreter,
            [
                Python.scripts + "/chaos_client.py", "send", broker.producerURL, "\(count)", idsPath, ledgerPath,
                "\(seconds)",
            ],
            timeout: 600
        )
        guard result.status == 0 else { throw TestSetupError("chaos_client.py send failed: \(result.stderr)") }
        tasksSent += count
    }

    /// The result check: how many ids have a SUCCESS result naming themselves, and which do not.
    func checkResults() throws -> (missingCount: Int, missing: [String], states: String) {
        let result = try runCommand(
            Python.interpreter,
            [Python.scripts + "/chaos_client.py", "results", broker.checkerBackendURL, idsPath],
            timeout: 120
        )
        guard result.status == 0 else { throw TestSetupError("chaos_client.py results failed: \(result.stderr)") }
        let summary = try JSONValue(parsing: result.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
        return (
            Int(summary["missing_count"]?.intValue ?? -1),
            summary["missing"]?.arrayValue?.compactMap(\.stringValue) ?? [],
            String(decoding: summary["states"]?.serialized() ?? [], as: UTF8.self)
        )
    }

    // MARK: Faults

    private func record(_ kind: ChaosFault, started: Int64, _ detail: String) {
        faults.append(InjectedFault(kind: kind, started: started, ended: Self.milliseconds(), detail: detail))
    }

    /// Injects one fault and returns once its action is complete (a restarted process answers again).
    func inject(_ kind: ChaosFault) throws {
        let started = Self.milliseconds()
        refreshPIDs()
        let current = children()
        let pool = current.filter { $0.role == "pool" }.map(\.pid)
        switch kind {
        case .poolChildKill:
            guard let victim = pool.randomElement(using: &generator) else {
                record(kind, started: started, "no pool child listed; nothing killed")
                return
            }
            faultedPoolPIDs[victim] = kind
            kill(victim, SIGKILL)
            record(kind, started: started, "pid \(victim)")
        case .consumerKill:
            guard let consumer = current.first(where: { $0.role == "consumer" })?.pid else {
                record(kind, started: started, "no consumer listed; nothing killed")
                return
            }
            for pid in pool { faultedPoolPIDs[pid] = kind }
            kill(consumer, SIGKILL)
            // The supervisor starts a new consumer; wait until it lists one with a pool again.
            _ = wait(timeout: 60) {
                let now = children()
                return now.contains { $0.role == "consumer" && $0.pid != consumer }
                    && now.contains { $0.role == "pool" }
            }
            record(kind, started: started, "pid \(consumer) and its \(pool.count) pool children")
        case .supervisorKill:
            guard let supervisor else { return }
            for pid in pool { faultedPoolPIDs[pid] = kind }
            kill(supervisor.pid, SIGKILL)
            supervisor.process.stop(signal: SIGKILL, timeout: 10)
            // Its consumer and pool must not outlive it (lifeline, PR_SET_PDEATHSIG): a leak otherwise.
            let orphans = current.map(\.pid)
            if !wait(timeout: 15, { orphans.allSatisfy(processHasEnded) }) {
                problems.append(
                    "children \(orphans.filter { !processHasEnded($0) }) outlived their supervisor killed with -9"
                )
            }
            try startSupervisor()
            record(kind, started: started, "pid \(supervisor.pid); restarted as pid \(self.supervisor!.pid)")
        case .brokerRestart:
            try broker.restart()
            record(kind, started: started, "\(broker.name) stopped and started again")
        case .connectionCut:
            let cut = proxy.cut()
            record(kind, started: started, "\(cut) connections reset")
        case .connectionStall:
            let seconds = Double.random(in: 2...12, using: &generator)
            let open = proxy.openConnections
            proxy.stall(seconds: seconds)
            record(kind, started: started, "\(open) connections stalled for \(String(format: "%.1f", seconds)) s")
        case .poolFull:
            let count = settings.concurrency * 3
            let seconds = Double.random(in: 2...5, using: &generator)
            try send(count, seconds: seconds)
            record(kind, started: started, "\(count) tasks of \(String(format: "%.1f", seconds)) s")
        case .sighupStorm:
            guard let supervisor else { return }
            let count = Int.random(in: 10...30, using: &generator)
            for _ in 0..<count {
                kill(supervisor.pid, SIGHUP)
                usleep(UInt32.random(in: 5_000...100_000, using: &generator))
            }
            record(kind, started: started, "\(count) SIGHUPs")
        case .sigtermRestart:
            guard let supervisor else { return }
            for pid in pool { faultedPoolPIDs[pid] = kind }
            supervisor.process.stop(signal: SIGTERM, timeout: 60)
            if case .signaled(SIGKILL, _) = supervisor.process.exitStatus {
                problems.append("swiftqd (pid \(supervisor.pid)) did not stop within 60 s of SIGTERM")
            }
            let orphans = current.map(\.pid)
            if !wait(timeout: 15, { orphans.allSatisfy(processHasEnded) }) {
                problems.append("children \(orphans.filter { !processHasEnded($0) }) outlived a SIGTERM'd supervisor")
            }
            try startSupervisor()
            record(kind, started: started, "pid \(supervisor.pid); restarted as pid \(self.supervisor!.pid)")
        }
    }

    // MARK: The run

    /// One round: `tasksPerRound` tasks queued while swiftqd is stopped (a stock Python producer is slower than the
    /// worker: sent meanwhile, the tasks would all have run before the first fault), swiftqd started, the seeded
    /// faults at their moments, every task to a result, and swiftqd stopped again with SIGTERM.
    func round(_ number: Int) throws {
        if let supervisor, supervisor.process.isRunning {
            supervisor.process.stop(signal: SIGTERM, timeout: 60)
        }
        let before = executions
        let sentBefore = tasksSent
        try send(settings.tasksPerRound, seconds: settings.taskSeconds)
        try startSupervisor()
        let schedule = chaosSchedule(perKind: settings.faultsPerKind, using: &generator)
        var recovered = 0
        for (at, kind) in schedule {
            // Each fault waits for its moment, and for the worker to have run a few tasks since the previous one
            // (so every fault hits a worker that recovered, and a worker that does not recover is caught).
            let target = max(before + Int(at * Double(settings.tasksPerRound)), recovered)
            // A run that makes no progress for two minutes is a hang: the judge reports what is missing.
            var lastCount = executions
            var lastProgress = Date()
            while executions < target {
                _ = wait(timeout: 0.5) { false }
                if executions != lastCount {
                    lastCount = executions
                    lastProgress = Date()
                } else if Date().timeIntervalSince(lastProgress) > 120 {
                    problems.append("round \(number): no task ran for 120 s before \(kind.rawValue) at \(at)")
                    return
                }
            }
            try inject(kind)
            recovered = executions + settings.concurrency * 5
        }
        // Everything sent so far must end with a stored result and an empty queue.
        let complete = wait(timeout: 180) {
            executions >= tasksSent - sentBefore + before && broker.isDrained()
        }
        if !complete { problems.append("round \(number): the queue did not drain within 180 s of the last fault") }
        _ = try? waitForResults(timeout: 60)
    }

    /// Waits until every sent id has its SUCCESS result (or the time is up); returns what is still missing.
    @discardableResult
    func waitForResults(timeout: Double) throws -> (missingCount: Int, missing: [String], states: String) {
        var last = try checkResults()
        let deadline = Date().addingTimeInterval(timeout)
        while last.missingCount != 0 && Date() < deadline {
            _ = wait(timeout: 2) { false }
            last = try checkResults()
        }
        return last
    }

    /// Stops swiftqd (SIGTERM, as systemd does) and checks that none of the run's processes survive.
    func stop() -> [String] {
        if let supervisor {
            refreshPIDs()
            supervisor.process.stop(signal: SIGTERM, timeout: 60)
        }
        proxy.stop()
        _ = wait(timeout: 15) { seenPIDs.keys.allSatisfy(processHasEnded) && survivors().isEmpty }
        var leaks = seenPIDs.filter { !processHasEnded($0.key) }.map { "\($0.value) pid \($0.key)" }
        leaks += survivors().filter { seenPIDs[$0] == nil }.map { "unlisted process of the run, pid \($0)" }
        return leaks.sorted()
    }

    /// Live processes running this run's binary (the supervisor re-executes itself for its consumer and pool).
    func survivors() -> [Int32] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { Int32($0) }.filter { pid in
            guard let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/exe") else {
                return false
            }
            return (exe == binary || exe == binary + " (deleted)") && !processHasEnded(pid)
        }
    }

    // MARK: Judging

    struct Duplicate {
        var id: String
        var executions: Int
        var cause: String
        var explained: Bool
    }

    /// Log lines that show a task coming back: the broker's redelivery, or the worker-lost copy swiftqd publishes.
    func redeliveryEvidence() -> [String: Set<String>] {
        let log = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        var evidence: [String: Set<String>] = [:]
        for line in log.split(separator: "\n") {
            let kind: String
            if line.contains("redelivered task received") {
                kind = "redelivered"
            } else if line.contains("requeueing it (reject_on_worker_lost") {
                kind = "requeued after its child was lost"
            } else {
                continue
            }
            guard let range = line.range(of: "swiftq.task.id=") else { continue }
            let id = line[range.upperBound...].prefix { $0 != " " }.trimmingCharacters(
                in: CharacterSet(charactersIn: "\"")
            )
            evidence[id, default: []].insert(kind)
        }
        return evidence
    }

    /// Each id run more than once, with the fault that explains each extra run (or why none does).
    func duplicates() -> [Duplicate] {
        readLedger()
        let evidence = redeliveryEvidence()
        let byID = Dictionary(grouping: ledger, by: \.id)
        var found: [Duplicate] = []
        for (id, runs) in byID where runs.count > 1 {
            let sorted = runs.sorted { $0.milliseconds < $1.milliseconds }
            var causes: [String] = []
            var explained = true
            for index in 1..<sorted.count {
                let previous = sorted[index - 1]
                let next = sorted[index]
                // A fault that ended after the previous run started and began before the next one.
                let window = faults.filter { $0.ended >= previous.milliseconds && $0.started <= next.milliseconds }
                let shown = evidence[id] ?? []
                var cause: String?
                if let kind = faultedPoolPIDs[previous.pid], window.contains(where: { $0.kind == kind }) {
                    cause = "\(kind.rawValue) while it ran (pid \(previous.pid))"
                } else if let fault = window.first {
                    cause = fault.kind.rawValue
                }
                guard let cause else {
                    explained = false
                    causes.append("no fault between runs at \(previous.milliseconds) and \(next.milliseconds)")
                    continue
                }
                guard !shown.isEmpty else {
                    explained = false
                    causes.append("\(cause), but the log shows no redelivery of it")
                    continue
                }
                causes.append("\(cause); \(shown.sorted().joined(separator: ", "))")
            }
            found.append(
                Duplicate(id: id, executions: runs.count, cause: causes.joined(separator: " / "), explained: explained)
            )
        }
        return found.sorted { $0.id < $1.id }
    }

    /// Ids sent that never ran.
    func lost() -> [String] {
        readLedger()
        let ran = Set(ledger.map(\.id))
        let sent = ((try? String(contentsOfFile: idsPath, encoding: .utf8)) ?? "").split(separator: "\n").map(
            String.init
        )
        return sent.filter { !ran.contains($0) }
    }

    /// Ledger ids the test never sent (would mean a mangled id).
    func unknown() -> [String] {
        let sent = Set(
            ((try? String(contentsOfFile: idsPath, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
        )
        return Set(ledger.map(\.id)).subtracting(sent).sorted()
    }

    /// The supervisors' RSS: after a warm-up, the last samples may not exceed the first by more than 10 % + 4 MiB.
    /// Lifetimes shorter than 20 s (killed soon after a restart) have too few samples to judge and are listed only.
    func rssVerdicts() -> [(pid: Int32, early: Int, late: Int, peak: Int, flat: Bool?)] {
        supervisors.map { supervisor in
            let samples = supervisor.rssSamples.filter { $0.seconds >= 5 }.map(\.kib)
            let peak = supervisor.rssSamples.map(\.kib).max() ?? 0
            guard samples.count >= 15 else {
                return (supervisor.pid, samples.first ?? 0, samples.last ?? 0, peak, nil)
            }
            let tenth = max(3, samples.count / 10)
            let early = samples.prefix(tenth).sorted()[tenth / 2]
            let late = samples.suffix(tenth).sorted()[tenth / 2]
            return (supervisor.pid, early, late, peak, late <= early + max(4096, early / 10))
        }
    }
}
