import OrderedCollections
import SwiftqCore

/// A frame that is not a valid message of its direction.
package struct ChannelDecodeError: Error, Equatable, CustomStringConvertible {
    package enum Problem: Equatable {
        case notAnObject
        case unknownType
        case missingField(String)
        case wrongType(field: String, expected: String)
    }

    /// The message's `"type"`, when it had one.
    package var type: String?
    package var problem: Problem

    package var description: String {
        let name = type.map { "\"\($0)\"" } ?? "message"
        switch problem {
        case .notAnObject: return "a channel message must be a JSON object"
        case .unknownType: return "unknown message type \(name)"
        case .missingField(let field): return "\(name) lacks the field \"\(field)\""
        case .wrongType(let field, let expected): return "\(name): field \"\(field)\" must be \(expected)"
        }
    }
}

/// Reads typed fields of one message object, failing with a ``ChannelDecodeError`` that names the field.
package struct FieldReader {
    package let type: String
    package let object: OrderedDictionary<String, JSONValue>

    package init(_ message: JSONValue) throws(ChannelDecodeError) {
        guard let object = message.objectValue else { throw ChannelDecodeError(type: nil, problem: .notAnObject) }
        guard let type = object["type"]?.stringValue else {
            throw ChannelDecodeError(type: nil, problem: .missingField("type"))
        }
        self.type = type
        self.object = object
    }

    package func value(_ field: String) throws(ChannelDecodeError) -> JSONValue {
        guard let value = object[field] else { throw ChannelDecodeError(type: type, problem: .missingField(field)) }
        return value
    }

    package func string(_ field: String) throws(ChannelDecodeError) -> String {
        guard let value = try value(field).stringValue else { throw wrong(field, "a string") }
        return value
    }

    package func int(_ field: String) throws(ChannelDecodeError) -> Int64 {
        guard let value = try value(field).intValue else { throw wrong(field, "an integer") }
        return value
    }

    package func bool(_ field: String) throws(ChannelDecodeError) -> Bool {
        guard let value = try value(field).boolValue else { throw wrong(field, "a boolean") }
        return value
    }

    package func array(_ field: String) throws(ChannelDecodeError) -> [JSONValue] {
        guard let value = try value(field).arrayValue else { throw wrong(field, "an array") }
        return value
    }

    package func optionalDouble(_ field: String) throws(ChannelDecodeError) -> Double? {
        switch object[field] {
        case nil, .null?: return nil
        case let value?:
            guard let number = value.doubleValue else { throw wrong(field, "a number") }
            return number
        }
    }

    package func wrong(_ field: String, _ expected: String) -> ChannelDecodeError {
        ChannelDecodeError(type: type, problem: .wrongType(field: field, expected: expected))
    }

    package var unknown: ChannelDecodeError { ChannelDecodeError(type: type, problem: .unknownType) }
}
