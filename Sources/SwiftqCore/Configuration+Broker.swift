extension Configuration {
    /// Where tasks come from. The default, `embedded`, runs a private `redis-server` supervised by `swiftqd`, so a
    /// fresh install works with no broker to set up; production points `url` at a shared Redis or RabbitMQ.
    public struct Broker: Sendable, Equatable {
        /// The URL schemes `url` may use; `embedded` is written alone, without `://`.
        public static let acceptedSchemes = [
            "embedded", "redis", "rediss", "redis+socket", "unix", "sentinel", "amqp", "amqps",
        ]

        /// A Celery/kombu broker URL (`redis://host:6379/0`, `amqp://user:pass@host:5672/vhost`) or `embedded`.
        /// kombu's failover lists are `;`-separated: `amqp://h1//;amqp://h2//` (RabbitMQ hosts tried in turn) and
        /// `sentinel://s1:26379;sentinel://s2:26379` (Redis Sentinels, with ``masterName``).
        public var url: String
        /// The name of the Redis master the sentinels of a `sentinel://` URL monitor (kombu's transport option
        /// `master_name`); required with `sentinel://`, refused with any other URL.
        public var masterName: String?
        /// How long a reserved but unacknowledged message may stay with its consumer before any kombu consumer of
        /// the same broker (Python workers included) may restore it to its queue. It is a broker-wide contract,
        /// not a private timer, so the default is kombu's (1 hour) and every worker on the broker should agree;
        /// swiftq refreshes the deadline of the tasks it is running, so a long task is not delivered twice.
        /// Always positive.
        public var visibilityTimeout: Duration
        /// A file whose first line is the broker password, put into `url` when the configuration is loaded (see
        /// ``Configuration/load(contentsOf:environment:)``), so the configuration file itself holds no secret and
        /// may be world-readable. An absolute path, or `nil`.
        public var passwordFile: String?

        /// AMQP heartbeat interval asked of RabbitMQ; `.zero` turns heartbeats off. Missed heartbeats are how a
        /// silently dead TCP connection is noticed, so the default (60 s, RabbitMQ's own) stays on.
        public var heartbeat: Duration
        /// How long connecting to the broker (TCP, TLS and login) may take before it counts as a failed attempt.
        public var connectTimeout: Duration
        /// TLS settings for `amqps://`.
        public var tls: TLS
        /// `x-max-priority` for the queues the worker declares on RabbitMQ (Celery's `task_queue_max_priority`),
        /// or `nil` for queues without priorities. Must match how the queues were first declared.
        public var queueMaxPriority: Int?
        /// The RabbitMQ queue type of the queues the worker declares (Celery's `task_default_queue_type`).
        public var queueType: QueueType
        /// Whether the RabbitMQ prefetch window may be one channel-wide `basic.qos` (`global`, as Celery sets it on
        /// classic queues) or is always per consumer (what RabbitMQ ≥ 4.3 requires unless `global_qos` is permitted).
        public var globalQoS: GlobalQoS
        /// The RabbitMQ node's `consumer_timeout` (RabbitMQ's default: 30 minutes): a delivery left unacked longer
        /// makes the broker close the channel, taking every unacked delivery on it. Tasks held for an ETA or
        /// countdown are therefore never held longer than a third of it: a task due later is published again (same
        /// id, same ETA, confirmed) and the held copy acked, so the broker's clock starts again. `.zero`: the node
        /// has no timeout (tasks are held until due). Not used on Redis.
        public var consumerTimeout: Duration

        /// `broker.global_qos`.
        public enum GlobalQoS: String, Sendable, Equatable, CaseIterable {
            /// Channel-wide on classic queues, per consumer on quorum queues, and per consumer from the first time
            /// the broker refuses a channel-wide limit.
            case auto
            /// Always per consumer (`false` in the file).
            case never = "false"
        }

        /// RabbitMQ queue types the worker can declare.
        public enum QueueType: String, Sendable, Equatable, CaseIterable {
            /// A classic queue (the default, as in Celery).
            case classic
            /// A replicated quorum queue (`x-queue-type: quorum`).
            case quorum
        }

        /// Certificates for `amqps://`. Peer verification is on unless turned off explicitly.
        public struct TLS: Sendable, Equatable {
            /// PEM file of the certificate authorities that sign the broker's certificate; the system's default
            /// store when `nil`.
            public var caFile: String?
            /// PEM client certificate, for brokers that authenticate clients by certificate.
            public var certFile: String?
            /// PEM private key of ``certFile``.
            public var keyFile: String?
            /// Whether the broker's certificate and host name are verified.
            public var verify: Bool

            public init(caFile: String? = nil, certFile: String? = nil, keyFile: String? = nil, verify: Bool = true) {
                self.caFile = caFile
                self.certFile = certFile
                self.keyFile = keyFile
                self.verify = verify
            }
        }

        public init(
            url: String = "embedded",
            visibilityTimeout: Duration = .seconds(3600),
            heartbeat: Duration = .seconds(60),
            connectTimeout: Duration = .seconds(10),
            tls: TLS = TLS(),
            queueMaxPriority: Int? = nil,
            queueType: QueueType = .classic,
            globalQoS: GlobalQoS = .auto,
            consumerTimeout: Duration = .seconds(1800),
            passwordFile: String? = nil,
            masterName: String? = nil
        ) {
            self.url = url
            self.masterName = masterName
            self.visibilityTimeout = visibilityTimeout
            self.heartbeat = heartbeat
            self.connectTimeout = connectTimeout
            self.tls = tls
            self.queueMaxPriority = queueMaxPriority
            self.queueType = queueType
            self.globalQoS = globalQoS
            self.consumerTimeout = consumerTimeout
            self.passwordFile = passwordFile
        }
    }

    /// Where task results go. Without a URL results are not stored, as in Celery without a result backend:
    /// `AsyncResult.get()` then never returns, but fire-and-forget tasks cost one round trip less.
    public struct ResultBackend: Sendable, Equatable {
        /// The URL schemes `url` may use; `embedded` (the embedded broker's Redis) is written alone.
        public static let acceptedSchemes = ["redis", "rediss", "redis+socket", "unix", "sentinel", "rpc", "embedded"]

        /// A Celery result backend URL (`redis://host:6379/1`, `rpc://`, `embedded`, Celery's
        /// `sentinel://s1:26379;sentinel://s2:26379` with ``masterName``), or `nil` for no results.
        public var url: String?
        /// The Redis master's name for a `sentinel://` URL (Celery's `result_backend_transport_options`
        /// `master_name`); required with `sentinel://`, refused otherwise.
        public var masterName: String?
        /// How long a stored result is kept, as Celery's `result_expires` (default 1 day): results nobody fetches
        /// would otherwise fill the backend. `.zero` means results never expire. Never negative.
        public var expires: Duration
        /// Whether stored results also carry the task's name, args, kwargs, worker, retries and queue, as Celery's
        /// `result_extended`. Off by default, as in Celery: it costs space for every result, and only tools that
        /// inspect results (Flower, `django-celery-results`) read them.
        public var extended: Bool
        /// A file whose first line is the result backend's password, put into `url` when the configuration is
        /// loaded; see ``Broker/passwordFile``.
        public var passwordFile: String?

        public init(
            url: String? = nil,
            expires: Duration = .seconds(86400),
            extended: Bool = false,
            passwordFile: String? = nil,
            masterName: String? = nil
        ) {
            self.url = url
            self.masterName = masterName
            self.expires = expires
            self.extended = extended
            self.passwordFile = passwordFile
        }
    }
}
