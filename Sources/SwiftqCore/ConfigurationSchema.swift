import Yams

/// One key of a section: its YAML spelling and how its value node is read into the configuration.
struct ConfigurationField: Sendable {
    /// Reads `value` (found at `keyPath`) into the configuration, reporting problems to the decoder.
    typealias Decode =
        @Sendable (
            _ value: Node, _ keyPath: String, _ decoder: inout ConfigurationDecoder,
            _ configuration: inout Configuration
        ) -> Void

    let key: String
    let decode: Decode
}

/// One top-level section: its YAML spelling, how messages call its contents, and its keys in documentation order.
struct ConfigurationSection: Sendable {
    let name: String
    let contents: String
    let fields: [ConfigurationField]

    var keys: [String] { fields.map(\.key) }
}

/// The single source of truth for which keys exist and how each is read: the decoder walks it, and
/// `Configuration.knownKeyPaths` (used by documentation coverage tests) is derived from it, so the two cannot drift.
enum ConfigurationSchema {
    static let sections: [ConfigurationSection] = [broker, resultBackend, worker, control, logging]

    static func section(named name: String) -> ConfigurationSection? {
        sections.first { $0.name == name }
    }

    static let broker = ConfigurationSection(
        name: "broker",
        contents: "broker settings",
        fields: [
            ConfigurationField(key: "url") { node, path, decoder, configuration in
                if let url = decoder.url(node, at: path, schemes: Configuration.Broker.acceptedSchemes) {
                    configuration.broker.url = url
                }
            }
        ]
    )

    static let resultBackend = ConfigurationSection(
        name: "result_backend",
        contents: "result backend settings",
        fields: [
            ConfigurationField(key: "url") { node, path, decoder, configuration in
                // null (or an empty value) explicitly means "store no results", the default.
                guard !node.isNull else {
                    configuration.resultBackend.url = nil
                    return
                }
                if let url = decoder.url(node, at: path, schemes: Configuration.ResultBackend.acceptedSchemes) {
                    configuration.resultBackend.url = url
                }
            }
        ]
    )

    static let worker = ConfigurationSection(
        name: "worker",
        contents: "worker settings",
        fields: [
            ConfigurationField(key: "hostname") { node, path, decoder, configuration in
                if let hostname = decoder.nodeName(node, at: path) {
                    configuration.worker.hostname = hostname
                }
            },
            ConfigurationField(key: "queues") { node, path, decoder, configuration in
                if let queues = decoder.queues(node, at: path) {
                    configuration.worker.queues = queues
                }
            },
            ConfigurationField(key: "concurrency") { node, path, decoder, configuration in
                let value = decoder.integer(
                    node,
                    at: path,
                    in: Configuration.Worker.concurrencyRange,
                    expected: "a positive integer"
                )
                if let value {
                    configuration.worker.concurrency = value
                }
            },
            ConfigurationField(key: "prefetch_multiplier") { node, path, decoder, configuration in
                let value = decoder.integer(
                    node,
                    at: path,
                    in: Configuration.Worker.prefetchMultiplierRange,
                    expected: "a non-negative integer (0 = unlimited)"
                )
                if let value {
                    configuration.worker.prefetchMultiplier = value
                }
            },
            ConfigurationField(key: "shutdown_timeout") { node, path, decoder, configuration in
                if let value = decoder.duration(node, at: path, allowsZero: true) {
                    configuration.worker.shutdownTimeout = value
                }
            },
            ConfigurationField(key: "restart_backoff_max") { node, path, decoder, configuration in
                if let value = decoder.duration(node, at: path, allowsZero: false) {
                    configuration.worker.restartBackoffMax = value
                }
            },
        ]
    )

    static let control = ConfigurationSection(
        name: "control",
        contents: "control socket settings",
        fields: [
            ConfigurationField(key: "socket") { node, path, decoder, configuration in
                if let socket = decoder.socketPath(node, at: path) {
                    configuration.control.socket = socket
                }
            },
            ConfigurationField(key: "mode") { node, path, decoder, configuration in
                if let mode = decoder.fileMode(node, at: path) {
                    configuration.control.mode = mode
                }
            },
            ConfigurationField(key: "group") { node, path, decoder, configuration in
                guard !node.isNull else {
                    configuration.control.group = nil
                    return
                }
                if let id = decoder.principal(node, at: path, kind: .group) {
                    configuration.control.group = GroupRef(id)
                }
            },
            ConfigurationField(key: "allow_uids") { node, path, decoder, configuration in
                if let users = decoder.principals(node, at: path, kind: .user) {
                    configuration.control.allowUIDs = users.map(UserRef.init)
                }
            },
            ConfigurationField(key: "allow_gids") { node, path, decoder, configuration in
                if let groups = decoder.principals(node, at: path, kind: .group) {
                    configuration.control.allowGIDs = groups.map(GroupRef.init)
                }
            },
            ConfigurationField(key: "max_request_bytes") { node, path, decoder, configuration in
                let range = Configuration.Control.maxRequestBytesRange
                let value = decoder.integer(node, at: path, in: range, expected: "an integer number of bytes")
                if let value {
                    configuration.control.maxRequestBytes = value
                }
            },
        ]
    )

    static let logging = ConfigurationSection(
        name: "logging",
        contents: "logging settings",
        fields: [
            ConfigurationField(key: "level") { node, path, decoder, configuration in
                if let level = decoder.logLevel(node, at: path) {
                    configuration.logging.level = level
                }
            }
        ]
    )
}
