/// A user as written in the configuration: a name, or a numeric uid.
///
/// Names are kept unresolved because the configuration is pure data (no NSS lookups while parsing); the control
/// socket resolves them when it starts, so a user created after the file was written still works.
public enum UserRef: Sendable, Hashable, CustomStringConvertible {
    /// A numeric uid, written as a decimal integer.
    case id(UInt32)
    /// A user name, to be looked up in the user database at runtime.
    case name(String)

    /// The uid in decimal, or the name, as it would be written in the configuration.
    public var description: String {
        switch self {
        case .id(let id): String(id)
        case .name(let name): name
        }
    }
}
