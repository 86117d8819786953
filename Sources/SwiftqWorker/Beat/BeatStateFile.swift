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
    static func load(_ path: String) -> [String: (at: Double, fingerprint: String)] {
        guard case .success(let bytes) = readFile(path), let root = try? JSONValue(parsing: bytes) else { return [:] }
        var result: [String: (at: Double, fingerprint: String)] = [:]
        for (name, value) in root["entries"]?.objectValue ?? [:] {
            if let at = value["last_run"]?.doubleValue, let fingerprint = value["schedule"]?.stringValue {
                result[name] = (at, fingerprint)
            }
        }
        return result
    }

    /// Writes the file; returns a message on failure.
    static func save(_ entries: [String: (at: Double, fingerprint: String)], to path: String) -> String? {
        var object: OrderedDictionary<String, JSONValue> = [:]
        for name in entries.keys.sorted() {
            guard let entry = entries[name] else { continue }
            object[name] = ["last_run": .double(entry.at), "schedule": .string(entry.fingerprint)]
        }
        let root: JSONValue = ["version": 1, "entries": .object(object)]
        let bytes = root.serialized() + [UInt8(ascii: "\n")]
        let temporary = "\(path).tmp.\(getpid())"
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o640)
        guard descriptor >= 0 else { return "\(temporary): \(String(cString: strerror(errno)))" }
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
            if written < 0 {
                if errno == EINTR { continue }
                let message = String(cString: strerror(errno))
                close(descriptor)
                unlink(temporary)
                return "\(temporary): \(message)"
            }
            offset += written
        }
        let synced = fsync(descriptor) == 0
        close(descriptor)
        guard synced, rename(temporary, path) == 0 else {
            let message = String(cString: strerror(errno))
            unlink(temporary)
            return "\(path): \(message)"
        }
        let directory = path.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        let directoryDescriptor = open(directory.isEmpty ? "/" : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if directoryDescriptor >= 0 {
            fsync(directoryDescriptor)
            close(directoryDescriptor)
        }
        return nil
    }

    private static func readFile(_ path: String) -> Result<[UInt8], SystemError> {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return .failure(SystemError("open", errno: errno)) }
        defer { close(descriptor) }
        var contents: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count > 0 {
                contents += chunk[0..<count]
            } else if count == 0 {
                return .success(contents)
            } else if errno != EINTR {
                return .failure(SystemError("read", errno: errno))
            }
        }
    }
}
