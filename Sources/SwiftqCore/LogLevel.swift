/// Log verbosity, with exactly swift-log's levels so the worker can map it one to one without `SwiftqCore`
/// depending on swift-log.
///
/// Cases are ordered from most to least verbose; `Comparable` follows that order (`.debug < .info`).
public enum LogLevel: String, Sendable, Hashable, CaseIterable, Comparable, CustomStringConvertible {
    case trace
    case debug
    case info
    case notice
    case warning
    case error
    case critical

    /// The spelling used in the configuration file.
    public var description: String { rawValue }

    public static func < (lhs: LogLevel, rhs: LogLevel) -> Bool {
        guard let left = allCases.firstIndex(of: lhs), let right = allCases.firstIndex(of: rhs) else {
            return false
        }
        return left < right
    }
}
