import OrderedCollections
import SwiftqCore

/// The tasks every swiftqd ships, for smoke tests and benchmarks (`swiftq.ping`, `swiftq.echo`,
/// `swiftq.add`, `swiftq.sleep`, `swiftq.fail`). Their names and behaviour are part of the interface.
enum BuiltInTasks {
    static func register(into registry: inout TaskRegistry) {
        registry.register("swiftq.ping") { invocation, _ in
            try expectArguments(invocation, positional: 0...0)
            return "pong"
        }
        registry.register("swiftq.echo") { invocation, _ in
            try expectArguments(invocation, positional: 0...1, keywords: ["value"])
            if let value = invocation.args.first {
                guard invocation.kwargs["value"] == nil else {
                    throw TaskFailure.typeError("swiftq.echo() got multiple values for argument 'value'")
                }
                return value
            }
            guard let value = invocation.kwargs["value"] else {
                throw TaskFailure.typeError("swiftq.echo() missing 1 required positional argument: 'value'")
            }
            return value
        }
        registry.register("swiftq.add") { invocation, _ in
            try expectArguments(invocation, positional: 0...Int.max)
            return try add(invocation.args)
        }
        registry.register("swiftq.sleep") { invocation, environment in
            try expectArguments(invocation, positional: 0...1, keywords: ["seconds"])
            guard let value = invocation.args.first ?? invocation.kwargs["seconds"] else {
                throw TaskFailure.typeError("swiftq.sleep() missing 1 required positional argument: 'seconds'")
            }
            guard let seconds = value.doubleValue, seconds.isFinite, seconds >= 0, value.boolValue == nil else {
                throw TaskFailure.valueError("swiftq.sleep() needs a non-negative number of seconds, got \(value)")
            }
            if !environment.sleep(.nanoseconds(Int64(seconds * 1e9))) && environment.isPastSoftTimeLimit {
                // As a Celery task inside time.sleep gets SoftTimeLimitExceeded raised.
                throw TaskFailure.softTimeLimitExceeded
            }
            return .null
        }
        registry.register("swiftq.fail") { invocation, _ in
            try expectArguments(invocation, positional: 0...1, keywords: ["message", "exc_type"])
            let message = (invocation.args.first ?? invocation.kwargs["message"]).map { value in
                value.stringValue ?? value.description
            }
            var failure = TaskFailure(type: "RuntimeError", message: message ?? "swiftq.fail was called")
            if let type = invocation.kwargs["exc_type"]?.stringValue, !type.isEmpty { failure.type = type }
            throw failure
        }
    }

    /// Python's rules for `sum`-like addition: integers stay integers, any float makes a float, booleans
    /// count as 0 and 1, anything else is a `TypeError`.
    static func add(_ numbers: [JSONValue]) throws(TaskFailure) -> JSONValue {
        var integer: Int64 = 0
        var real = 0.0
        var isReal = false
        for number in numbers {
            // Python's bool is an int: True counts as 1.
            let number: JSONValue = number.boolValue.map { .int($0 ? 1 : 0) } ?? number
            switch number {
            case .int(let value):
                if isReal {
                    real += Double(value)
                } else {
                    let (sum, overflow) = integer.addingReportingOverflow(value)
                    if overflow { throw TaskFailure(type: "OverflowError", message: "integer sum exceeds 64 bits") }
                    integer = sum
                }
            case .double(let value):
                if !isReal {
                    isReal = true
                    real = Double(integer)
                }
                real += value
            case .bigInt:
                throw TaskFailure(type: "OverflowError", message: "integer argument exceeds 64 bits")
            default:
                throw TaskFailure.typeError("unsupported operand type(s) for +: 'int' and '\(pythonTypeName(number))'")
            }
        }
        return isReal ? .double(real) : .int(integer)
    }

    static func pythonTypeName(_ value: JSONValue) -> String {
        switch value {
        case .null: "NoneType"
        case .bool: "bool"
        case .int, .bigInt: "int"
        case .double: "float"
        case .string: "str"
        case .array: "list"
        case .object: "dict"
        }
    }

    /// Checks the call shape the way Python reports a bad call, so clients see familiar errors.
    static func expectArguments(
        _ invocation: TaskInvocation,
        positional: ClosedRange<Int>,
        keywords: Set<String> = []
    ) throws(TaskFailure) {
        let name = invocation.name
        if invocation.args.count > positional.upperBound {
            let takes = positional.upperBound
            throw TaskFailure.typeError(
                "\(name)() takes \(takes) positional argument\(takes == 1 ? "" : "s") but \(invocation.args.count) "
                    + "\(invocation.args.count == 1 ? "was" : "were") given"
            )
        }
        for key in invocation.kwargs.keys where !keywords.contains(key) {
            throw TaskFailure.typeError("\(name)() got an unexpected keyword argument '\(key)'")
        }
    }
}
