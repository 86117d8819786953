extension Configuration {
    /// Section `events`: Celery's monitoring events (what Flower and `celery events` read), off by default as in
    /// Celery (`worker_send_task_events`).
    public struct Events: Sendable, Equatable {
        /// Allowed `heartbeat_interval`: Flower marks a worker offline after two missed intervals.
        public static let heartbeatIntervalRange: ClosedRange<Duration> = .milliseconds(100) ... .seconds(3600)

        /// Whether the worker publishes `task-*` events (the `enable_events` / `disable_events` control commands
        /// switch it at run time): Celery's `worker_send_task_events`.
        public var enabled = false
        /// Whether the worker publishes `worker-online`, `worker-heartbeat` and `worker-offline`. Celery's Heart
        /// bootstep sends them whether or not task events are on, unless the worker runs with `--without-heartbeat`
        /// (this set to false).
        public var heartbeat = true
        /// How often `worker-heartbeat` is sent (Celery's `--heartbeat-interval`, 2 s by default).
        public var heartbeatInterval: Duration = .seconds(2)

        public init(enabled: Bool = false, heartbeat: Bool = true, heartbeatInterval: Duration = .seconds(2)) {
            self.enabled = enabled
            self.heartbeat = heartbeat
            self.heartbeatInterval = heartbeatInterval
        }
    }
}

extension ConfigurationSchema {
    static let events = ConfigurationSection(
        name: "events",
        contents: "event settings",
        fields: [
            ConfigurationField(key: "enabled") { node, path, decoder, configuration in
                if let value = decoder.boolean(node, at: path) { configuration.events.enabled = value }
            },
            ConfigurationField(key: "heartbeat") { node, path, decoder, configuration in
                if let value = decoder.boolean(node, at: path) { configuration.events.heartbeat = value }
            },
            ConfigurationField(key: "heartbeat_interval") { node, path, decoder, configuration in
                if let value = decoder.duration(node, at: path, allowsZero: false) {
                    if Configuration.Events.heartbeatIntervalRange.contains(value) {
                        configuration.events.heartbeatInterval = value
                    } else {
                        decoder.report("expected a duration from 100ms to 1h", at: node, keyPath: path)
                    }
                }
            },
        ]
    )
}
