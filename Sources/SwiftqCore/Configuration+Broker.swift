extension Configuration {
    /// Where tasks come from. The default, `embedded`, runs a private `redis-server` supervised by `swiftqd`, so a
    /// fresh install works with no broker to set up; production points `url` at a shared Redis or RabbitMQ.
    public struct Broker: Sendable, Equatable {
        /// The URL schemes `url` may use; `embedded` is written alone, without `://`.
        public static let acceptedSchemes = ["embedded", "redis", "rediss", "redis+socket", "unix", "amqp", "amqps"]

        /// A Celery/kombu broker URL (`redis://host:6379/0`, `amqp://user:pass@host:5672/vhost`) or `embedded`.
        public var url: String

        public init(url: String = "embedded") {
            self.url = url
        }
    }

    /// Where task results go. Without a URL results are not stored, as in Celery without a result backend:
    /// `AsyncResult.get()` then never returns, but fire-and-forget tasks cost one round trip less.
    public struct ResultBackend: Sendable, Equatable {
        /// The URL schemes `url` may use; `embedded` (the embedded broker's Redis) is written alone.
        public static let acceptedSchemes = ["redis", "rediss", "redis+socket", "unix", "rpc", "embedded"]

        /// A Celery result backend URL (`redis://host:6379/1`, `rpc://`, `embedded`), or `nil` for no results.
        public var url: String?

        public init(url: String? = nil) {
            self.url = url
        }
    }
}
