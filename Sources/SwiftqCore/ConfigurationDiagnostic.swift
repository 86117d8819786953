/// One problem found in a configuration file, located precisely enough for an editor or a human to jump to it.
///
/// Its `description` follows the compiler convention `file:line:column: key.path: message`, which editors, `grep`
/// and journal readers already understand, so a rejected reload (SIGHUP) can be fixed without guessing.
public struct ConfigurationDiagnostic: Sendable, Equatable, CustomStringConvertible {
    /// The file as the caller named it (not resolved), so messages match what the operator typed.
    public var file: String
    /// 1-based line of the offending node, or `nil` when the problem is not tied to a position (unreadable file).
    public var line: Int?
    /// 1-based column (counted in Unicode scalars, as libyaml does), or `nil` when unknown.
    public var column: Int?
    /// Dotted path of the offending key, with `[index]` for list items (`worker.queues[2]`); `nil` for problems
    /// that concern the file as a whole (syntax errors, a top level that is not a mapping).
    public var keyPath: String?
    /// What was expected and what was found, without the location prefix.
    public var message: String

    public init(file: String, line: Int? = nil, column: Int? = nil, keyPath: String? = nil, message: String) {
        self.file = file
        self.line = line
        self.column = column
        self.keyPath = keyPath
        self.message = message
    }

    /// `file:line:column: key.path: message`; position and key path are left out when unknown.
    public var description: String {
        var location = file
        if let line {
            location += ":\(line)"
            if let column {
                location += ":\(column)"
            }
        }
        if let keyPath {
            return "\(location): \(keyPath): \(message)"
        }
        return "\(location): \(message)"
    }
}
