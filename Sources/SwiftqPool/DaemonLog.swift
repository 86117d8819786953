import Logging
import SwiftqCore
import SwiftqPlatform
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Logging for every swiftq process: one line per event on stderr, which journald collects under systemd.
///
/// The level is process-wide and can change at run time (`logging.level` is applied in place on SIGHUP),
/// so handlers read it from one shared place instead of holding a copy. Under journald (`JOURNAL_STREAM`
/// set) each line starts with a `<N>` syslog priority and carries no timestamp (journald adds its own).
public enum DaemonLog {
    /// Stable metadata keys, written once (see STYLE.md): dashboards and tests depend on them.
    public enum Key {
        /// The process id.
        public static let pid = "swiftq.pid"
        /// The process role: supervisor, consumer, pool.
        public static let role = "swiftq.role"
        /// A pool slot number.
        public static let slot = "swiftq.slot"
        /// A task id.
        public static let taskID = "swiftq.task.id"
        /// A task name.
        public static let taskName = "swiftq.task.name"
        /// A bootstep name.
        public static let step = "swiftq.step"
    }

    /// The level's index in `Logger.Level.allCases`: an atomic, because every log call reads it (a lock per
    /// call would be paid by every task, for lines that are mostly not written).
    private static let state = Atomic<Int>(Logger.Level.allCases.firstIndex(of: .info)!)

    /// The level in force.
    public static var level: Logger.Level {
        get { Logger.Level.allCases[state.load(ordering: .relaxed)] }
        set { state.store(Logger.Level.allCases.firstIndex(of: newValue)!, ordering: .relaxed) }
    }

    /// Installs the handler; call once per process, first thing.
    public static func bootstrap(role: String, level: Logger.Level) {
        self.level = level
        let journal = getenv("JOURNAL_STREAM") != nil
        let native = Journal.stderrIsJournal
        LoggingSystem.bootstrap { label in
            var handler = StderrLogHandler(label: label, role: role, journal: journal)
            handler.native = native
            return handler
        }
    }

    /// A logger for `role` with the pid and role in its metadata.
    public static func logger(role: String) -> Logger {
        var logger = Logger(label: "swiftq.\(role)")
        logger[metadataKey: Key.pid] = "\(getpid())"
        logger[metadataKey: Key.role] = "\(role)"
        return logger
    }
}

/// Formats events as `time swiftqd[pid] role level: message key=value …`.
package struct StderrLogHandler: LogHandler {
    package let label: String
    package let role: String
    package let journal: Bool
    /// stderr is systemd's journal stream: entries go over journald's native protocol with their metadata as
    /// fields (`TASK_ID`, `TASK_NAME`, …), stderr only when that fails.
    package var native = false
    package var metadata: Logger.Metadata = [:]
    package var metadataProvider: Logger.MetadataProvider?

    package var logLevel: Logger.Level {
        get { DaemonLog.level }
        // The level is process-wide on purpose; a per-logger level would not follow SIGHUP reloads.
        set {}
    }

    package subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    package func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { $1 } }
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        merged[DaemonLog.Key.pid] = nil
        merged[DaemonLog.Key.role] = nil
        if native && sendNative(event, merged) { return }
        var line = ""
        if journal {
            line += "<\(Self.syslogPriority(event.level))>"
        } else {
            line += Self.timestamp() + " "
        }
        line += "swiftqd[\(getpid())] \(role) \(event.level): \(event.message)"
        if let error = event.error { line += " error=\(Self.quoted("\(error)"))" }
        for key in merged.keys.sorted() {
            line += " \(key)=\(Self.quoted("\(merged[key]!)"))"
        }
        line += "\n"
        let bytes = Array(line.utf8)
        bytes.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = write(2, buffer.baseAddress! + offset, buffer.count - offset)
                if written > 0 {
                    offset += written
                } else if written < 0 && errno == EINTR {
                    continue
                } else {
                    return
                }
            }
        }
    }

    package static func quoted(_ value: String) -> String {
        if !value.isEmpty && !value.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" || $0.isNewline }) {
            return value
        }
        var escaped = "\""
        for character in value {
            switch character {
            case "\"": escaped += "\\\""
            case "\\": escaped += "\\\\"
            case "\n": escaped += "\\n"
            case "\r": escaped += "\\r"
            default: escaped.append(character)
            }
        }
        return escaped + "\""
    }

    /// One journal entry: the text as the stderr line has it, the priority, and each metadata key as a field
    /// (`swiftq.task.id` → `TASK_ID`).
    private func sendNative(_ event: LogEvent, _ metadata: Logger.Metadata) -> Bool {
        var text = "\(role) \(event.level): \(event.message)"
        if let error = event.error { text += " error=\(Self.quoted("\(error)"))" }
        var fields: [(String, String)] = [
            ("PRIORITY", "\(Self.syslogPriority(event.level))"), ("SYSLOG_IDENTIFIER", "swiftqd"),
            ("SWIFTQ_ROLE", role),
        ]
        for key in metadata.keys.sorted() {
            let value = "\(metadata[key]!)"
            text += " \(key)=\(Self.quoted(value))"
            let name = key.hasPrefix("swiftq.") ? String(key.dropFirst("swiftq.".count)) : key
            fields.append((Journal.fieldName(name), value))
        }
        fields.insert(("MESSAGE", text), at: 0)
        return Journal.send(fields)
    }

    package static func syslogPriority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    package static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var seconds = now.tv_sec
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        let millis = now.tv_nsec / 1_000_000
        let millisText = millis < 10 ? "00\(millis)" : millis < 100 ? "0\(millis)" : "\(millis)"
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T\(two(parts.tm_hour)):"
            + "\(two(parts.tm_min)):\(two(parts.tm_sec)).\(millisText)Z"
    }
}

extension Logger.Level {
    /// Maps the configuration's level (Core does not import swift-log).
    package init(_ level: LogLevel) {
        switch level {
        case .trace: self = .trace
        case .debug: self = .debug
        case .info: self = .info
        case .notice: self = .notice
        case .warning: self = .warning
        case .error: self = .error
        case .critical: self = .critical
        }
    }
}
