import OrderedCollections

/// The whole daemon configuration, as one value the supervisor can validate, compare and swap on reload.
///
/// It is plain data: building one in code (tests, embedders of `SwiftqWorker`) needs no file, and comparing the
/// running value with a freshly parsed one tells a reload what changed. Property names mirror the YAML keys
/// (`result_backend` → `resultBackend`); `etc/swiftq/config.yaml` documents every key with its default.
public struct Configuration: Sendable, Equatable {
    /// Where `swiftqd` looks when no `--config` is given.
    public static let defaultPath = "/etc/swiftq/config.yaml"

    /// Section `broker`: where tasks come from.
    public var broker: Broker
    /// Section `result_backend`: where task results go, if anywhere.
    public var resultBackend: ResultBackend
    /// Section `worker`: identity, queues and the process pool.
    public var worker: Worker
    /// Section `control`: the local control socket used by `swiftqctl`.
    public var control: Control
    /// Section `logging`.
    public var logging: Logging
    /// Section `tasks`: programs run as Celery tasks, by task name, in file order. Empty by default: only the
    /// built-in `swiftq.*` tasks are served.
    public var tasks: OrderedDictionary<String, ExecTask>
    /// `tasks.defaults`: settings for every task (each unset key falls back to `worker` and Celery's defaults).
    public var taskDefaults = TaskSettings()
    /// Settings of tasks that are not exec tasks (built-in `swiftq.*` and Swift tasks), by task name, in file
    /// order; an exec task's settings are in its ``ExecTask/settings``.
    public var taskSettings: OrderedDictionary<String, TaskSettings> = [:]
    /// Section `beat`: the embedded periodic-task scheduler.
    public var beat = Beat()
    /// Section `events`: Celery's monitoring events.
    public var events = Events()
    /// Section `metrics`: the Prometheus and health listener.
    public var metrics = Metrics()
    /// Section `health`: when the worker is reported unhealthy.
    public var health = Health()

    /// A configuration with every default, the same as parsing an empty file.
    public init() {
        self.init(
            broker: Broker(),
            resultBackend: ResultBackend(),
            worker: Worker(),
            control: Control(),
            logging: Logging()
        )
    }

    public init(
        broker: Broker,
        resultBackend: ResultBackend,
        worker: Worker,
        control: Control,
        logging: Logging,
        tasks: OrderedDictionary<String, ExecTask> = [:]
    ) {
        self.broker = broker
        self.resultBackend = resultBackend
        self.worker = worker
        self.control = control
        self.logging = logging
        self.tasks = tasks
    }

    /// Every key the parser accepts, as dotted paths in file order (`"broker.url"`, `"worker.queues"`, …).
    ///
    /// Documentation tests (the annotated sample, the man page) check their coverage against this list, so a new
    /// key cannot ship undocumented.
    public static var knownKeyPaths: [String] {
        ConfigurationSchema.sections.flatMap { section in section.keys.map { "\(section.name).\($0)" } }
    }

    /// The keys whose path has a part chosen in the file, with that part as `<name>`: `"tasks.<name>.exec"`,
    /// `"tasks.<name>.timeout"`. Documentation tests check these as they check `knownKeyPaths`.
    public static var patternKeyPaths: [String] {
        ConfigurationSchema.sections.flatMap { section in
            (section.entries?.keys ?? []).map { "\(section.name).\(ConfigurationEntries.placeholder).\($0)" }
        }
    }

    /// The keys of one `beat.schedule` entry, with the entry's name as `<name>`: `"beat.schedule.<name>.task"`, ….
    /// Documentation tests check these as they check ``patternKeyPaths``.
    public static var beatEntryKeyPaths: [String] {
        ConfigurationSchema.beatPatternKeyPaths
    }
}
