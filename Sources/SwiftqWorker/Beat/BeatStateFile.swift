import OrderedCollections
import SwiftqConsumer
import SwiftqCore
import SwiftqPlatform
import SwiftqPool

#if canImport(Glibc)
import Glibc
#endif

/// `beat.state`: the last run of each entry, as JSON, so a restart neither repeats nor forgets runs.
///
/// `{"version": 1, "entries": {"<name>": {"last_run": <seconds since the epoch>, "schedule": "<fingerprint>"}}}`.
/// The fingerprint (``BeatScheduler/fingerprint(_:zone:)``) ties a time to the schedule it was made under: a changed
/// schedule starts afresh. Written atomically: a temporary file next to it, `fsync`, `rename`, then `fsync` of the
/// directory, so a crash leaves the old file or the new one, never a torn one.
enum BeatStateFile {
    /// The recorded runs, and a problem to log when the file exists but cannot be read or is not a state file (the
    /// schedule then starts afresh, as with no file). A missing file is no problem: the first start has none.
    static func load(_ path: String) -> (entries: [String: (at: Double, fingerprint: String)], problem: String?) {
        let root: JSONValue
        do {
            guard let bytes = try FileContents.read(path) else { return ([:], nil) }
            root = try JSONValue(parsing: bytes)
        } catch {
            return ([:], "\(path): \(error)")
        }
        guard let stored = root["entries"]?.objectValue else { return ([:], "\(path): no \"entries\" object") }
        var result: [String: (at: Double, fingerprint: String)] = [:]
        for (name, value) in stored {
            if let at = value["last_run"]?.doubleValue, let fingerprint = value["schedule"]?.stringValue {
                result[name] = (at, fingerprint)
            }
        }
        return (result, nil)
    }

    /// Writes the file atomically; returns a message on failure.
    static func save(_ entries: [String: (at: Double, fingerprint: String)], to path: String) -> String? {
        var object: OrderedDictionary<String, JSONValue> = [:]
        for name in entries.keys.sorted() {
            guard let entry = entries[name] else { continue }
            object[name] = ["last_run": .double(entry.at), "schedule": .string(entry.fingerprint)]
        }
        let root: JSONValue = ["version": 1, "entries": .object(object)]
        do {
            try FileContents.writeAtomically(root.serialized() + [UInt8(ascii: "\n")], to: path)
            return nil
        } catch {
            return "\(error)"
        }
    }
}
