#if canImport(Glibc)
import Glibc
#endif

/// Whole-file reads and crash-safe replacement, for small state files (beat's `beat.state`).
public enum FileContents {
    /// The file's bytes, or nil when it does not exist.
    public static func read(_ path: String) throws(SystemError) -> [UInt8]? {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        if descriptor < 0 {
            if errno == ENOENT { return nil }
            throw SystemError("open \(path)", errno: errno)
        }
        defer { close(descriptor) }
        var contents: [UInt8] = []
        while true {
            let chunk = try Descriptors.read(descriptor, maximum: 16 * 1024)
            if chunk.isEmpty { return contents }
            contents += chunk
        }
    }

    /// Replaces `path` with `bytes` so that a crash leaves the old file or the new one, never a torn one: a temporary
    /// file next to it, `fsync`, `rename`, then `fsync` of the directory.
    public static func writeAtomically(_ bytes: [UInt8], to path: String, mode: mode_t = 0o640) throws(SystemError) {
        let temporary = "\(path).tmp.\(getpid())"
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard descriptor >= 0 else { throw SystemError("open \(temporary)", errno: errno) }
        do throws(SystemError) {
            try Descriptors.writeAll(descriptor, bytes)
            guard fsync(descriptor) == 0 else { throw SystemError("fsync \(temporary)", errno: errno) }
        } catch {
            close(descriptor)
            unlink(temporary)
            throw error
        }
        close(descriptor)
        guard rename(temporary, path) == 0 else {
            let failure = SystemError("rename \(temporary) to \(path)", errno: errno)
            unlink(temporary)
            throw failure
        }
        let directory = path.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        let directoryDescriptor = open(directory.isEmpty ? "." : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if directoryDescriptor >= 0 {
            // The rename is durable once the directory is synced; a directory that cannot be synced is still renamed.
            _ = fsync(directoryDescriptor)
            close(directoryDescriptor)
        }
    }
}
