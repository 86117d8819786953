/// An ordered set of bootsteps: resolved once, started in dependency order, stopped in reverse.
///
/// Ordering is a topological sort whose ties keep the declaration order, so the same blueprint always
/// starts the same way (logs and `--graph` output are stable). The same type serves the supervisor's
/// blueprint and the consumer's own one.
public struct Blueprint<Context> {
    /// Name of the blueprint ("supervisor", "consumer"), used in DOT output and errors.
    public let name: String
    /// The steps in start order.
    public let order: [Bootstep<Context>]

    /// Resolves the graph.
    ///
    /// - Throws: ``BootstepError`` naming the steps of a duplicate, a missing requirement, or a cycle.
    public init(name: String, steps: [Bootstep<Context>]) throws(BootstepError) {
        self.name = name
        var index: [String: Int] = [:]
        for (position, step) in steps.enumerated() {
            if index[step.name] != nil {
                throw BootstepError(
                    code: .duplicateStep,
                    steps: [step.name],
                    message: "\(name) blueprint: two steps are named \"\(step.name)\""
                )
            }
            index[step.name] = position
        }
        for step in steps {
            for requirement in step.requires where index[requirement] == nil {
                throw BootstepError(
                    code: .missingRequirement,
                    steps: [step.name, requirement],
                    message:
                        "\(name) blueprint: step \"\(step.name)\" requires \"\(requirement)\", which is not a step"
                )
            }
        }
        // Kahn's algorithm; among the steps that are ready, the earliest declared goes first.
        var remaining = steps.map { Set($0.requires) }
        var done = [Bool](repeating: false, count: steps.count)
        var ordered: [Bootstep<Context>] = []
        ordered.reserveCapacity(steps.count)
        while ordered.count < steps.count {
            guard let next = steps.indices.first(where: { !done[$0] && remaining[$0].isEmpty }) else {
                let cycle = Self.findCycle(steps: steps, index: index, done: done)
                throw BootstepError(
                    code: .cycle,
                    steps: cycle,
                    message: "\(name) blueprint: requirements form a cycle: \(cycle.joined(separator: " -> "))"
                )
            }
            done[next] = true
            ordered.append(steps[next])
            for position in steps.indices where !done[position] {
                remaining[position].remove(steps[next].name)
            }
        }
        self.order = ordered
    }

    /// Follows unresolved requirements from an unresolved step until a name repeats; returns the loop,
    /// closed (first name repeated at the end).
    private static func findCycle(steps: [Bootstep<Context>], index: [String: Int], done: [Bool]) -> [String] {
        guard var current = steps.indices.first(where: { !done[$0] }) else { return [] }
        var path: [Int] = []
        var seenAt: [Int: Int] = [:]
        while seenAt[current] == nil {
            seenAt[current] = path.count
            path.append(current)
            // Every unresolved step has at least one unresolved requirement, or it would have been ordered.
            let requirement = steps[current].requires.compactMap { index[$0] }.first { !done[$0] }
            guard let requirement else { break }
            current = requirement
        }
        let start = seenAt[current] ?? 0
        let loop = path[start...].map { steps[$0].name }
        return loop + [steps[current].name]
    }

    /// Starts the enabled steps in order and returns the handle that stops them.
    ///
    /// If a step throws, the steps already started are stopped in reverse order before the error is
    /// rethrown as ``BootstepError/Code/startFailed``.
    public func start(_ context: Context, willStart: (Bootstep<Context>) -> Void = { _ in }) throws(BootstepError)
        -> StartedBlueprint<Context>
    {
        let started = StartedBlueprint<Context>()
        for step in order where step.isEnabled(context) {
            willStart(step)
            do {
                try step.start(context)
            } catch {
                started.stop(context)
                throw BootstepError(
                    code: .startFailed,
                    steps: [step.name],
                    message: "\(name) blueprint: step \"\(step.name)\" failed to start: \(error)",
                    cause: error
                )
            }
            started.steps.append(step)
        }
        return started
    }

    /// Renders the resolved graph as Graphviz DOT, an edge from each step to each of its requirements
    /// (the direction `celery graph bootsteps` uses). Disabled steps are drawn dashed.
    public func dot(context: Context? = nil) -> String {
        var lines = ["digraph \"\(Self.escape(name))\" {", "    rankdir=BT;", "    node [shape=box];"]
        for step in order {
            let dashed = context.map { !step.isEnabled($0) } ?? false
            lines.append("    \"\(Self.escape(step.name))\"\(dashed ? " [style=dashed]" : "");")
        }
        for step in order {
            for requirement in step.requires {
                lines.append("    \"\(Self.escape(step.name))\" -> \"\(Self.escape(requirement))\";")
            }
        }
        lines.append("}")
        return lines.joined(separator: "\n") + "\n"
    }

    private static func escape(_ text: String) -> String {
        var escaped = ""
        for character in text {
            if character == "\\" || character == "\"" { escaped.append("\\") }
            escaped.append(character)
        }
        return escaped
    }
}

/// The steps of a blueprint that have started, kept so they can be stopped in reverse order exactly once.
public final class StartedBlueprint<Context> {
    /// Started steps, in start order.
    public fileprivate(set) var steps: [Bootstep<Context>] = []

    fileprivate init() {}

    /// Names of the started steps, in start order.
    public var names: [String] { steps.map(\.name) }

    /// Stops every started step, last started first. Calling it again does nothing.
    public func stop(_ context: Context, willStop: (Bootstep<Context>) -> Void = { _ in }) {
        while let step = steps.popLast() {
            willStop(step)
            step.stop(context)
        }
    }
}
