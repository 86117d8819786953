import SwiftqCore
import SwiftqPlatform
import SwiftqPool
import SwiftqRedis

/// Stores results in a Redis result backend on its own thread, then passes each plan on (its result
/// dropped) to whoever acks it, in order: an ack never precedes its task's stored result.
///
/// The AMQP transport uses it for `result_backend.url: redis://…`, so that a slow or restarting Redis never
/// stalls the thread that keeps the AMQP connection's heartbeats going. A failed batch is retried whole after
/// a reconnect (storing is idempotent, and a stored SUCCESS is never overwritten).
package final class ResultWriter: Sendable {
    /// The backend's server, or the master its sentinels name (asked again at every reconnect).
    private let url: RedisTarget
    private let expires: Duration?
    private let queue = WorkQueue<Settlement>()
    private let finished = Semaphore()
    private let batchLimit = 64
    /// Receives each batch once its results are stored, with how many results that was.
    private let forward: @Sendable ([Settlement], Int) -> Void
    /// Receives connection problems (`nil` once connected again).
    private let report: @Sendable (String?) -> Void

    package init(
        url: RedisTarget,
        expires: Duration?,
        forward: @escaping @Sendable ([Settlement], Int) -> Void,
        report: @escaping @Sendable (String?) -> Void
    ) {
        self.url = url
        self.expires = expires
        self.forward = forward
        self.report = report
    }

    package func start() {
        PlatformThread.startOrExit(name: "swiftq-results") { [self] in run() }
    }

    package func post(_ plans: [Settlement]) { queue.post(plans) }

    /// Stores what is queued, then stops; waits at most `timeout`.
    package func stop(timeout: Duration) {
        queue.stop()
        finished.wait(timeout: timeout)
    }

    private func run() {
        var backoff = Backoff()
        var backend: RedisResultBackend?
        var pending: [Settlement] = []
        var stopped = false
        var failing = false
        while true {
            if pending.isEmpty {
                if stopped { break }
                let (items, isStopped) = queue.take(timeout: .seconds(1))
                pending = items
                stopped = isStopped
                if pending.isEmpty { continue }
            }
            var batch = Array(pending.prefix(batchLimit))
            // Plans that start chords come here before their publishes: only the chord sizes are set now; their
            // results come back later, after the publishes.
            let starting = Set(batch.indices.filter { !batch[$0].chordSetups.isEmpty })
            let items = batch.indices.filter { !starting.contains($0) }.flatMap { index in
                batch[index].allResults.map { ResultStoreItem(taskID: $0.taskID, meta: $0.meta, expires: expires) }
            }
            do {
                if batch.contains(where: { !$0.revokedUnlessStarted.isEmpty }) {
                    let connected =
                        try backend
                        ?? RedisResultBackend(
                            connection: url.connect(connectTimeout: .seconds(5), commandTimeout: .seconds(10))
                        )
                    backend = connected
                    try RevokedResults.store(&batch, backend: connected, expires: expires)
                }
                if !items.isEmpty {
                    let connected =
                        try backend
                        ?? RedisResultBackend(
                            connection: url.connect(connectTimeout: .seconds(5), commandTimeout: .seconds(10))
                        )
                    backend = connected
                    _ = try connected.storeBatch(items)
                    ThroughputCounters.shared.record(.store, size: items.count)
                }
                if batch.contains(where: { $0.hasChordWork || $0.chordCleanup != nil || !$0.chordSetups.isEmpty }) {
                    let connected =
                        try backend
                        ?? RedisResultBackend(
                            connection: url.connect(connectTimeout: .seconds(5), commandTimeout: .seconds(10))
                        )
                    backend = connected
                    try chords(&batch, starting: starting, backend: connected)
                }
                if failing {
                    failing = false
                    report(nil)
                }
                backoff.reset()
                pending.removeFirst(batch.count)
                forward(
                    batch.indices.map { index in
                        var passed = batch[index]
                        if !starting.contains(index) {
                            passed.result = nil
                            passed.followingResults = []
                        }
                        return passed
                    },
                    items.count
                )
            } catch {
                backend = nil
                failing = true
                report("result backend \(url.redacted): \(error)")
                if stopped && backoff.attempts > 20 { break }
                PlatformThread.sleep(for: backoff.next())
            }
        }
        finished.post()
    }

    /// Chord parts (after the results) and cleanups (after a body was confirmed), see ``ChordStep``: a completed
    /// chord's body goes back with the plan, to be published before the ack; a chord whose claim another worker
    /// holds sends its header task back to the queue, to be counted again once that worker is done or gone.
    private func chords(
        _ batch: inout [Settlement],
        starting: Set<Int>,
        backend: RedisResultBackend
    ) throws(RedisError) {
        let seconds = expires.map { Int($0.components.seconds) } ?? 0
        for index in batch.indices where !batch[index].chordSetups.isEmpty {
            try ChordStep.setUp(batch[index].chordSetups, backend: backend, expires: seconds)
            batch[index].chordSetups = []
        }
        // A plan that started chords is back later with its results; its own chord part is counted then.
        for index in batch.indices where !starting.contains(index) {
            if let claim = batch[index].chordCleanup, !batch[index].hasChordWork {
                if !(try backend.chordCleanup(claim.groupID, token: claim.token, doneExpires: ChordStep.doneExpires)) {
                    report("chord \(claim.groupID): its claim ran out before cleanup; its keys expire")
                }
                batch[index].chordCleanup = nil
            }
            guard batch[index].hasChordWork else { continue }
            let done = try ChordStep.run(&batch[index], backend: backend, resultExpires: expires) { text in
                report(text)
            }
            if !done {
                // What is left of its chord work is counted again when the message comes back.
                batch[index].chordParts = []
                batch[index].chordUnlock = nil
                if batch[index].disposition != .none { batch[index].disposition = .requeue }
            }
        }
    }
}
