import Foundation
import SwiftqCore
import SwiftqPlatform
import Testing

@testable import SwiftqConsumer
@testable import SwiftqPool
@testable import SwiftqWorker

/// A transport that only records what the consumer hands it (the consumer wiring is under test, not a broker).
final class RecordingTransport: BrokerTransport, @unchecked Sendable {
    let events: Mailbox<BrokerEvent>
    private(set) var plans: [Settlement] = []
    private(set) var queues: [[String]] = []
    private(set) var started = false

    init() throws { events = try Mailbox() }

    var redactedURL: String { "recording://" }
    var fetchProgress: FetchProgress { FetchProgress(lastProgress: .now, lastDelivery: nil, starved: false) }
    func start() { started = true }
    func grant(_ count: Int) {}
    func setHeldForETA(_ count: Int) {}
    func setWindowAllowance(_ count: Int) {}
    func setRunning(_ tag: String, _ isRunning: Bool) {}
    func isStale(_ tag: String) -> Bool { false }
    func setWindow(_ count: Int) {}
    func setQueues(_ queues: [String]) { self.queues.append(queues) }
    func setMingle(revokes ids: [String]?) {}
    func settle(_ plans: [Settlement]) { self.plans += plans }
    func stop(restoreHeld: Bool, timeout: Duration) {}
}

/// Control commands that reach a consumer still starting (its pool and task path not built yet, e.g. while mingle
/// runs) were answered `ok` and then lost: a revoke was neither applied nor saved in `worker.state_db`.
@Suite struct ConsumerControlBeforeStartTests {
    @Test func aRevokeBeforeTheTaskPathExistsIsHeldAppliedAndSaved() throws {
        let directory = NSTemporaryDirectory() + "swiftq-early-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let transport = try RecordingTransport()
        let consumer = Consumer(registry: .builtIn, makeTransport: { _, _, _ in transport })
        consumer.configuration.worker.stateDB = directory + "/revokes.json"

        let revoke = consumer.runControl(method: "revoke", arguments: ["task_id": "early"], via: .socket)
        #expect(revoke.reply?["ok"] != nil)
        let limit = consumer.runControl(
            method: "rate_limit",
            arguments: ["task_name": "swiftq.add", "rate_limit": "2/s"],
            via: .socket
        )
        #expect(limit.reply?["ok"] != nil)
        #expect(consumer.core == nil)
        #expect(consumer.heldControlEffects.count == 2)

        consumer.pool = InlinePool(size: 1, registry: .builtIn)
        try consumer.startConnection()
        let core = try #require(consumer.core)
        #expect(core.machine.revoked.ids == ["early"])
        #expect(core.machine.overrides["swiftq.add"]?.rateLimit == 2)
        #expect(consumer.heldControlEffects.isEmpty)
        // Kept in the broker's revoke list, and in the state file.
        #expect(transport.plans.flatMap { $0.revokes.map(\.id) } == ["early"])
        consumer.writeStateFile()
        let saved = try JSONValue(parsing: try String(contentsOfFile: directory + "/revokes.json", encoding: .utf8))
        #expect(saved["revoked"]?[0]?[0] == "early")
    }

    @Test func aQueueAddedBeforeTheTransportExistsIsConsumed() throws {
        let transport = try RecordingTransport()
        let consumer = Consumer(registry: .builtIn, makeTransport: { _, _, _ in transport })
        let reply = consumer.runControl(method: "add_consumer", arguments: ["queue": "early"], via: .socket)
        #expect(reply.reply?["ok"] != nil)
        consumer.pool = InlinePool(size: 1, registry: .builtIn)
        try consumer.startConnection()
        #expect(transport.queues.last == ["celery", "early"])
    }

    /// `inspect revoked` before the consumer has connected lists what the machine will hold once it starts: the
    /// state file's unexpired revokes and those held meanwhile (it answered an empty list until then).
    @Test func inspectRevokedBeforeTheTaskPathExistsListsTheStateFileAndHeldRevokes() throws {
        let directory = NSTemporaryDirectory() + "swiftq-early-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let now = CeleryTimestamp.now.secondsSince1970
        let state = #"{"version":1,"revoked":[["saved",\#(now)],["too-old",\#(now - 1_000_000)]]}"#
        try state.write(toFile: directory + "/revokes.json", atomically: true, encoding: .utf8)
        let consumer = Consumer(registry: .builtIn, makeTransport: { _, _, _ in try RecordingTransport() })
        consumer.configuration.worker.stateDB = directory + "/revokes.json"
        _ = consumer.runControl(method: "revoke", arguments: ["task_id": "early"], via: .socket)
        #expect(consumer.core == nil)
        let listed = consumer.runControl(method: "revoked", arguments: [:], via: .socket)
        #expect(listed.reply == .array(["saved", "early"]))
    }
}
