import CSwiftqPlatform

#if canImport(Glibc)
import Glibc
#endif

/// journald's native protocol: one datagram of fields to `/run/systemd/journal/socket`, so that structured log
/// lines keep their fields (`journalctl -u swiftqd TASK_ID=…`). Written here rather than linking libsystemd's
/// `sd_journal_send`, for the reasons in ``SystemdNotifier`` (libsystemd and the six libraries it maps into every
/// process, no static build): the protocol is a datagram of `KEY=value` lines.
public enum Journal {
    /// The socket (`SWIFTQ_JOURNAL_SOCKET` overrides it, for tests).
    public static var socketPath: String {
        getenv("SWIFTQ_JOURNAL_SOCKET").map { String(cString: $0) } ?? "/run/systemd/journal/socket"
    }

    /// Whether stderr is the journal stream systemd connected (`JOURNAL_STREAM` names its device and inode, the
    /// check systemd documents): only then do log lines go to the journal natively.
    public static var stderrIsJournal: Bool {
        guard let value = getenv("JOURNAL_STREAM") else { return false }
        let parts = String(cString: value).split(separator: ":")
        guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]) else { return false }
        var info = stat()
        guard fstat(2, &info) == 0 else { return false }
        return UInt64(info.st_dev) == device && UInt64(info.st_ino) == inode
    }

    /// A field name as journald accepts it: upper-case letters, digits and `_`, not starting with `_` or a digit.
    public static func fieldName(_ key: String) -> String {
        var name = String(key.uppercased().map { $0.isASCII && ($0.isLetter || $0.isNumber) ? $0 : "_" })
        while name.hasPrefix("_") { name.removeFirst() }
        if let first = name.first, first.isNumber { name = "F" + name }
        return name.isEmpty ? "FIELD" : String(name.prefix(64))
    }

    /// The datagram for `fields`: `KEY=value\n`, or for a value with a newline `KEY\n`, its length as 64-bit
    /// little-endian, the value and `\n`.
    public static func encode(_ fields: [(String, String)]) -> [UInt8] {
        var bytes: [UInt8] = []
        for (key, value) in fields {
            let name = Array(fieldName(key).utf8)
            let data = Array(value.utf8)
            if data.contains(0x0A) {
                bytes += name + [0x0A]
                var length = UInt64(data.count).littleEndian
                withUnsafeBytes(of: &length) { bytes += $0 }
                bytes += data + [0x0A]
            } else {
                bytes += name + [0x3D] + data + [0x0A]
            }
        }
        return bytes
    }

    /// Sends one entry; false when it could not be sent (the caller writes to stderr instead).
    public static func send(_ fields: [(String, String)]) -> Bool {
        let datagram = encode(fields)
        return datagram.withUnsafeBytes { bytes in
            CSwiftqPlatform_notifyServiceManager(socketPath, bytes.baseAddress, bytes.count) == bytes.count
        }
    }
}
