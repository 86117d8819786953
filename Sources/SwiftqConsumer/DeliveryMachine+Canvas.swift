import SwiftqCore

extension DeliveryMachine {
    /// Adds a finished task's canvas follow-ups to its plan (see ``Canvas``): on success the callbacks and the next
    /// chain step are published before the result; on failure the rest of the chain is failed after it and the
    /// errbacks published after that; a chord header reports its part after the results. Options and canvas parts
    /// swiftq cannot honour are logged and counted. Returns the outcome (its `children` go into the SUCCESS meta).
    mutating func canvasFollowUps(
        _ message: TaskMessage,
        status: Status,
        now: CeleryTimestamp,
        into plan: inout Settlement,
        actions: inout [Action]
    ) -> Canvas.Outcome {
        let context = Canvas.Context(finished: message, origin: settings.nodeName, defaultQueue: settings.defaultQueue)
        let outcome: Canvas.Outcome
        let state: String
        let stored: JSONValue
        switch status {
        case .success(let value):
            outcome = Canvas.afterSuccess(message, value: value, context: context, now: now, newID: newID)
            plan.publishes += outcome.publishes
            plan.chordSetups += outcome.chordSetups
            state = "SUCCESS"
            stored = value
        case .failure(let failure):
            let exception = ResultMeta.exception(
                type: failure.type,
                message: failure.arguments ?? [.string(failure.message)],
                module: failure.module
            )
            outcome = Canvas.afterFailure(
                message,
                exception: exception,
                traceback: failure.traceback,
                storesResults: settings.storesResults,
                context: context,
                now: now,
                newID: newID
            )
            plan.afterResult += outcome.publishes
            state = "FAILURE"
            stored = exception
        }
        if settings.storesResults {
            plan.followingResults += outcome.results
            if let part = Canvas.chordPart(message, state: state, result: stored, context: context) {
                plan.chordParts.append(part)
            }
            if state == "FAILURE" {
                // A chain in a chord header counts by its last step: a failure that ends the chain early counts
                // for it (Celery's mark_as_failure), so the chord fails with ChordError instead of waiting forever.
                plan.chordParts += Canvas.chainChordParts(message.chain, state: state, result: stored, context: context)
            }
        }
        recordCanvas(outcome, chordParts: plan.chordParts.count, message: message, actions: &actions)
        return outcome
    }

    /// A revoked (or expired, or terminated) chord header still counts for its chord, as `REVOKED`, so the chord
    /// fails with `ChordError` instead of waiting forever (Celery's `mark_as_revoked`).
    mutating func revokedChordPart(_ message: TaskMessage, reason: String, into plan: inout Settlement) {
        guard settings.storesResults else { return }
        let context = Canvas.Context(finished: message, origin: settings.nodeName, defaultQueue: settings.defaultQueue)
        let exception = ResultMeta.exception(
            type: "TaskRevokedError",
            message: [.string(reason)],
            module: "celery.exceptions"
        )
        if let part = Canvas.chordPart(message, state: "REVOKED", result: exception, context: context) {
            plan.chordParts.append(part)
            counters.canvas["chord_parts", default: 0] += 1
        }
    }

    mutating func recordCanvas(
        _ outcome: Canvas.Outcome,
        chordParts: Int,
        message: TaskMessage,
        actions: inout [Action]
    ) {
        if !outcome.publishes.isEmpty { counters.canvas["published", default: 0] += outcome.publishes.count }
        if !outcome.results.isEmpty { counters.canvas["failed_in_chain", default: 0] += outcome.results.count }
        if chordParts > 0 { counters.canvas["chord_parts", default: 0] += chordParts }
        let added = outcome.chordSetups.filter(\.extends).count
        if outcome.chordSetups.count > added {
            counters.canvas["chords_started", default: 0] += outcome.chordSetups.count - added
        }
        if added > 0 { counters.canvas["chord_members_added", default: 0] += added }
        if !outcome.ignoredOptions.isEmpty {
            counters.canvas["canvas_option_ignored", default: 0] += outcome.ignoredOptions.count
            let names = Array(Set(outcome.ignoredOptions)).sorted().joined(separator: ", ")
            actions.append(
                .log(
                    .init(
                        level: .warning,
                        text: "signature options swiftq does not honour were ignored: \(names)",
                        taskID: message.id,
                        taskName: message.name
                    )
                )
            )
        }
        for part in outcome.unsupported {
            counters.canvas["canvas_unsupported", default: 0] += 1
            actions.append(
                .log(
                    .init(
                        level: .error,
                        text: "cannot send \(part) from swiftq; its results are stored as FAILURE",
                        taskID: message.id,
                        taskName: message.name
                    )
                )
            )
        }
        if !outcome.publishes.isEmpty {
            let names = outcome.publishes.compactMap { $0.headers["task"]?.stringValue }.joined(separator: ", ")
            actions.append(
                .log(
                    .init(
                        level: .debug,
                        text: "canvas: sending \(names)",
                        taskID: message.id,
                        taskName: message.name
                    )
                )
            )
        }
    }
}

/// A random (version 4) UUID in its usual lowercase text form, as Celery's ids are.
package func uuid4() -> String {
    var generator = SystemRandomNumberGenerator()
    var bytes = (0..<16).map { _ in UInt8.random(in: 0...255, using: &generator) }
    bytes[6] = (bytes[6] & 0x0f) | 0x40
    bytes[8] = (bytes[8] & 0x3f) | 0x80
    let hex = bytes.map { byte in
        let text = String(byte, radix: 16)
        return text.count == 1 ? "0" + text : text
    }
    let groups = [0..<4, 4..<6, 6..<8, 8..<10, 10..<16].map { hex[$0].joined() }
    return groups.joined(separator: "-")
}
