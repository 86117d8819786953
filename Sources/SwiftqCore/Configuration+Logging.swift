extension Configuration {
    /// Logging settings. Changing `level` takes effect on reload (SIGHUP) without a restart.
    public struct Logging: Sendable, Equatable {
        /// The least severe level that is logged.
        public var level: LogLevel

        public init(level: LogLevel = .info) {
            self.level = level
        }
    }
}
