import SwiftqCore

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Typed Swift tasks: handlers with `Codable` parameters and results instead of raw JSON.
///
/// ```swift
/// var registry = TaskRegistry.builtIn
/// registry.register("shop.total") { (prices: [Double], discount: Double) in prices.reduce(0, +) * (1 - discount) }
/// registry.register("shop.ship", keywords: Shipment.self) { shipment in try ship(shipment) }
/// SwiftqDaemon.main(registry: registry)
/// ```
/// A Python client calls them as usual: `app.send_task("shop.total", ([9.5, 3], 0.1))`. Arguments that do not
/// decode fail the task with Python's `TypeError` and a message naming the argument, as a wrong call does in
/// Python.
extension TaskRegistry {
    /// Registers a task whose positional arguments decode, in order, into the closure's parameters.
    public mutating func register<each Argument: Decodable & SendableMetatype, Output: Encodable & SendableMetatype>(
        _ name: String,
        _ body: @escaping @Sendable (repeat each Argument) throws -> Output
    ) {
        register(name) { invocation, _ in
            if let keyword = invocation.kwargs.keys.first {
                throw TaskFailure.typeError("\(name)() got an unexpected keyword argument '\(keyword)'")
            }
            var expected = 0
            for _ in repeat (each Argument).self { expected += 1 }
            guard invocation.args.count == expected else {
                throw TaskFailure.typeError(
                    "\(name)() takes \(expected) positional argument\(expected == 1 ? "" : "s") but "
                        + "\(invocation.args.count) \(invocation.args.count == 1 ? "was" : "were") given"
                )
            }
            var position = 0
            func next<Value: Decodable>(_ type: Value.Type) throws -> Value {
                defer { position += 1 }
                return try JSONValueCoding.decode(type, from: invocation.args[position]) {
                    "\(name)() argument \(position + 1)"
                }
            }
            let output = try body(repeat try next((each Argument).self))
            return try JSONValueCoding.encode(output, for: name)
        }
    }

    /// Registers a task whose keyword arguments decode into one `Decodable` value (its properties are the
    /// keyword names); positional arguments are refused.
    public mutating func register<Input: Decodable & SendableMetatype, Output: Encodable & SendableMetatype>(
        _ name: String,
        keywords: Input.Type,
        _ body: @escaping @Sendable (Input) throws -> Output
    ) {
        register(name) { invocation, _ in
            guard invocation.args.isEmpty else {
                throw TaskFailure.typeError(
                    "\(name)() takes keyword arguments only, got \(invocation.args.count) positional"
                )
            }
            let input = try JSONValueCoding.decode(Input.self, from: .object(invocation.kwargs)) {
                "\(name)() keyword arguments"
            }
            return try JSONValueCoding.encode(try body(input), for: name)
        }
    }
}

/// Bridges `Codable` and ``JSONValue``: decoding through Foundation's `JSONDecoder`, encoding straight into
/// ``JSONValue`` (`JSONEncoder` would turn `7.0` into `7`, and Python would get an `int`).
enum JSONValueCoding {
    static func decode<Value: Decodable>(
        _ type: Value.Type,
        from value: JSONValue,
        what: () -> String
    ) throws(TaskFailure) -> Value {
        do {
            // Fragments (a bare number or string) are valid top-level JSON for JSONDecoder.
            return try JSONDecoder().decode(Value.self, from: Data(value.serialized()))
        } catch let error as DecodingError {
            throw TaskFailure.typeError("\(what()): \(describe(error)), got \(value.typeName) \(value)")
        } catch {
            throw TaskFailure.typeError("\(what()): \(error)")
        }
    }

    static func encode<Value: Encodable>(_ value: Value, for name: String) throws(TaskFailure) -> JSONValue {
        do {
            return try JSONValueEncoder().encode(value)
        } catch {
            throw TaskFailure(
                type: "EncodeError",
                message: "\(name) returned a value that is not JSON: \(error)",
                module: "kombu.exceptions"
            )
        }
    }

    static func describe(_ error: DecodingError) -> String {
        switch error {
        case .typeMismatch(let type, let context): "expected \(type)\(path(context))"
        case .valueNotFound(let type, let context): "expected \(type)\(path(context))"
        case .keyNotFound(let key, _): "missing '\(key.stringValue)'"
        case .dataCorrupted(let context): context.debugDescription + path(context)
        @unknown default: "\(error)"
        }
    }

    static func path(_ context: DecodingError.Context) -> String {
        let keys = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
        return keys.isEmpty ? "" : " at \(keys)"
    }
}
