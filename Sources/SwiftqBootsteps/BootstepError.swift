/// Why a blueprint could not be resolved or started.
///
/// Resolution errors (`missingRequirement`, `cycle`, `duplicateStep`) are found once, before anything
/// starts, and name every step involved so the message points at the code to fix.
public struct BootstepError: Error, Equatable, CustomStringConvertible {
    /// The kind of failure.
    public enum Code: Equatable, Sendable {
        /// Two steps share one name.
        case duplicateStep
        /// A step requires a name that no step in the blueprint has.
        case missingRequirement
        /// The requirements form a cycle.
        case cycle
        /// A step's `start` threw; the steps started before it were stopped again.
        case startFailed
    }

    /// The kind of failure.
    public var code: Code
    /// The steps involved, in a meaningful order (the cycle's path, or the failing step).
    public var steps: [String]
    /// A one-line human explanation.
    public var message: String
    /// The error a failing step threw, for `startFailed`.
    public var cause: (any Error)?

    /// Creates an error.
    public init(code: Code, steps: [String], message: String, cause: (any Error)? = nil) {
        self.code = code
        self.steps = steps
        self.message = message
        self.cause = cause
    }

    public var description: String { message }

    public static func == (lhs: BootstepError, rhs: BootstepError) -> Bool {
        lhs.code == rhs.code && lhs.steps == rhs.steps && lhs.message == rhs.message
    }
}
