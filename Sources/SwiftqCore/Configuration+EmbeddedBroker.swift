extension Configuration {
    /// The embedded dev broker: with `broker.url: embedded`, the supervisor runs a private `redis-server` on a
    /// unix socket next to the control socket, supervised like any other child, so a fresh machine runs
    /// swiftqd with nothing to set up beyond the `redis-server` package.
    ///
    /// It is for development and single-host use: it listens on no TCP port, and it keeps no data across
    /// restarts (no RDB, no AOF), so queued tasks are lost when it stops. Point `broker.url` at a real Redis or
    /// RabbitMQ for production.
    public enum EmbeddedBroker {
        /// Whether the configuration asks for the embedded broker (as broker or as result backend).
        public static func isUsed(by configuration: Configuration) -> Bool {
            configuration.broker.url == "embedded" || configuration.resultBackend.url == "embedded"
        }

        /// The broker's unix socket: in the runtime directory, next to the control socket.
        public static func socketPath(for configuration: Configuration) -> String {
            let control = configuration.control.socket
            let directory = control.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(
                separator: "/"
            )
            return (directory.isEmpty ? "." : directory) + "/swiftq-broker.sock"
        }

        /// The URL the consumer uses for `embedded`: database 0 for messages, 1 for results.
        public static func url(for configuration: Configuration, database: Int) -> String {
            "redis+socket://\(socketPath(for: configuration))?db=\(database)"
        }

        /// The `redis-server` command line.
        public static func arguments(for configuration: Configuration) -> [String] {
            let socket = socketPath(for: configuration)
            let directory = String(socket.dropLast("/swiftq-broker.sock".count))
            return [
                "redis-server", "--port", "0", "--unixsocket", socket, "--unixsocketperm", "700", "--dir",
                directory.isEmpty ? "." : directory, "--save", "", "--appendonly", "no", "--daemonize", "no",
                "--loglevel", "warning",
            ]
        }
    }
}
