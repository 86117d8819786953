extension Configuration {
    /// Section `metrics`: the monitoring listener (`/metrics` in Prometheus's text format, `/healthz`).
    public struct Metrics: Sendable, Equatable {
        /// `host:port` to listen on (an IPv4 address), or nil for no listener (the default).
        public var listen: String?
        /// How often the depth of each consumed queue is sampled for `/metrics` (on a connection of its own);
        /// zero turns sampling off. Only while `listen` is set.
        public var queueDepthInterval: Duration = .seconds(15)

        public init(listen: String? = nil, queueDepthInterval: Duration = .seconds(15)) {
            self.listen = listen
            self.queueDepthInterval = queueDepthInterval
        }

        /// `listen` split into an IPv4 address and a port; nil when it is not `a.b.c.d:port` with a port 1–65535.
        public static func address(_ text: String) -> (host: String, port: UInt16)? {
            guard let colon = text.lastIndex(of: ":") else { return nil }
            let host = String(text[..<colon])
            guard let port = UInt16(text[text.index(after: colon)...]), port > 0 else { return nil }
            let parts = host.split(separator: ".", omittingEmptySubsequences: false)
            guard parts.count == 4, parts.allSatisfy({ UInt8($0) != nil && $0.count <= 3 }) else { return nil }
            return (host, port)
        }
    }

    /// Section `health`: what `/healthz`, `swiftqctl ping` and the systemd watchdog call unhealthy.
    public struct Health: Sendable, Equatable {
        /// How long the broker may stay unreachable before the worker is reported unhealthy.
        public var brokerGrace: Duration = .seconds(30)

        public init(brokerGrace: Duration = .seconds(30)) { self.brokerGrace = brokerGrace }
    }
}

extension ConfigurationSchema {
    static let metrics = ConfigurationSection(
        name: "metrics",
        contents: "metrics settings",
        fields: [
            ConfigurationField(key: "listen") { node, path, decoder, configuration in
                guard !node.isNull else {
                    configuration.metrics.listen = nil
                    return
                }
                guard let text = decoder.text(node, at: path, expected: "an address host:port") else { return }
                if Configuration.Metrics.address(text) == nil {
                    decoder.report(
                        "expected an IPv4 address and port such as 127.0.0.1:9808, or ~ for none",
                        at: node,
                        keyPath: path
                    )
                } else {
                    configuration.metrics.listen = text
                }
            },
            ConfigurationField(key: "queue_depth_interval") { node, path, decoder, configuration in
                if let value = decoder.duration(node, at: path, allowsZero: true) {
                    configuration.metrics.queueDepthInterval = value
                }
            },
        ]
    )

    static let health = ConfigurationSection(
        name: "health",
        contents: "health settings",
        fields: [
            ConfigurationField(key: "broker_grace") { node, path, decoder, configuration in
                if let value = decoder.duration(node, at: path, allowsZero: true) {
                    configuration.health.brokerGrace = value
                }
            }
        ]
    )
}
