import OrderedCollections
import SwiftqConsumer
import SwiftqControl
import SwiftqCore
import SwiftqPlatform
import SwiftqPool

#if canImport(Glibc)
import Glibc
#endif

/// The supervisor's side of embedded beat: the state it keeps about its beat child.
///
/// Owned by the supervisor's loop thread, like the rest of the supervisor (one stored property in `Supervisor`).
final class BeatSupervision {
    let child = ManagedChild(role: .beat)
    var channel: FramedChannel?
    /// The child's last `beat_state` report (``BeatProcess/info``).
    var info: JSONValue?
    var pendingRuns: [Int64: (id: JSONValue, responder: ControlResponder)] = [:]
    var nextRequest: Int64 = 1
}

extension Supervisor {
    /// Whether beat runs in this daemon: `beat.enabled`, or `swiftqd --beat` (kept across reloads in the environment).
    var isBeatEnabled: Bool {
        configuration.beat.enabled || getenv(Self.beatEnvironmentVariable) != nil
    }

    static let beatEnvironmentVariable = "SWIFTQ_BEAT"

    func startBeat() throws {
        try spawnBeat()
    }

    func stopBeat() {
        let child = beat.child
        if child.isAlive {
            ChildProcess.signal(child.pid, SIGTERM)
            if ChildProcess.wait(pid: child.pid, timeout: .seconds(3)) == nil {
                ChildProcess.signal(child.pid, SIGKILL)
            }
            child.pid = 0
        }
        child.state = .stopped
        beat.channel?.close()
        beat.channel = nil
    }

    /// Re-executes this binary as `_beat` with its channel on fd 3 and the lifeline on fd 4, then sends it the
    /// configuration.
    func spawnBeat() throws(SystemError) {
        guard let lifeline else { return }
        let (ours, theirs) = try Descriptors.socketPair()
        defer { Descriptors.close(theirs) }
        let pid: Int32
        do {
            pid = try ChildProcess.spawn(
                path: executable,
                arguments: [executable, InternalRole.beat],
                environment: childEnvironment,
                descriptors: [theirs, lifeline.read]
            )
        } catch {
            Descriptors.close(ours)
            throw error
        }
        let child = beat.child
        child.pid = pid
        child.state = .running
        child.startedAt = .now
        let channel = FramedChannel(descriptor: ours, loop: loop)
        channel.onFrame = { [unowned self] frame in handleBeat(frame) }
        channel.onClose = { [unowned self] _ in beat.channel = nil }
        beat.channel = channel
        channel.send(
            ChannelMessage.make(
                BeatMessage.configure,
                ["yaml": .string(configurationText), "file": .string(configurationPath)]
            )
        )
        logger.debug("spawned beat (pid \(pid))")
    }

    func handleBeat(_ frame: ReceivedFrame) {
        frame.descriptors.forEach(Descriptors.close)
        let message = frame.message
        switch ChannelMessage.type(of: message) {
        case BeatMessage.state:
            beat.info = message["beat"]
        case BeatMessage.runResult:
            guard let request = message["request"]?.intValue,
                let (id, responder) = beat.pendingRuns.removeValue(forKey: request)
            else { return }
            if let error = message["error"]?.stringValue {
                responder.reply(.failure(id: id, ControlError(.commandFailed, error, id: id)))
            } else {
                responder.reply(.success(id: id, .object(["published": true, "entry": message["entry"] ?? .null])))
            }
        default:
            logger.warning("ignoring a beat message of unknown type: \(message["type"] ?? .null)")
        }
    }

    /// The beat child exited: respawn it with the restart policy's backoff unless the supervisor is stopping.
    func beatExited(status: ExitStatus) {
        let child = beat.child
        let uptime = child.startedAt.duration(to: .now)
        let pid = child.pid
        child.pid = 0
        child.lastExit = status
        child.lastExitWallClock = wallClockSeconds()
        beat.channel?.close()
        beat.channel = nil
        beat.info = nil
        for (id, responder) in beat.pendingRuns.values {
            responder.reply(.failure(id: id, ControlError(.commandFailed, "beat exited", id: id)))
        }
        beat.pendingRuns = [:]
        if case .stopping = state {
            child.state = .stopped
            return
        }
        logger.error("beat died unexpectedly", metadata: ["pid": "\(pid)", "status": "\(status)"])
        let delay = policy.recordDeath(&child.history, uptime: uptime, at: .now)
        child.restarts += 1
        child.state = .backoff
        child.respawnTimer = loop.schedule(after: delay) { [unowned self] in
            child.respawnTimer = nil
            guard child.state == .backoff else { return }
            if case .stopping = state { return }
            do {
                try spawnBeat()
                logger.info("respawned beat (pid \(child.pid)); restarts: \(child.restarts)")
            } catch {
                logger.error("cannot respawn beat: \(error)")
            }
        }
    }

    /// After an accepted reload: the beat child applies the new schedule in place.
    func reloadBeat() {
        beat.channel?.send(
            ChannelMessage.make(
                BeatMessage.configure,
                ["yaml": .string(configurationText), "file": .string(configurationPath)]
            )
        )
    }

    /// `beat`: the schedule and the lease; `beat` with `{"run": "<entry>"}` publishes one run now.
    func handleBeatControl(_ request: ControlRequest, reply responder: ControlResponder) {
        let id = request.id
        guard let channel = beat.channel, beat.child.isAlive else {
            let why = isBeatEnabled ? "beat is not running (see swiftqctl stats)" : "beat is not enabled (beat.enabled)"
            responder.reply(.failure(id: id, ControlError(.commandFailed, why, id: id)))
            return
        }
        if let entry = request.arguments["run"]?.stringValue {
            let number = beat.nextRequest
            beat.nextRequest += 1
            beat.pendingRuns[number] = (id, responder)
            channel.send(ChannelMessage.make(BeatMessage.runNow, ["request": .int(number), "entry": .string(entry)]))
            loop.schedule(after: .seconds(5)) { [unowned self] in
                if let late = beat.pendingRuns.removeValue(forKey: number) {
                    late.responder.reply(
                        .failure(id: id, ControlError(.commandFailed, "beat did not answer within 5s", id: id))
                    )
                }
            }
            return
        }
        responder.reply(.success(id: id, beat.info ?? .object(["starting": true])))
    }

    /// For `stats`: whether this node holds the lease and the next due entry.
    var beatStats: JSONValue {
        guard isBeatEnabled else { return .null }
        var object: OrderedDictionary<String, JSONValue> = [
            "pid": beat.child.isAlive ? .int(Int64(beat.child.pid)) : .null,
            "state": .string(beat.child.state.rawValue),
            "restarts": .int(Int64(beat.child.restarts)),
        ]
        object["holder"] = beat.info?["holder"] ?? .null
        object["lock_holder"] = beat.info?["lock_holder"] ?? .null
        object["next_due"] = beat.info?["next_due"] ?? .null
        object["published"] = beat.info?["published"] ?? .null
        object["error"] = beat.info?["error"] ?? .null
        return .object(object)
    }

    /// For the systemd status line: `beat leader, next nightly in 42s` or `beat standby`.
    var beatStatusFragment: String? {
        guard isBeatEnabled else { return nil }
        guard let info = beat.info else { return "beat \(beat.child.isAlive ? "starting" : "down")" }
        var text = info["holder"]?.boolValue == true ? "beat leader" : "beat standby"
        if let next = info["next_due"], let entry = next["entry"]?.stringValue, let at = next["at"]?.doubleValue {
            text += ", next \(entry) in \(max(0, Int((at - wallClockSeconds()).rounded(.up))))s"
        }
        return text
    }
}
