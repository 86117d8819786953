import OrderedCollections
import SwiftqCore
import Testing

@Suite("Beat: scheduler and lease (injected clock)")
struct BeatSchedulerTests {
    static func entry(_ name: String, every seconds: Int64, catchUp: Configuration.BeatEntry.CatchUp = .none)
        -> Configuration.BeatEntry
    {
        var entry = Configuration.BeatEntry(name: name)
        entry.task = "swiftq.ping"
        entry.schedule = .interval(.seconds(seconds))
        entry.catchUp = catchUp
        return entry
    }

    static func configured(_ entries: Configuration.BeatEntry...)
        -> OrderedDictionary<String, (entry: Configuration.BeatEntry, zone: TimeZoneInfo)>
    {
        var result: OrderedDictionary<String, (entry: Configuration.BeatEntry, zone: TimeZoneInfo)> = [:]
        for entry in entries { result[entry.name] = (entry, .utc) }
        return result
    }

    @Test func intervalRunsAndNoBurstAfterStall() {
        var scheduler = BeatScheduler()
        scheduler.apply(Self.configured(Self.entry("a", every: 10)), lastRuns: [:], now: 1000)
        #expect(scheduler.due(now: 1009).isEmpty)
        #expect(scheduler.due(now: 1010) == [.init(entry: "a", scheduledAt: 1010)])
        scheduler.published(.init(entry: "a", scheduledAt: 1010), now: 1010)
        // A stall over several periods: one run, then the schedule continues from now.
        #expect(scheduler.due(now: 1075).count == 1)
        scheduler.published(scheduler.due(now: 1075)[0], now: 1075)
        #expect(scheduler.due(now: 1075).isEmpty)
        #expect(scheduler.nextDue?.at == 1085)
    }

    @Test func catchUpNoneSkipsMissedRuns() {
        var scheduler = BeatScheduler()
        let entry = Self.entry("a", every: 10)
        let stored = ["a": (at: 1000.0, fingerprint: BeatScheduler.fingerprint(entry, zone: .utc))]
        scheduler.apply(Self.configured(entry), lastRuns: stored, now: 1100)
        #expect(scheduler.due(now: 1100).isEmpty)
        #expect(scheduler.nextDue?.at == 1110)
    }

    @Test func catchUpOnceRunsOnce() {
        var scheduler = BeatScheduler()
        let entry = Self.entry("a", every: 10, catchUp: .once)
        let stored = ["a": (at: 1000.0, fingerprint: BeatScheduler.fingerprint(entry, zone: .utc))]
        scheduler.apply(Self.configured(entry), lastRuns: stored, now: 1100)
        let due = scheduler.due(now: 1100)
        #expect(due == [.init(entry: "a", scheduledAt: 1100)])
        scheduler.published(due[0], now: 1100)
        #expect(scheduler.due(now: 1100).isEmpty)
        #expect(scheduler.nextDue?.at == 1110)
    }

    @Test func reloadAddsRemovesAndRecomputes() {
        var scheduler = BeatScheduler()
        scheduler.apply(Self.configured(Self.entry("a", every: 10), Self.entry("b", every: 10)), lastRuns: [:], now: 0)
        scheduler.apply(Self.configured(Self.entry("a", every: 5), Self.entry("c", every: 7)), lastRuns: [:], now: 3)
        #expect(Array(scheduler.entries.keys) == ["a", "c"])
        #expect(scheduler.entries["a"]?.nextRun == 8)
        #expect(scheduler.entries["c"]?.nextRun == 10)
    }

    @Test func adoptingAnotherHoldersRecord() {
        var scheduler = BeatScheduler()
        scheduler.apply(Self.configured(Self.entry("a", every: 1)), lastRuns: [:], now: 100)
        // The old holder published up to 104; this node takes over at 107.5: 105, 106 and 107 are handed back once.
        let missed = scheduler.adopt(lastRun: 104, for: "a", now: 107.5, window: 10)
        #expect(missed.map(\.scheduledAt) == [105, 106, 107])
        #expect(scheduler.due(now: 107.5).isEmpty)
        #expect(scheduler.nextDue?.at == 108)
        // Runs older than the window are not replayed (catch_up none).
        #expect(scheduler.adopt(lastRun: 50, for: "a", now: 107.5, window: 2).map(\.scheduledAt) == [106, 107])
    }

    @Test func leaseMachine() {
        var lease = BeatLease(ttl: 6)
        #expect(lease.tick(now: 0) == .acquire)
        lease.acquireFailed(at: 0)
        #expect(!lease.mayPublish(at: 0))
        #expect(lease.tick(now: 1) == .none)
        #expect(lease.tick(now: 2) == .acquire)
        lease.acquired(fence: 7, at: 2)
        #expect(lease.fence == 7)
        #expect(lease.mayPublish(at: 2))
        #expect(lease.tick(now: 3) == .none)
        #expect(lease.tick(now: 4) == .renew)
        lease.renewed(at: 4)
        // Not renewed (the holder was paused): it stops publishing before the lease can expire on the broker.
        #expect(lease.mayPublish(at: 8.9))
        #expect(!lease.mayPublish(at: 9.5))
        #expect(lease.tick(now: 10) == .acquire)
        #expect(!lease.isHolder)
        lease.acquired(fence: 9, at: 10)
        #expect(lease.stop() == .release)
        #expect(lease.tick(now: 1e9) == .none)
    }
}

@Suite("Beat: configuration")
struct BeatConfigurationTests {
    @Test func parsesEntries() throws {
        let yaml = """
            beat:
              enabled: true
              timezone: Europe/Berlin
              schedule:
                cleanup:
                  task: reports.cleanup
                  cron: "30 2 * * *"
                  args: [1, "two", 3.5]
                  kwargs: {dry_run: yes}
                  queue: reports
                  priority: 5
                  expires: 10m
                  headers: {x-origin: beat}
                  catch_up: once
                ping:
                  task: swiftq.ping
                  every: 30s
                  timezone: America/New_York
            """
        let configuration = try Configuration.parse(yaml, file: "beat.yaml")
        #expect(configuration.beat.enabled)
        #expect(configuration.beat.timezone == "Europe/Berlin")
        let cleanup = try #require(configuration.beat.schedule["cleanup"])
        #expect(cleanup.schedule == .cron(try CronExpression(parsing: "30 2 * * *")))
        #expect(cleanup.args == [1, "two", 3.5])
        #expect(cleanup.kwargs == ["dry_run": true])
        #expect(cleanup.queue == "reports" && cleanup.priority == 5 && cleanup.catchUp == .once)
        #expect(cleanup.expires == .seconds(600))
        #expect(configuration.beat.schedule["ping"]?.schedule == .interval(.seconds(30)))
        // The rendering reads back as the same value (the supervisor hands it to its children as text).
        #expect(try Configuration.parse(configuration.yaml(maskingSecrets: false), file: "x") == configuration)
    }

    @Test(arguments: [
        (
            "beat:\n  schedule:\n    a:\n      task: t\n      cron: \"61 * * * *\"\n", 5, 13, "beat.schedule.a.cron",
            "invalid cron expression: minute field: 61 is out of range 0-59"
        ),
        (
            "beat:\n  timezone: Mars/Base\n", 2, 13, "beat.timezone", "unknown time zone \"Mars/Base\""
        ),
        (
            "beat:\n  schedule:\n    a:\n      task: t\n      every: 1s\n      cron: \"* * * * *\"\n", 3, 5,
            "beat.schedule.a", "give exactly one of \"every\" or \"cron\", not both"
        ),
        ("beat:\n  schedule:\n    a:\n      task: t\n", 3, 5, "beat.schedule.a", "missing schedule"),
        (
            "beat:\n  schedule:\n    a:\n      task: t\n      every: 1s\n      catch_up: twice\n", 6, 17,
            "beat.schedule.a.catch_up", "expected none or once"
        ),
    ])
    func rejected(_ yaml: String, _ line: Int, _ column: Int, _ keyPath: String, _ message: String) {
        do {
            _ = try Configuration.parse(yaml, file: "beat.yaml")
            Issue.record("accepted")
        } catch {
            let diagnostic = error.diagnostics.first
            #expect(error.diagnostics.count == 1)
            #expect(diagnostic?.line == line)
            #expect(diagnostic?.column == column)
            #expect(diagnostic?.keyPath == keyPath)
            #expect(diagnostic?.message.hasPrefix(message) == true, "\(diagnostic?.message ?? "")")
        }
    }
}

@Suite("Beat: documentation")
struct BeatDocumentationTests {
    @Test func sampleShowsEveryEntryKey() throws {
        let text = try String(contentsOfFile: ConfigurationSampleTests.samplePath, encoding: .utf8)
        let mentioned = ConfigurationSampleTests.keyPaths(mentionedIn: text)
        for pattern in Configuration.beatEntryKeyPaths {
            #expect(
                mentioned.contains { ConfigurationSampleTests.path($0, matches: pattern) },
                "the sample does not show \(pattern)"
            )
        }
    }

    @Test func manPageHasEveryEntryKey() throws {
        let text = try String(contentsOfFile: ConfigurationManPageTests.manPagePath, encoding: .utf8)
        let entries = ConfigurationManPageTests.entries(in: text)
        for keyPath in Configuration.beatEntryKeyPaths {
            #expect(entries.contains(ConfigurationManPageTests.entry(for: keyPath)), "no man page entry for \(keyPath)")
        }
    }
}
