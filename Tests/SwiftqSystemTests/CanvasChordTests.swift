import Foundation
import SwiftqCore
import Testing

/// Chords whose headers are not a flat list of tasks, chord errbacks, and `celery.chord_unlock`, sent by a stock
/// Python 5.7 client and run by swiftqd on a real redis-server. The expected values are what a stock Python worker
/// gives for the same canvas (checked with Celery 5.7.0).
extension CanvasRedisTests {
    /// The ChordError a failed chord's body gets: "Dependency <id> raised <repr>", the id being the failed task's.
    static func expectChordError(
        _ out: JSONValue,
        raised repr: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        #expect(out["body_state"] == "FAILURE", "\(out)", sourceLocation: sourceLocation)
        let stored = out["body_meta"]?["result"]
        #expect(stored?["exc_type"] == "ChordError", "\(out)", sourceLocation: sourceLocation)
        #expect(stored?["exc_module"] == "celery.exceptions", sourceLocation: sourceLocation)
        let text = stored?["exc_message"]?[0]?.stringValue ?? ""
        #expect(
            text.hasPrefix("Dependency ") && text.hasSuffix(" raised \(repr)"),
            "\(text)",
            sourceLocation: sourceLocation
        )
        // The culprit named is the task that failed, with that failure stored.
        #expect(out["culprit_meta"]?["status"] == "FAILURE", "\(out)", sourceLocation: sourceLocation)
        #expect(out["culprit_meta"]?["result"]?["exc_type"] == "ValueError", sourceLocation: sourceLocation)
    }

    /// `chord([chain(add(1, 1), fail(), add(5)), add(3, 3)], echo)`: the chain counts for the chord by its last step,
    /// which never runs; the failure of its second step counts for it (Celery's mark_as_failure walks the chain), so
    /// the chord fails with ChordError instead of waiting for ever. The body's errback is sent with the body as its
    /// parent and root, as Celery's chord_error_from_stack does.
    @Test func aChainInAChordHeaderWhoseEarlyStepFailsFailsTheChord() throws {
        let redis = try RedisServer()
        let daemon = try RedisInteropTests.daemon(broker: redis)
        let out = try Self.canvas(
            redis,
            "chord_chain_header",
            ["shape": "chain_fail", "errback_queue": "parked"],
            timeout: 20
        )
        #expect(out["exception"]?["type"] == "ValueError", "\(out)\n\(daemon.log.suffix(3000))")
        Self.expectChordError(out, raised: "ValueError('early')")
        let errbacks = out["errbacks"]?.arrayValue ?? []
        #expect(errbacks.count == 1, "\(out)")
        #expect(errbacks.first?["args"] == [out["body_id"] ?? nil, "errback"])
        #expect(errbacks.first?["parent_id"] == out["body_id"])
        #expect(errbacks.first?["root_id"] == out["body_id"], "Celery's errback of a failed chord has the body as root")
        #expect(try Self.succeeded(daemon, "swiftq.echo") == 0)
    }

    /// A flat header with a failing task: the errback of the body has the body as root too (it had the header
    /// task's root before).
    @Test func aFailedChordsErrbackHasTheBodyAsRoot() throws {
        let redis = try RedisServer()
        let daemon = try RedisInteropTests.daemon(broker: redis)
        let out = try Self.canvas(redis, "chord_chain_header", ["shape": "fail", "errback_queue": "parked"])
        Self.expectChordError(out, raised: "ValueError('header broke')")
        let errbacks = out["errbacks"]?.arrayValue ?? []
        #expect(errbacks.count == 1, "\(out)\n\(daemon.log.suffix(2000))")
        #expect(errbacks.first?["parent_id"] == out["body_id"])
        #expect(errbacks.first?["root_id"] == out["body_id"])
    }

    /// `chord([chain(add(1, 1), group(add(1), add(2))), add(3, 3)], echo)`: the header holds a group, so the client
    /// saves its GroupResult and the body gets the results in their nested shape, `[[3, 4], 6]`, as from a Python
    /// worker. The group's members keep the chord's group id (Celery's immutable `group_id` option) when swiftqd
    /// sends them after the chain's first step.
    @Test func aHeaderWithAGroupInItPassesNestedResults() throws {
        let redis = try RedisServer()
        let daemon = try RedisInteropTests.daemon(broker: redis)
        let out = try Self.canvas(redis, "chord_chain_header", ["shape": "nested"], timeout: 20)
        #expect(out["value"] == [[3, 4], 6], "\(out)\n\(daemon.log.suffix(3000))")
        #expect(out["body_meta"]?["group_id"] == out["group_id"])
        #expect(try Self.succeeded(daemon, "swiftq.echo") == 1)
        let failed = try Self.canvas(redis, "chord_chain_header", ["shape": "nested_fail"], timeout: 20)
        Self.expectChordError(failed, raised: "ValueError('member broke')")
    }

    /// `chord([add(0, 0), add(1, 1), add(2, 2)], chord([echo(), echo()], echo()))`: the worker that completes the
    /// outer header starts the inner chord, so it sets the inner chord's size before publishing its header (as Celery's
    /// `chord.run` does); without it the inner header's parts were counted against no size and its body never ran.
    @Test func aChordAsAChordsBodyIsStartedWithItsSize() throws {
        let redis = try RedisServer()
        let daemon = try RedisInteropTests.daemon(broker: redis)
        let out = try Self.canvas(redis, "chord_chain_header", ["body": "chord"], timeout: 20)
        #expect(out["value"] == [[0, 2, 4], [0, 2, 4]], "\(out)\n\(daemon.log.suffix(3000))")
        #expect(try Self.succeeded(daemon, "swiftq.echo") == 3)
    }

    /// A client whose backend has no native chords sends Celery's `celery.chord_unlock`: swiftqd polls the header
    /// (again every `interval` while a task of it still runs), then applies the body to the results in order, once.
    @Test func chordUnlockAppliesTheBodyOnceTheHeaderIsReady() throws {
        let redis = try RedisServer()
        let daemon = try RedisInteropTests.daemon(broker: redis, concurrency: 2)
        let out = try Self.canvas(redis, "chord_unlock", ["count": 3, "slow": 2, "interval": 0.3], timeout: 20)
        #expect(out["value"] == [0, 2, 4, nil], "\(out)\n\(daemon.log.suffix(3000))")
        #expect(try Self.succeeded(daemon, "swiftq.echo") == 1)
        let polls = try daemon.stats()["tasks"]?["canvas"]?["chord_unlock_polls"]?.intValue ?? 0
        #expect(polls >= 3, "the header took 2 s, polled every 0.3 s: \(polls) polls")
        #expect(!daemon.log.contains("NotRegistered"))
        // The body was sent by chord_unlock: its parent is the unlock task, not a header task.
        let parent = try #require(out["body_meta"]?["parent_id"]?.stringValue)
        let header = try redis.cli(["-n", "1", "GET", "celery-task-meta-\(parent)"])
        #expect(
            header.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty,
            "chord_unlock stores no result (ignore_result): \(header)"
        )
    }

    /// chord_unlock with a failed header task: ChordError for the body and its errback sent; with a group in the
    /// header: the nested results.
    @Test func chordUnlockFailsTheChordOrPassesNestedResults() throws {
        let redis = try RedisServer()
        let daemon = try RedisInteropTests.daemon(broker: redis, concurrency: 2)
        let failed = try Self.canvas(
            redis,
            "chord_unlock",
            ["shape": "fail", "errback_queue": "parked", "interval": 0.3],
            timeout: 20
        )
        Self.expectChordError(failed, raised: "ValueError('header broke')")
        let errbacks = failed["errbacks"]?.arrayValue ?? []
        #expect(errbacks.count == 1, "\(failed)\n\(daemon.log.suffix(3000))")
        #expect(errbacks.first?["root_id"] == failed["body_id"])
        let nested = try Self.canvas(redis, "chord_unlock", ["shape": "nested", "interval": 0.3], timeout: 20)
        #expect(nested["value"] == [[3, 4], 6], "\(nested)\n\(daemon.log.suffix(3000))")
        #expect(try Self.succeeded(daemon, "swiftq.echo") == 1)
    }
}

extension CanvasRedisTests {
    /// The request context of Swift tasks (``TaskRequest``): the Celery suite's `ids` and `collect_ids`, run by the
    /// suite worker binary, see the root and parent ids a Python worker's tasks would.
    @Test func swiftTasksSeeTheirRequestContext() throws {
        let redis = try RedisServer()
        let daemon = try RedisInteropTests.daemon(
            broker: redis,
            binary: Binaries.directory + "/swiftq-celery-suite-worker"
        )
        let out = try Self.canvas(redis, "suite_ids")
        let first = try #require(out["first_id"]?.stringValue, "\(out)\n\(daemon.log.suffix(2000))")
        #expect(out["value"] == [[.string(first), nil, 1], [.string(first), .string(first), 2]], "\(out)")
    }
}
