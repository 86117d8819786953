/// One unit of a process's startup and shutdown, in Celery's sense of a bootstep.
///
/// A step names the steps it `requires`; the ``Blueprint`` starts every requirement before the step and
/// stops the step before its requirements. A step whose `isEnabled` predicate is false is skipped at
/// start, but still orders the steps around it (as Celery's `include_if` does), so turning an optional
/// step off never breaks the graph.
///
/// `Context` is whatever the owning process hands its steps (the supervisor's or the consumer's state).
/// Steps run on the owning process's event-loop thread; they are not `Sendable` on purpose.
public struct Bootstep<Context> {
    /// Unique name within its blueprint, shown in logs, `STATUS=`, and `swiftqd --graph`.
    public let name: String
    /// Names of the steps that must have started before this one.
    public let requires: [String]
    /// Whether the step takes part in this run (evaluated once, when the blueprint starts).
    public let isEnabled: (Context) -> Bool
    /// Brings the step up. Throwing aborts startup: the blueprint stops every step already started.
    public let start: (Context) throws -> Void
    /// Takes the step down. Stopping must not fail: a step logs its own problems and carries on,
    /// because the steps after it in the stop order still have to run.
    public let stop: (Context) -> Void

    /// Creates a step.
    public init(
        name: String,
        requires: [String] = [],
        isEnabled: @escaping (Context) -> Bool = { _ in true },
        start: @escaping (Context) throws -> Void,
        stop: @escaping (Context) -> Void = { _ in }
    ) {
        self.name = name
        self.requires = requires
        self.isEnabled = isEnabled
        self.start = start
        self.stop = stop
    }
}
