/// One key of a mapping: its YAML spelling and how its value node is read into `Target` (the configuration for
/// section keys, the entry being built for the keys of a named entry such as a task).
struct ConfigurationField<Target>: Sendable {
    /// Reads `value` (found at `keyPath`) into the target, reporting problems to the decoder.
    typealias Decode =
        @Sendable (
            _ value: YAMLNode, _ keyPath: String, _ decoder: inout ConfigurationDecoder,
            _ target: inout Target
        ) -> Void

    let key: String
    /// A required key missing from its mapping is an error; an optional one keeps its default.
    var isRequired = false
    /// A key whose value is a mapping of named entries (`beat.schedule`): documented by the keys of its entries
    /// (``Configuration/beatEntryKeyPaths``), not as a key of its own.
    var hasNamedEntries = false
    let decode: Decode
}

/// One top-level section: its YAML spelling, how messages call its contents, and either its keys in documentation
/// order or, for a section whose keys are names chosen in the file (`tasks`), how each named entry is read.
struct ConfigurationSection: Sendable {
    let name: String
    let contents: String
    /// The fixed keys; empty for a section of named entries.
    let fields: [ConfigurationField<Configuration>]
    /// How named entries are read, or `nil` for a section of fixed keys.
    let entries: ConfigurationEntries?

    var keys: [String] { fields.filter { !$0.hasNamedEntries }.map(\.key) }

    init(name: String, contents: String, fields: [ConfigurationField<Configuration>]) {
        self.name = name
        self.contents = contents
        self.fields = fields
        self.entries = nil
    }

    init(name: String, contents: String, entries: ConfigurationEntries) {
        self.name = name
        self.contents = contents
        self.fields = []
        self.entries = entries
    }
}

/// The entries of a section whose keys are names chosen in the file (`tasks.reports.render`), each a mapping of the
/// same fields. An entry is read into its own value, and stored in the configuration only when it has no problem,
/// so a half-read entry never reaches the daemon.
struct ConfigurationEntries: Sendable {
    /// Stands for the chosen name in key patterns (`tasks.<name>.exec`) and in documentation.
    static let placeholder = "<name>"

    /// Reads the entry `name` (a non-empty key, at `keyNode`) from `value`, found at `keyPath`.
    typealias Decode =
        @Sendable (
            _ name: String, _ keyNode: YAMLNode, _ value: YAMLNode, _ keyPath: String,
            _ decoder: inout ConfigurationDecoder,
            _ configuration: inout Configuration
        ) -> Void

    /// What one entry is called in messages: "task" in "expected a task name".
    let noun: String
    /// The keys of each entry, in documentation order.
    let keys: [String]
    let decode: Decode

    /// - Parameters:
    ///   - contents: How messages call an entry's mapping ("task settings").
    ///   - fields: The keys of an entry and how each is read into `Entry`.
    ///   - nameProblem: Why a name may not be used (reserved names) with this value, or `nil` when it may.
    ///   - entryProblem: What is wrong with an entry whose keys all read well (keys that need one another).
    ///   - makeEntry: The entry with every default, before its keys are read.
    ///   - store: Adds a complete, valid entry to the configuration.
    init<Entry>(
        noun: String,
        contents: String,
        fields: [ConfigurationField<Entry>],
        nameProblem: @escaping @Sendable (_ name: String, _ value: YAMLNode) -> String?,
        entryProblem: @escaping @Sendable (_ entry: Entry) -> String? = { _ in nil },
        makeEntry: @escaping @Sendable (_ name: String) -> Entry,
        store: @escaping @Sendable (_ entry: Entry, _ configuration: inout Configuration) -> Void
    ) {
        self.noun = noun
        let keys = fields.map(\.key)
        self.keys = keys
        let expectation = "a mapping of \(contents) (\(keys.joined(separator: ", ")))"
        self.decode = { name, keyNode, value, keyPath, decoder, configuration in
            var valid = true
            if let problem = nameProblem(name, value) {
                decoder.report(problem, at: keyNode, keyPath: keyPath)
                valid = false
            }
            var entry = makeEntry(name)
            // Read the keys even under a refused name: every problem is reported in one pass.
            let read = decoder.decodeMapping(
                value,
                at: keyPath,
                expected: expectation,
                fields: fields,
                owner: keyNode,
                into: &entry
            )
            if read, let problem = entryProblem(entry) {
                decoder.report(problem, at: keyNode, keyPath: keyPath)
                valid = false
            }
            if valid && read {
                store(entry, &configuration)
            }
        }
    }
}

/// The single source of truth for which keys exist and how each is read: the decoder walks it, and
/// `Configuration.knownKeyPaths` and `patternKeyPaths` (used by documentation coverage tests) are derived from it, so
/// the two cannot drift.
enum ConfigurationSchema {
    static let sections: [ConfigurationSection] = [
        broker, resultBackend, worker, control, logging, tasks, beat, events, metrics, health,
    ]

    static func section(named name: String) -> ConfigurationSection? {
        sections.first { $0.name == name }
    }

    static let broker = ConfigurationSection(
        name: "broker",
        contents: "broker settings",
        fields: [
            ConfigurationField(key: "url") { node, path, decoder, configuration in
                if let url = decoder.url(node, at: path, schemes: Configuration.Broker.acceptedSchemes) {
                    if let problem = FailoverURLs.problem(in: url, section: "broker") {
                        decoder.report(problem, at: node, keyPath: path)
                    } else {
                        configuration.broker.url = url
                    }
                }
            },
            ConfigurationField(key: "master_name") { node, path, decoder, configuration in
                guard !node.isNull else {
                    configuration.broker.masterName = nil
                    return
                }
                if let name = decoder.masterName(node, at: path) { configuration.broker.masterName = name }
            },
            ConfigurationField(key: "visibility_timeout") { node, path, decoder, configuration in
                // Zero would make every reserved message fair game for redelivery at once.
                if let value = decoder.duration(node, at: path, allowsZero: false) {
                    configuration.broker.visibilityTimeout = value
                }
            },
            ConfigurationField(key: "heartbeat") { node, path, decoder, configuration in
                // 0 turns AMQP heartbeats off.
                if let value = decoder.duration(node, at: path, allowsZero: true) {
                    configuration.broker.heartbeat = value
                }
            },
            ConfigurationField(key: "connect_timeout") { node, path, decoder, configuration in
                if let value = decoder.duration(node, at: path, allowsZero: false) {
                    configuration.broker.connectTimeout = value
                }
            },
            ConfigurationField(key: "tls_ca_file") { node, path, decoder, configuration in
                guard !node.isNull else {
                    configuration.broker.tls.caFile = nil
                    return
                }
                if let value = decoder.absolutePath(node, at: path) {
                    configuration.broker.tls.caFile = value
                }
            },
            ConfigurationField(key: "tls_cert_file") { node, path, decoder, configuration in
                guard !node.isNull else {
                    configuration.broker.tls.certFile = nil
                    return
                }
                if let value = decoder.absolutePath(node, at: path) {
                    configuration.broker.tls.certFile = value
                }
            },
            ConfigurationField(key: "tls_key_file") { node, path, decoder, configuration in
                guard !node.isNull else {
                    configuration.broker.tls.keyFile = nil
                    return
                }
                if let value = decoder.absolutePath(node, at: path) {
                    configuration.broker.tls.keyFile = value
                }
            },
            ConfigurationField(key: "tls_verify") { node, path, decoder, configuration in
                if let value = decoder.boolean(node, at: path) {
                    configuration.broker.tls.verify = value
                }
            },
            ConfigurationField(key: "queue_max_priority") { node, path, decoder, configuration in
                guard !node.isNull else {
                    configuration.broker.queueMaxPriority = nil
                    return
                }
                // RabbitMQ allows 1 to 255 (it recommends at most 10).
                if let value = decoder.integer(node, at: path, in: 1...255, expected: "an integer from 1 to 255") {
                    configuration.broker.queueMaxPriority = value
                }
            },
            ConfigurationField(key: "queue_type") { node, path, decoder, configuration in
                let names = Configuration.Broker.QueueType.allCases.map(\.rawValue)
                guard let text = decoder.text(node, at: path, expected: "classic or quorum") else { return }
                if let value = Configuration.Broker.QueueType(rawValue: text) {
                    configuration.broker.queueType = value
                } else {
                    decoder.report(
                        "expected \(names.joined(separator: " or ")), got \(text.debugDescription)",
                        at: node,
                        keyPath: path
                    )
                }
            },
            ConfigurationField(key: "global_qos") { node, path, decoder, configuration in
                // `auto`, or YAML's boolean `false` (a channel-wide limit cannot be forced: quorum queues refuse it).
                if case .scalar(let scalar) = node, node.isPlain, scalar.string == "auto" {
                    configuration.broker.globalQoS = .auto
                    return
                }
                if case .scalar(let scalar) = node, node.isPlain, node.tag.rawValue == YAMLTag.bool.rawValue,
                    ["false", "no", "off"].contains(scalar.string.lowercased())
                {
                    configuration.broker.globalQoS = .never
                    return
                }
                decoder.report(
                    "expected auto or false, got \(ConfigurationDecoder.describe(node))",
                    at: node,
                    keyPath: path
                )
            },
            ConfigurationField(key: "consumer_timeout") { node, path, decoder, configuration in
                // 0: the broker has no consumer timeout; ETA tasks are then held as long as they wait.
                if let value = decoder.duration(node, at: path, allowsZero: true) {
                    configuration.broker.consumerTimeout = value
                }
            },
            ConfigurationField(key: "password_file") { node, path, decoder, configuration in
                guard !node.isNull else {
                    configuration.broker.passwordFile = nil
                    return
                }
                if let file = decoder.absolutePath(node, at: path) {
                    configuration.broker.passwordFile = file
                }
            },
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
                    if let problem = FailoverURLs.problem(in: url, section: "result_backend") {
                        decoder.report(problem, at: node, keyPath: path)
                    } else {
                        configuration.resultBackend.url = url
                    }
                }
            },
            ConfigurationField(key: "master_name") { node, path, decoder, configuration in
                guard !node.isNull else {
                    configuration.resultBackend.masterName = nil
                    return
                }
                if let name = decoder.masterName(node, at: path) { configuration.resultBackend.masterName = name }
            },
            ConfigurationField(key: "expires") { node, path, decoder, configuration in
                // 0 means never, so zero is allowed.
                if let value = decoder.duration(node, at: path, allowsZero: true) {
                    configuration.resultBackend.expires = value
                }
            },
            ConfigurationField(key: "extended") { node, path, decoder, configuration in
                if let value = decoder.boolean(node, at: path) {
                    configuration.resultBackend.extended = value
                }
            },
            ConfigurationField(key: "password_file") { node, path, decoder, configuration in
                guard !node.isNull else {
                    configuration.resultBackend.passwordFile = nil
                    return
                }
                if let file = decoder.absolutePath(node, at: path) {
                    configuration.resultBackend.passwordFile = file
                }
            },
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
            ConfigurationField(key: "default_queue") { node, path, decoder, configuration in
                guard let queue = decoder.text(node, at: path, expected: "a queue name") else { return }
                if queue.isEmpty {
                    decoder.report("expected a queue name, got an empty text", at: node, keyPath: path)
                } else {
                    configuration.worker.defaultQueue = queue
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
            ConfigurationField(key: "pool") { node, path, decoder, configuration in
                let names = Configuration.Worker.Pool.allCases.map(\.rawValue)
                let expectation = names.dropLast().joined(separator: ", ") + " or " + names.last!
                guard let text = decoder.text(node, at: path, expected: expectation) else { return }
                if let pool = Configuration.Worker.Pool(rawValue: text) {
                    configuration.worker.pool = pool
                } else {
                    decoder.report("expected \(expectation), got \(text.debugDescription)", at: node, keyPath: path)
                }
            },
            ConfigurationField(key: "acks_late") { node, path, decoder, configuration in
                if let value = decoder.boolean(node, at: path) {
                    configuration.worker.acksLate = value
                }
            },
            ConfigurationField(key: "track_started") { node, path, decoder, configuration in
                if let value = decoder.boolean(node, at: path) {
                    configuration.worker.trackStarted = value
                }
            },
            ConfigurationField(key: "reject_on_worker_lost") { node, path, decoder, configuration in
                if let value = decoder.boolean(node, at: path) {
                    configuration.worker.rejectOnWorkerLost = value
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
            ConfigurationField(key: "max_tasks_per_child") { node, path, decoder, configuration in
                guard !node.isNull else {
                    configuration.worker.maxTasksPerChild = nil
                    return
                }
                let value = decoder.integer(node, at: path, in: 1...Int(Int32.max), expected: "a positive integer")
                if let value {
                    configuration.worker.maxTasksPerChild = value
                }
            },
            ConfigurationField(key: "max_memory_per_child") { node, path, decoder, configuration in
                guard !node.isNull else {
                    configuration.worker.maxMemoryPerChild = nil
                    return
                }
                let value = decoder.integer(
                    node,
                    at: path,
                    in: 1...Int(Int32.max),
                    expected: "a positive integer (KiB of resident memory)"
                )
                if let value {
                    configuration.worker.maxMemoryPerChild = value
                }
            },
            ConfigurationField(key: "child_prefetch") { node, path, decoder, configuration in
                let range = Configuration.Worker.childPrefetchRange
                let expected = "an integer from \(range.lowerBound) to \(range.upperBound)"
                if let value = decoder.integer(node, at: path, in: range, expected: expected) {
                    configuration.worker.childPrefetch = value
                }
            },
            ConfigurationField(key: "child_prefetch_max_runtime") { node, path, decoder, configuration in
                if let value = decoder.duration(node, at: path, allowsZero: false) {
                    configuration.worker.childPrefetchMaxRuntime = value
                }
            },
            ConfigurationField(key: "poison_threshold") { node, path, decoder, configuration in
                if let value = decoder.integer(node, at: path, in: 1...1000, expected: "a positive integer") {
                    configuration.worker.poisonThreshold = value
                }
            },
            ConfigurationField(key: "dead_letter_queue") { node, path, decoder, configuration in
                guard !node.isNull else {
                    configuration.worker.deadLetterQueue = nil
                    return
                }
                if let queue = decoder.text(node, at: path, expected: "a queue name"),
                    !queue.trimmingWhitespace().isEmpty
                {
                    configuration.worker.deadLetterQueue = queue.trimmingWhitespace()
                } else if node.scalar != nil {
                    decoder.report("expected a queue name, got \"\"", at: node, keyPath: path)
                }
            },
            ConfigurationField(key: "revokes_max") { node, path, decoder, configuration in
                let value = decoder.integer(
                    node,
                    at: path,
                    in: Configuration.Worker.revokesMaxRange,
                    expected: "a positive integer"
                )
                if let value {
                    configuration.worker.revokesMax = value
                }
            },
            ConfigurationField(key: "revokes_expire") { node, path, decoder, configuration in
                if let value = decoder.duration(node, at: path, allowsZero: false) {
                    configuration.worker.revokesExpire = value
                }
            },
            ConfigurationField(key: "state_db") { node, path, decoder, configuration in
                guard !node.isNull else {
                    configuration.worker.stateDB = nil
                    return
                }
                if let file = decoder.absolutePath(node, at: path) {
                    configuration.worker.stateDB = file
                }
            },
            ConfigurationField(key: "mingle") { node, path, decoder, configuration in
                if let value = decoder.boolean(node, at: path) {
                    configuration.worker.mingle = value
                }
            },
            ConfigurationField(key: "pass_environment") { node, path, decoder, configuration in
                if let names = decoder.environmentNames(node, at: path) {
                    configuration.worker.passEnvironment = names
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
            ConfigurationField(key: "admin_uids") { node, path, decoder, configuration in
                if let users = decoder.principals(node, at: path, kind: .user) {
                    configuration.control.adminUIDs = users.map(UserRef.init)
                }
            },
            ConfigurationField(key: "admin_gids") { node, path, decoder, configuration in
                if let groups = decoder.principals(node, at: path, kind: .group) {
                    configuration.control.adminGIDs = groups.map(GroupRef.init)
                }
            },
            ConfigurationField(key: "broadcast") { node, path, decoder, configuration in
                let expectation = "true, false or read-only"
                guard let text = decoder.text(node, at: path, expected: expectation) else { return }
                let value: Configuration.Control.Broadcast? =
                    switch node.isPlain ? text.lowercased() : text {
                    case "true", "yes", "on": .enabled
                    case "false", "no", "off": .disabled
                    case "read-only": .readOnly
                    default: nil
                    }
                if let value {
                    configuration.control.broadcast = value
                } else {
                    decoder.report("expected \(expectation), got \(text.debugDescription)", at: node, keyPath: path)
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

    static let tasks = ConfigurationSection(
        name: "tasks",
        contents: "task names to task settings",
        entries: ConfigurationEntries(
            noun: "task",
            contents: "task settings",
            fields: [
                ConfigurationField<TaskEntry>(key: "exec") { node, path, decoder, task in
                    if let argv = decoder.argv(node, at: path) {
                        task.argv = argv
                    }
                },
                ConfigurationField(key: "timeout") { node, path, decoder, task in
                    // null explicitly means "no limit", the default, as `result_backend.url: ~` means no backend.
                    task.hasTimeout = true
                    guard !node.isNull else {
                        task.timeout = nil
                        return
                    }
                    if let timeout = decoder.duration(node, at: path, allowsZero: false) {
                        task.timeout = timeout
                    }
                },
            ] + taskSettingFields,
            nameProblem: { name, value in
                // Settings are fine for every name; a program is not, for the built-ins and `defaults`.
                guard case .mapping(let mapping) = value,
                    mapping.contains(where: { key, _ in key.scalar?.string == "exec" })
                else { return nil }
                let prefix = Configuration.ExecTask.reservedNamePrefix
                if name.hasPrefix(prefix) {
                    return "task names starting with \"\(prefix)\" are reserved for built-in tasks"
                }
                if name == Configuration.taskDefaultsName {
                    return "tasks.defaults holds settings for every task; it cannot have a program (exec)"
                }
                return nil
            },
            entryProblem: { entry in
                entry.hasTimeout && entry.argv.isEmpty ? "missing required key \"exec\"" : nil
            },
            makeEntry: { name in TaskEntry(name: name) },
            store: { entry, configuration in
                if entry.name == Configuration.taskDefaultsName {
                    configuration.taskDefaults = entry.settings
                } else if !entry.argv.isEmpty {
                    configuration.tasks[entry.name] = Configuration.ExecTask(
                        name: entry.name,
                        argv: entry.argv,
                        timeout: entry.timeout,
                        settings: entry.settings
                    )
                } else {
                    configuration.taskSettings[entry.name] = entry.settings
                }
            }
        )
    )

    /// One `tasks.<name>` entry while it is read: a program (exec tasks), its own timeout, and the settings.
    struct TaskEntry {
        var name: String
        var argv: [String] = []
        var timeout: Duration?
        var hasTimeout = false
        var settings = Configuration.TaskSettings()
    }

    /// The keys of `tasks.defaults` and `tasks.<name>` other than `exec` and `timeout`. Null means "not set here".
    static let taskSettingFields: [ConfigurationField<TaskEntry>] = [
        ConfigurationField(key: "max_retries") { node, path, decoder, task in
            guard !node.isNull else { return }
            task.settings.maxRetries = decoder.integer(
                node,
                at: path,
                in: 0...1_000_000,
                expected: "a non-negative integer"
            )
        },
        durationSetting("default_retry_delay", allowsZero: true, \.defaultRetryDelay),
        booleanSetting("retry_backoff", \.retryBackoff),
        durationSetting("retry_backoff_max", allowsZero: false, \.retryBackoffMax),
        booleanSetting("retry_jitter", \.retryJitter),
        booleanSetting("autoretry", \.autoretry),
        durationSetting("soft_time_limit", allowsZero: false, \.softTimeLimit),
        durationSetting("time_limit", allowsZero: false, \.timeLimit),
        ConfigurationField(key: "rate_limit") { node, path, decoder, task in
            guard !node.isNull else { return }
            let expectation = "a rate such as 10/s, 100/m or 5/h"
            guard let text = decoder.text(node, at: path, expected: expectation) else { return }
            guard let rate = Configuration.RateLimit(text) else {
                decoder.report(
                    "expected \(expectation), got \(ConfigurationDecoder.describe(node))",
                    at: node,
                    keyPath: path
                )
                return
            }
            task.settings.rateLimit = rate
        },
        booleanSetting("acks_late", \.acksLate),
        booleanSetting("reject_on_worker_lost", \.rejectOnWorkerLost),
        booleanSetting("acks_on_failure_or_timeout", \.acksOnFailureOrTimeout),
    ]

    private static func booleanSetting(
        _ key: String,
        _ property: WritableKeyPath<Configuration.TaskSettings, Bool?> & Sendable
    ) -> ConfigurationField<TaskEntry> {
        ConfigurationField(key: key) { node, path, decoder, task in
            guard !node.isNull else { return }
            if let value = decoder.boolean(node, at: path) { task.settings[keyPath: property] = value }
        }
    }

    private static func durationSetting(
        _ key: String,
        allowsZero: Bool,
        _ property: WritableKeyPath<Configuration.TaskSettings, Duration?> & Sendable
    ) -> ConfigurationField<TaskEntry> {
        ConfigurationField(key: key) { node, path, decoder, task in
            guard !node.isNull else { return }
            if let value = decoder.duration(node, at: path, allowsZero: allowsZero) {
                task.settings[keyPath: property] = value
            }
        }
    }
}
