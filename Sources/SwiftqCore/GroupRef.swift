/// A group as written in the configuration: a name, or a numeric gid.
///
/// Names are kept unresolved because the configuration is pure data (no NSS lookups while parsing); the control
/// socket resolves them when it starts, so a group created after the file was written still works.
public enum GroupRef: Sendable, Hashable, CustomStringConvertible {
    /// A numeric gid, written as a decimal integer.
    case id(UInt32)
    /// A group name, to be looked up in the group database at runtime.
    case name(String)

    /// The gid in decimal, or the name, as it would be written in the configuration.
    public var description: String {
        switch self {
        case .id(let id): String(id)
        case .name(let name): name
        }
    }
}
