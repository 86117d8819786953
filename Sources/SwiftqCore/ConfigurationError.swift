/// The reason a configuration was rejected: every problem found in one pass, not just the first.
///
/// Reporting all diagnostics at once spares the operator an edit–reload–fail loop per mistake; the daemon logs
/// `description` as is (one diagnostic per line) when startup or a reload is refused.
public struct ConfigurationError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The problems, in document order. Never empty when thrown by `Configuration.parse` or `load`.
    public var diagnostics: [ConfigurationDiagnostic]

    public init(diagnostics: [ConfigurationDiagnostic]) {
        self.diagnostics = diagnostics
    }

    /// One diagnostic per line, in document order.
    public var description: String {
        diagnostics.map(\.description).joined(separator: "\n")
    }
}
