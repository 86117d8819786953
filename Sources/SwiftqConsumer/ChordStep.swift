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
        var notice: String?
        if try backend.groupResultExists(part.groupID) {
            notice =
                "chord \(part.groupID) has a saved GroupResult (nested groups in its header); swiftq passes the "
                + "flat list of header results to the body"
        }
        let entries = try backend.chordEntries(part.groupID).map { bytes in
            (try? JSONValue(parsing: bytes)) ?? .null
        }
        let completed = Canvas.chordCompleted(part, entries: entries, now: .now, newID: uuid4)
        if completed.results.isEmpty {
            return .proceed(
                publishes: completed.publishes,
                cleanup: ChordClaim(groupID: part.groupID, token: token),
                notice: notice
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
}
