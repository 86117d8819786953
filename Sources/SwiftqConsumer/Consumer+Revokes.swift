import Logging
import OrderedCollections
import SwiftqCore
import SwiftqPlatform

/// Revokes that outlive the process and reach workers started later:
///
/// - `worker.state_db` (Celery's `--statedb`, in swiftq's own JSON format): every revoke with its time, written
///   atomically after each burst of changes and read back at startup.
/// - The broker's revoke list (Redis: the sorted set ``RedisTransport/revokedKey``, entries older than
///   `worker.revokes_expire` trimmed): written with each revoke, read at startup by every swiftqd.
/// - Celery's mingle: `hello` answered for other nodes (Python workers included) and sent at startup.
package extension Consumer {
    /// State file format version.
    static let stateFileVersion: Int64 = 1

    /// The `[id, time]` pairs of a state file's `revoked` list; nil when it has none.
    static func stateFileRevokes(_ root: JSONValue) -> [(id: String, at: Double)]? {
        guard let entries = root["revoked"]?.arrayValue else { return nil }
        return entries.compactMap { entry -> (id: String, at: Double)? in
            guard let pair = entry.arrayValue, pair.count == 2, let id = pair[0].stringValue,
                let at = pair[1].doubleValue
            else { return nil }
            return (id, at)
        }
    }

    /// The revokes known while the task path does not exist yet (the consumer has not connected): the unexpired
    /// ones of `worker.state_db` and those received meanwhile (held until it starts), which `inspect revoked` lists,
    /// as the machine will once it has them.
    var revokesBeforeStart: [String] {
        var ids = OrderedSet<String>()
        if let path = configuration.worker.stateDB, let bytes = try? FileContents.read(path),
            let root = try? JSONValue(parsing: bytes), let records = Self.stateFileRevokes(root)
        {
            let oldest = CeleryTimestamp.now.secondsSince1970 - configuration.worker.revokesExpire.seconds
            for record in records where record.at >= oldest { ids.append(record.id) }
        }
        for effect in heldControlEffects {
            switch effect {
            case .revoke(let revoked, _, _), .mergeRevoked(let revoked): ids.append(contentsOf: revoked)
            default: continue
            }
        }
        return Array(ids)
    }

    /// Reads `worker.state_db` into the revoked set (before the transport starts). A broken file is logged and set
    /// aside, never fatal: the broker's list and mingle still bring the cluster's revokes.
    func loadRevokes() {
        guard let path = configuration.worker.stateDB, let core else { return }
        let root: JSONValue
        do {
            guard let bytes = try FileContents.read(path) else { return }
            root = try JSONValue(parsing: bytes)
        } catch {
            logger.error("worker.state_db \(path) cannot be read (\(error)); starting without its revokes")
            return
        }
        guard let records = Self.stateFileRevokes(root) else {
            logger.error("worker.state_db \(path) is not a swiftq state file (no \"revoked\" list); ignoring it")
            return
        }
        if let clock = root["clock"]?.intValue { controlClock = max(controlClock, clock) }
        core.mergeRevoked(records)
        logger.info("loaded \(core.machine.revoked.count) revoke(s) from \(path)")
    }

    /// Revokes new to this worker: kept in the broker's list (with their expiry) and saved.
    func revokesChanged(_ ids: [String]) {
        let now = CeleryTimestamp.now.secondsSince1970
        transport?.settle(
            Settlement(
                disposition: .none,
                revokes: ids.map { RevokeRecord(id: $0, at: now) },
                revokeExpiry: configuration.worker.revokesExpire.seconds
            )
        )
        saveRevokes()
    }

    /// Schedules one atomic write of `worker.state_db` for the changes of this moment.
    func saveRevokes() {
        guard configuration.worker.stateDB != nil, !revokeSavePending else { return }
        revokeSavePending = true
        loop.schedule(after: .milliseconds(50)) { [unowned self] in
            revokeSavePending = false
            writeStateFile()
        }
    }

    /// Writes `{"version": 1, "node": …, "clock": n, "revoked": [[id, at], …]}` (oldest first) atomically.
    func writeStateFile() {
        guard let path = configuration.worker.stateDB, let core else { return }
        core.purgeRevoked()
        let revoked = core.machine.revoked.entries.map { JSONValue.array([.string($0.key), .double($0.value)]) }
        let root: JSONValue = [
            "version": .int(Self.stateFileVersion), "node": .string(nodeName), "clock": .int(controlClock),
            "revoked": .array(revoked),
        ]
        do {
            try FileContents.writeAtomically(root.serialized() + [UInt8(ascii: "\n")], to: path, mode: 0o600)
        } catch {
            logger.error("cannot write worker.state_db \(path): \(error)")
        }
    }

    /// Revokes the transport found at startup (the broker's list, mingle replies).
    func mergeFoundRevokes(_ records: [RevokeRecord], source: String) {
        guard let core else { return }
        let before = core.machine.revoked.count
        core.mergeRevoked(records.map { ($0.id, $0.at) })
        let added = core.machine.revoked.count - before
        logger.info("revokes from \(source): \(records.count) received, \(added) new")
        if added > 0 { saveRevokes() }
    }
}
