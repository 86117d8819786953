/// The product version, shown by `--version`, `stats` and the startup log line.
public enum SwiftqVersion {
    /// The version string.
    public static let current = "0.1.0"
}
