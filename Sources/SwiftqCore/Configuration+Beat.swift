import OrderedCollections

extension Configuration {
    /// Section `beat`: the embedded periodic-task scheduler (Celery beat's job), off by default.
    public struct Beat: Sendable, Equatable {
        /// Whether `swiftqd` runs the scheduler as a supervised child (`swiftqd --beat` turns it on too).
        public var enabled = false
        /// The IANA time zone of cron entries without their own `timezone`.
        public var timezone = "UTC"
        /// Where last-run times are kept across restarts (written atomically).
        public var state = "/var/lib/swiftq/beat-state.json"
        /// How long the cluster-wide lease lasts without renewal: a dead holder is replaced within this time.
        public var lockTimeout: Duration = .seconds(10)
        /// The broker key (Redis) or queue name (RabbitMQ) the lease is kept under.
        public var lockName = "swiftq.beat.lock"
        /// The entries, by name, in file order.
        public var schedule: OrderedDictionary<String, BeatEntry> = [:]

        public init() {}
    }

    /// One periodic task: what to send, where, and when.
    public struct BeatEntry: Sendable, Equatable {
        /// When an entry fires.
        public enum Schedule: Sendable, Equatable, CustomStringConvertible {
            /// Every so often (`every: 30s`), counted from the last run.
            case interval(Duration)
            /// At the times of a crontab expression, in the entry's time zone.
            case cron(CronExpression)

            public var description: String {
                switch self {
                case .interval(let every): "every \(Duration.formatted(every))"
                case .cron(let expression): "cron \(expression.source)"
                }
            }
        }

        /// What to do about runs missed while no scheduler was running.
        public enum CatchUp: String, Sendable, Equatable, CaseIterable {
            /// Skip them; run next at the next scheduled time.
            case none
            /// Run once at startup (however many were missed), then follow the schedule.
            case once
        }

        public var name: String
        public var task = ""
        public var args: [JSONValue] = []
        public var kwargs: OrderedDictionary<String, JSONValue> = [:]
        /// The queue to publish to (`celery` by default, as Celery's default queue).
        public var queue = "celery"
        /// The routing key, when it differs from the queue (AMQP).
        public var routingKey: String?
        public var priority: Int?
        /// How long after its scheduled time a run is still worth doing (the message's `expires`).
        public var expires: Duration?
        /// Extra message headers.
        public var headers: OrderedDictionary<String, JSONValue> = [:]
        public var schedule: Schedule = .interval(.seconds(60))
        /// The entry's own time zone, or `nil` for `beat.timezone`.
        public var timezone: String?
        public var catchUp: CatchUp = .none

        public init(name: String) {
            self.name = name
        }
    }
}

extension Duration {
    /// `30s`, `1.5s`, `2m`, as people write durations in the file.
    static func formatted(_ duration: Duration) -> String {
        let milliseconds = duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
        if milliseconds % 3_600_000 == 0 { return "\(milliseconds / 3_600_000)h" }
        if milliseconds % 60000 == 0 { return "\(milliseconds / 60000)m" }
        if milliseconds % 1000 == 0 { return "\(milliseconds / 1000)s" }
        return "\(milliseconds)ms"
    }
}
