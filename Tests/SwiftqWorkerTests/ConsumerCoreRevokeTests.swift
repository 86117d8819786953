import OrderedCollections
import SwiftqCore
import SwiftqTasks
import Testing

@testable import SwiftqConsumer
@testable import SwiftqPool

/// Revokes that hold, and what `inspect` lists, on the consumer core with the inline pool and manual timers.
@Suite struct ConsumerCoreRevokeTests {
    @Test func aReservedTaskRevokedWhileThePoolIsBusyNeverRuns() {
        let harness = CoreHarness(concurrency: 1)
        harness.deliver(harness.task("first"), tag: "1")
        // The inline pool reports a job started when a test says so (a prefork child does at once): until then it
        // counts as reserved, as a job waiting in a child's queue does.
        #expect(harness.core.machine.reservedInfo.map { $0["id"] } == ["first"])
        harness.pool.startPending()
        harness.deliver(harness.task("second"), tag: "2")
        #expect(harness.core.machine.reservedInfo.map { $0["id"] } == ["second"])
        #expect(harness.core.machine.activeInfo(safe: false).map { $0["id"] } == ["first"])
        harness.core.revoke(["second"], terminate: false, signal: 15)
        #expect(harness.broker.plans.last?.deliveryTag == "2")
        #expect(harness.broker.plans.last?.status == "REVOKED")
        #expect(harness.broker.plans.last?.disposition == .ack)
        #expect(harness.pool.runPending() == 1)
        #expect(harness.pool.runPending() == 0, "the revoked task ran")
        #expect(harness.core.machine.reservedInfo.isEmpty)
        #expect(harness.core.machine.revoked.ids == ["second"])
    }

    /// Celery 5.7's `_revoke`: ids this worker does not hold go to the backend as REVOKED (unless started
    /// elsewhere, checked there); a running or reserved one does not (it ends here); merged revokes store nothing.
    @Test func aRevokeOfTasksNotHeldHereAsksTheBackendToMarkThemRevoked() throws {
        let harness = CoreHarness(concurrency: 1)
        harness.deliver(harness.task("running"), tag: "1")
        harness.deliver(harness.task("reserved"), tag: "2")
        harness.core.revoke(["running", "reserved", "elsewhere"], terminate: false, signal: 15)
        let asked = harness.broker.plans.flatMap(\.revokedUnlessStarted)
        #expect(asked.map(\.taskID) == ["elsewhere"])
        let meta = try JSONValue(parsing: try #require(asked.first).meta)
        #expect(meta["status"] == "REVOKED")
        #expect(meta["result"]?["exc_type"] == "TaskRevokedError")
        #expect(meta["result"]?["exc_message"] == ["revoked"])
        let before = harness.broker.plans.count
        harness.core.mergeRevoked([("other", harness.clock.now.secondsSince1970)])
        #expect(harness.broker.plans.dropFirst(before).allSatisfy { $0.revokedUnlessStarted.isEmpty })
    }

    @Test func aRevokeReplacesOnlyTheStatesCeleryLetsItReplace() {
        #expect(RevokedResults.mayReplace(nil))
        for status in ["PENDING", "RECEIVED", "RETRY", "REJECTED"] {
            #expect(RevokedResults.mayReplace(Array(#"{"status": "\#(status)"}"#.utf8)))
        }
        for status in ["STARTED", "PROGRESS", "SUCCESS", "FAILURE", "REVOKED"] {
            #expect(!RevokedResults.mayReplace(Array(#"{"status": "\#(status)"}"#.utf8)), "\(status)")
        }
    }

    @Test func revokesMergedFromAnotherNodeFinishWaitingTasksAndHoldForLaterOnes() {
        let harness = CoreHarness(concurrency: 1)
        harness.deliver(harness.task("busy"), tag: "1")
        var eta = harness.task("eta")
        eta.eta = harness.clock.now.advanced(by: 30)
        harness.deliver(eta, tag: "2")
        #expect(harness.core.machine.scheduledInfo.first?["request"]?["id"] == "eta")
        #expect(harness.core.machine.scheduledInfo.first?["eta"] == .string(eta.eta!.iso8601))
        harness.core.mergeRevoked([
            ("eta", harness.clock.now.secondsSince1970), ("later", harness.clock.now.secondsSince1970),
        ])
        #expect(harness.core.pendingTimers == 0)
        #expect(harness.broker.plans.last?.status == "REVOKED")
        _ = harness.pool.runPending()
        harness.deliver(harness.task("later"), tag: "3")
        #expect(harness.pool.runPending() == 0)
        #expect(harness.broker.plans.last?.deliveryTag == "3")
        #expect(harness.broker.plans.last?.status == "REVOKED")
    }

    @Test func anExpiredRevokeNoLongerHoldsATaskBack() {
        let harness = CoreHarness()
        harness.core.setRevokeLimits(maximum: 10, expiry: 60)
        harness.core.revoke(["t"], terminate: false, signal: 15)
        harness.advance(by: 61)
        harness.deliver(harness.task("t"), tag: "1")
        #expect(harness.pool.runPending() == 1)
        #expect(harness.broker.plans.last?.status == "SUCCESS")
    }

    @Test func terminateSignalsTheRunningTaskWhichEndsRevoked() throws {
        let harness = CoreHarness(concurrency: 1)
        harness.deliver(harness.task("long", name: "swiftq.sleep", args: [30]), tag: "1")
        harness.deliver(harness.task("next"), tag: "2")
        harness.core.revoke(["long"], terminate: true, signal: 9)
        #expect(harness.broker.plans.last?.status == "REVOKED")
        #expect(harness.broker.plans.last?.resultJSON?["result"]?["exc_message"] == ["terminated"])
        #expect(harness.pool.runPending() == 1, "the next task runs")
        #expect(harness.broker.plans.last?.status == "SUCCESS")
    }

    @Test func stampedRevokesHoldTasksCarryingTheStamp() {
        let harness = CoreHarness()
        harness.core.revokeStamped(["mystamp": ["v1"]], terminate: false, signal: 15)
        var stamped = harness.task("s")
        stamped.headers["stamps"] = ["mystamp": ["v0", "v1"]]
        harness.deliver(stamped, tag: "1")
        #expect(harness.pool.runPending() == 0)
        #expect(harness.broker.plans.last?.status == "REVOKED")
        var other = harness.task("o")
        other.headers["stamps"] = ["mystamp": "v2"]
        harness.deliver(other, tag: "2")
        #expect(harness.pool.runPending() == 1)
    }

    @Test func requestInfoHasCeleryKeysAndSafeReprs() throws {
        let harness = CoreHarness(concurrency: 1)
        var message = harness.task("t", args: [1, "x"])
        message.kwargs = ["k": 2]
        message.argsRepr = nil
        message.kwargsRepr = nil
        harness.deliver(message, tag: "1")
        harness.pool.startPending()
        let info = try #require(harness.core.machine.activeInfo(safe: true).first)
        #expect(
            info.objectValue.map { Array($0.keys) } == [
                "id", "name", "args", "kwargs", "type", "hostname", "time_start", "acknowledged", "delivery_info",
                "worker_pid",
            ]
        )
        #expect(info["args"] == "(1, 'x')")
        #expect(info["kwargs"] == "{'k': 2}")
        #expect(harness.core.machine.activeInfo(safe: false).first?["args"] == [1, "x"])
        #expect(harness.core.machine.counters.accepted == ["swiftq.add": 1])
    }
}
