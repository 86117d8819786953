import Foundation
import SwiftqCore
import Testing

/// `celery control rate_limit` and `time_limit` change how swiftqd runs a task name from then on.
@Suite(.serialized) struct RemoteLimitsTests {
    @Test func celeryControlChangesARateLimitAndTimeLimitsAtRuntime() throws {
        let redis = try RedisServer()
        let node = "limits-\(UInt32.random(in: 0...UInt32.max))@test"
        let daemon = try RedisInteropTests.daemon(broker: redis, workerYAMLExtra: "  hostname: \(node)\n")
        #expect(eventually(timeout: 20) { (try? daemon.stats())?["broker"]?["connected"] == true })

        let rate = try CeleryControl.cli(
            redis.url,
            ["control", "rate_limit", "swiftq.add", "4/s", "-j", "-d", node, "--timeout", "5"]
        )
        #expect("\(rate)".contains("new rate limit set successfully"), "\(rate)")
        var request =
            RedisInteropTests.request(
                redis,
                calls: (0..<12).map { ["task": "swiftq.add", "args": [.int(Int64($0)), 1]] },
                timeout: 30
            ).objectValue ?? [:]
        request["date_done"] = true
        let results = try Python.celeryClient(.object(request), timeout: 60)
        let done = results.compactMap { $0["date_done"]?.stringValue.flatMap(CeleryTimestamp.init(iso8601:)) }
        try #require(done.count == 12, "\(results)")
        let span = done.map(\.secondsSince1970).max()! - done.map(\.secondsSince1970).min()!
        #expect(span >= 2, "12 tasks at 4/s took \(span)s: the remote rate limit was not applied")

        let off = try CeleryControl.cli(
            redis.url,
            ["control", "rate_limit", "swiftq.add", "0", "-j", "-d", node, "--timeout", "5"]
        )
        #expect("\(off)".contains("rate limit disabled successfully"), "\(off)")

        // A soft limit of 0.5 s and a hard one of 2 s for swiftq.sleep: sleep(5) fails at the soft limit.
        let limits = try CeleryControl.cli(
            redis.url,
            ["control", "time_limit", "swiftq.sleep", "0.5", "2", "-j", "-d", node, "--timeout", "5"]
        )
        #expect("\(limits)".contains("time limits set successfully"), "\(limits)")
        let started = Date()
        let slept = try Python.celeryClient(
            RedisInteropTests.request(redis, calls: [["task": "swiftq.sleep", "args": [5]]], timeout: 20)
        )
        #expect(slept.first?["state"] == "FAILURE", "\(slept)")
        #expect(slept.first?["exception"]?["type"] == "SoftTimeLimitExceeded", "\(slept)")
        #expect(Date().timeIntervalSince(started) < 4, "the runtime time limits were not applied")
        let unknown = try CeleryControl.cli(
            redis.url,
            ["control", "time_limit", "no.such.task", "1", "-j", "-d", node, "--timeout", "5"]
        )
        #expect("\(unknown)".contains("unknown task"), "\(unknown)")

        // The same commands from swiftqctl on the control socket.
        let set = try daemon.ctl(["rate-limit", "swiftq.add", "2/s"])
        #expect(set.status == 0 && set.stdout.contains("new rate limit set successfully"), "\(set)")
        let bad = try daemon.ctl(["rate-limit", "swiftq.add", "quickly"])
        #expect(bad.status == 1 && bad.stderr.contains("Invalid rate limit string"), "\(bad)")
        let time = try daemon.ctl(["time-limit", "swiftq.sleep", "10", "20"])
        #expect(time.status == 0 && time.stdout.contains("time limits set successfully"), "\(time)")
        let missing = try daemon.ctl(["time-limit", "no.such.task", "1"])
        #expect(missing.status == 1 && missing.stderr.contains("unknown task"), "\(missing)")
    }
}
