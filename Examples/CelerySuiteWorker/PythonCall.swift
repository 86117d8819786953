import OrderedCollections
import SwiftqCore
import SwiftqTasks

/// A task call bound to a Python signature: positional arguments and keywords matched to parameter names
/// with defaults, reporting a bad call with the `TypeError` text Python would raise, so the suite's
/// assertions on error messages see what a Python worker stores.
struct PythonCall {
    let name: String
    private var bound: [String: JSONValue] = [:]
    /// Positional arguments beyond the named parameters (`*args`), when the signature takes them.
    private(set) var rest: [JSONValue] = []

    /// Binds `invocation` to `parameters` (names, optionally with a default); `variadic` is `*args`,
    /// `extraKeywords` is `**kwargs` (accepted and ignored).
    init(
        _ invocation: TaskInvocation,
        _ parameters: [(String, JSONValue?)],
        variadic: Bool = false,
        keywordOnly: [(String, JSONValue?)] = [],
        extraKeywords: Bool = false
    ) throws(TaskFailure) {
        let short = invocation.name.split(separator: ".").last.map(String.init) ?? invocation.name
        name = short
        var positional = invocation.args[...]
        for (parameter, _) in parameters {
            guard let value = positional.popFirst() else { break }
            bound[parameter] = value
        }
        if !positional.isEmpty {
            guard variadic else {
                let count = parameters.count
                throw TaskFailure.typeError(
                    "\(short)() takes \(count) positional argument\(count == 1 ? "" : "s") but "
                        + "\(invocation.args.count) \(invocation.args.count == 1 ? "was" : "were") given"
                )
            }
            rest = Array(positional)
        }
        let known = Set(parameters.map(\.0) + keywordOnly.map(\.0))
        for (key, value) in invocation.kwargs {
            guard known.contains(key) else {
                if extraKeywords { continue }
                throw TaskFailure.typeError("\(short)() got an unexpected keyword argument '\(key)'")
            }
            guard bound[key] == nil else {
                throw TaskFailure.typeError("\(short)() got multiple values for argument '\(key)'")
            }
            bound[key] = value
        }
        var missing: [String] = []
        for (parameter, fallback) in parameters + keywordOnly where bound[parameter] == nil {
            if let fallback { bound[parameter] = fallback } else { missing.append(parameter) }
        }
        if !missing.isEmpty {
            let names = missing.map { "'\($0)'" }.joined(separator: " and ")
            throw TaskFailure.typeError(
                "\(short)() missing \(missing.count) required positional argument\(missing.count == 1 ? "" : "s"): "
                    + names
            )
        }
    }

    subscript(_ parameter: String) -> JSONValue { bound[parameter] ?? .null }
}

/// Python's operators on JSON values, as the suite's tasks use them (`x + y`, `sum`, `x * y`, truth).
enum Python {
    static func typeName(_ value: JSONValue) -> String {
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

    static func isTrue(_ value: JSONValue) -> Bool {
        switch value {
        case .null: false
        case .bool(let flag): flag
        case .int(let number): number != 0
        case .bigInt: true
        case .double(let number): number != 0
        case .string(let text): !text.isEmpty
        case .array(let items): !items.isEmpty
        case .object(let items): !items.isEmpty
        }
    }

    /// A number as Python sees it (bool is an int); nil for anything else.
    private static func number(_ value: JSONValue) -> JSONValue? {
        switch value {
        case .bool(let flag): .int(flag ? 1 : 0)
        case .int, .double: value
        default: nil
        }
    }

    /// `a + b`: numbers, str + str, list + list; Python's `TypeError` otherwise.
    static func add(_ a: JSONValue, _ b: JSONValue) throws(TaskFailure) -> JSONValue {
        switch (a, b) {
        case (.string(let x), .string(let y)): return .string(x + y)
        case (.array(let x), .array(let y)): return .array(x + y)
        case (.string, _):
            throw TaskFailure.typeError("can only concatenate str (not \"\(typeName(b))\") to str")
        case (.array, _):
            throw TaskFailure.typeError("can only concatenate list (not \"\(typeName(b))\") to list")
        default: break
        }
        guard let x = number(a), let y = number(b) else {
            throw TaskFailure.typeError(
                "unsupported operand type(s) for +: '\(typeName(a))' and '\(typeName(b))'"
            )
        }
        switch (x, y) {
        case (.int(let x), .int(let y)):
            let (sum, overflow) = x.addingReportingOverflow(y)
            if overflow { throw TaskFailure(type: "OverflowError", message: "integer sum exceeds 64 bits") }
            return .int(sum)
        default:
            return .double((x.doubleValue ?? Double(x.intValue ?? 0)) + (y.doubleValue ?? Double(y.intValue ?? 0)))
        }
    }

    /// `a * b` for numbers.
    static func multiply(_ a: JSONValue, _ b: JSONValue) throws(TaskFailure) -> JSONValue {
        guard let x = number(a), let y = number(b) else {
            throw TaskFailure.typeError(
                "unsupported operand type(s) for *: '\(typeName(a))' and '\(typeName(b))'"
            )
        }
        if case .int(let x) = x, case .int(let y) = y {
            let (product, overflow) = x.multipliedReportingOverflow(by: y)
            if overflow { throw TaskFailure(type: "OverflowError", message: "integer product exceeds 64 bits") }
            return .int(product)
        }
        return .double((x.doubleValue ?? Double(x.intValue ?? 0)) * (y.doubleValue ?? Double(y.intValue ?? 0)))
    }

    /// `sum(iterable)`, starting at 0 like Python's.
    static func sum(_ values: JSONValue) throws(TaskFailure) -> JSONValue {
        guard let items = values.arrayValue else {
            throw TaskFailure.typeError("'\(typeName(values))' object is not iterable")
        }
        var total: JSONValue = .int(0)
        for item in items { total = try add(total, item) }
        return total
    }

    /// The text redis-py sends for a value (`str()` of numbers; strings as they are).
    static func redisText(_ value: JSONValue) throws(TaskFailure) -> String {
        switch value {
        case .string(let text): return text
        case .int(let number): return String(number)
        case .bigInt(let text): return text
        case .double(let number): return String(number)
        // Python bytes as kombu's JSON carries them: `{"__type__": "bytes", "__value__": "<utf-8 text>"}`.
        case .object(let object) where object["__type__"] == "bytes":
            if let text = object["__value__"]?.stringValue { return text }
            fallthrough
        default:
            throw TaskFailure(
                type: "DataError",
                message: "Invalid input of type: '\(typeName(value))'. Convert to a bytes, string, int or float first.",
                module: "redis.exceptions"
            )
        }
    }
}
