extension Configuration {
    /// A task implemented by running a program: the way to serve a Celery task name from swiftq without writing
    /// Swift, declared under `tasks` with the task name as the key.
    public struct ExecTask: Sendable, Equatable {
        /// Prefix of the built-in task names (`swiftq.ping`, `swiftq.add`, …); configured tasks may not use it, so
        /// a file can never shadow or be shadowed by a task that ships with swiftqd.
        public static let reservedNamePrefix = "swiftq."

        /// The Celery task name (`reports.render`): the same string as the key under `tasks`. Never empty.
        public var name: String
        /// The program and its arguments, passed as is (no shell, no splitting, no expansion). Never empty; no
        /// element is empty. `argv[0]` is an absolute path or a bare command name looked up in `PATH` when the
        /// program is started, so the file stays valid on a machine where the program is not installed yet.
        public var argv: [String]
        /// How long one run may take before it is killed and the task fails, or `nil` for no limit. Always
        /// positive.
        public var timeout: Duration?
        /// Retries, limits and acknowledgement of this task (the other keys of its entry).
        public var settings: TaskSettings

        public init(name: String, argv: [String], timeout: Duration? = nil, settings: TaskSettings = TaskSettings()) {
            self.name = name
            self.argv = argv
            self.timeout = timeout
            self.settings = settings
        }
    }
}
