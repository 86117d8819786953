import SwiftqCore
import SwiftqRedis

/// The chord step of a settlement plan, done by whichever thread holds the Redis result backend (the Redis
/// transport's writer, or the ``ResultWriter`` next to RabbitMQ): record the header task's part; if it completes the
/// chord and this worker takes the claim, read the parts and build the body (or the `ChordError`) with
/// ``Canvas/chordCompleted(_:entries:now:newID:)``.
enum ChordStep {
    enum Outcome {
        /// Go on with the plan: publish these after the results (the chord body, or the errbacks of a failed chord),
        /// then release `cleanup` if set.
        case proceed(publishes: [OutboundMessage], cleanup: ChordClaim?, notice: String?)
        /// The chord is complete but another worker holds the claim (it publishes the body, or its claim expires):
        /// the plan stops, its message stays unacked and comes back later, so the body is never lost.
        case wait(String)
    }

    /// Celery 5.7's claim lifetime with the default `result_chord_join_timeout` (5 s): `max(5, 2 × 5)`.
    static let claimExpires = 10
    /// How long `.c` says `done` after cleanup (Celery: `max(2 × claim, 300)`).
    static let doneExpires = 300

    static func perform(
        _ part: Canvas.ChordPart,
        backend: RedisResultBackend,
        resultExpires: Duration?
    ) throws(RedisError) -> Outcome {
        let expires = resultExpires.map { Int($0.components.seconds) } ?? 0
        let token = randomHex()
        let reply = try backend.chordPartReturn(
            .init(
                groupID: part.groupID,
                member: part.member,
                entry: part.entry,
                groupIndex: part.groupIndex,
                expires: max(0, expires),
                claimExpires: claimExpires,
                token: token
            )
        )
        guard reply.isComplete else { return .proceed(publishes: [], cleanup: nil, notice: nil) }
        guard reply.claimed else {
            return .wait("chord \(part.groupID) is complete but another worker holds its claim; retrying later")
        }
        let completed: Canvas.Outcome
        if let saved = try backend.savedGroupResult(part.groupID),
            let tuple = (try? JSONValue(parsing: saved))?["result"]
        {
            // Celery's client saved the header's GroupResult (groups in the header): joined in its nested shape.
            let metas = try readMetas(Canvas.leafIDs(tuple), backend: backend)
            completed = Canvas.chordCompleted(part, join: Canvas.join(tuple, metas: metas), now: .now, newID: uuid4)
        } else {
            let entries = try backend.chordEntries(part.groupID).map { bytes in
                (try? JSONValue(parsing: bytes)) ?? .null
            }
            completed = Canvas.chordCompleted(part, entries: entries, now: .now, newID: uuid4)
        }
        // A body that starts a chord of its own (a chord as the body, a chain with a group in it): its size is set
        // before the body's header tasks are published, as for a chord a task starts (``Canvas/ChordSetup``).
        try setUp(completed.chordSetups, backend: backend, expires: expires)
        if completed.results.isEmpty {
            return .proceed(
                publishes: completed.publishes,
                cleanup: ChordClaim(groupID: part.groupID, token: token),
                notice: nil
            )
        }
        // A header task failed: the body's id gets the ChordError, its errbacks go out, and the size is dropped so a
        // late copy of a header task does not fail it again (the claim runs out by itself), as Celery does.
        _ = try backend.storeBatch(
            completed.results.map {
                ResultStoreItem(taskID: $0.taskID, meta: $0.meta, expires: resultExpires)
            }
        )
        try backend.chordDropSize(part.groupID)
        return .proceed(
            publishes: completed.publishes,
            cleanup: nil,
            notice: "chord \(part.groupID) failed: a header task failed; ChordError stored for its body"
        )
    }

    /// Starts the chords a completed chord's body starts (Celery's `set_chord_size`), and counts the members tasks add
    /// to their chords (Celery's `add_to_chord`).
    static func setUp(_ setups: [Canvas.ChordSetup], backend: RedisResultBackend, expires: Int) throws(RedisError) {
        for setup in setups {
            if setup.extends {
                try backend.addToChord(setup.groupID, count: setup.size, expires: max(0, expires))
            } else {
                try backend.setChordSize(setup.groupID, size: setup.size, expires: max(0, expires))
            }
        }
    }

    /// The stored metas of `ids`, parsed, by id (missing ones left out: `PENDING`).
    static func readMetas(_ ids: [String], backend: RedisResultBackend) throws(RedisError) -> [String: JSONValue] {
        var metas: [String: JSONValue] = [:]
        for (id, bytes) in zip(ids, try backend.getMany(taskIDs: ids)) {
            if let bytes, let meta = try? JSONValue(parsing: bytes) { metas[id] = meta }
        }
        return metas
    }

    /// The chord work of one plan, after its results are stored: its chord parts in order, then its chord_unlock.
    /// Returns false when the plan must wait (a complete chord whose claim another worker holds); what was done
    /// is removed from the plan, and the publishes it leads to are added to its ``Settlement/afterResult``.
    static func run(
        _ plan: inout Settlement,
        backend: RedisResultBackend,
        resultExpires: Duration?,
        notice: (String) -> Void
    ) throws(RedisError) -> Bool {
        while let part = plan.chordParts.first {
            switch try perform(part, backend: backend, resultExpires: resultExpires) {
            case .wait(let reason):
                notice(reason)
                return false
            case .proceed(let publishes, let cleanup, let text):
                if let text { notice(text) }
                plan.afterResult += publishes
                if let cleanup {
                    if plan.chordCleanup == nil {
                        plan.chordCleanup = cleanup
                    } else {
                        notice("chord \(cleanup.groupID): its keys expire (one cleanup per delivery)")
                    }
                }
            }
            plan.chordParts.removeFirst()
        }
        if let unlock = plan.chordUnlock {
            let metas = try readMetas(Canvas.leafIDs(unlock.header), backend: backend)
            let outcome = Canvas.unlocked(unlock, metas: metas, now: .now, newID: uuid4)
            let expires = resultExpires.map { Int($0.components.seconds) } ?? 0
            try setUp(outcome.chordSetups, backend: backend, expires: expires)
            if !outcome.results.isEmpty {
                notice("chord \(unlock.groupID) failed (chord_unlock): ChordError stored for its body")
                _ = try backend.storeBatch(
                    outcome.results.map { ResultStoreItem(taskID: $0.taskID, meta: $0.meta, expires: resultExpires) }
                )
            }
            plan.afterResult += outcome.publishes
            plan.chordUnlock = nil
        }
        return true
    }
}
