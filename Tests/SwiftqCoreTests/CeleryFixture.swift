import Foundation
import OrderedCollections
import SwiftqCore

/// A fixture written by `dev/capture-celery-fixtures.py` from real Python Celery 5.7 and kombu 5.7
/// (`Fixtures/celery-v2/*.json`): a task message as kombu pushed it, or a result meta as a Python worker stored it.
struct CeleryFixture {
    /// The fixture's name, its file name without `.json`.
    var name: String
    /// The whole fixture document.
    var document: JSONValue

    /// The message fixtures (those with an `envelope`).
    static let messageNames = [
        "add", "kwargs", "unicode-nested", "priority-5", "priority-9", "countdown", "expires", "eta-datetime",
        "time-limits", "custom-headers", "link", "chain", "group-parent", "ignore-result", "shadow",
        "compression-zlib", "registered-apply-async", "redelivered",
    ]

    /// Loads `Fixtures/celery-v2/<name>.json`.
    static func load(_ name: String) throws -> CeleryFixture {
        let text = try String(contentsOf: try url(directory: "celery-v2", file: "\(name).json"), encoding: .utf8)
        return CeleryFixture(name: name, document: try JSONValue(parsing: text))
    }

    /// The URL of `Fixtures/<directory>/<file>` in the test bundle.
    static func url(directory: String, file: String) throws -> URL {
        guard let fixtures = Bundle.module.url(forResource: "Fixtures", withExtension: nil) else {
            throw Missing(what: "Fixtures")
        }
        let url = fixtures.appending(path: directory).appending(path: file)
        guard FileManager.default.fileExists(atPath: url.path) else { throw Missing(what: "\(directory)/\(file)") }
        return url
    }

    /// The raw list element, exactly as LPUSHed by kombu.
    var envelopeBytes: [UInt8] {
        get throws { Array(try string("envelope").utf8) }
    }

    /// The envelope parsed as JSON, for comparing structure.
    var envelopeJSON: JSONValue {
        get throws { try JSONValue(parsing: try string("envelope")) }
    }

    /// The Redis list kombu pushed the message to.
    var queueKey: String {
        get throws { try string("queue_key") }
    }

    /// `time.time()` just before the message was sent.
    var sentAt: Double {
        get throws {
            guard let value = document["sent_at"]?.doubleValue else { throw Missing(what: "\(name).sent_at") }
            return value
        }
    }

    /// The stored result meta, parsed.
    var meta: JSONValue {
        get throws { try JSONValue(parsing: try string("value")) }
    }

    /// The task message that produced a result meta.
    var requestEnvelope: RedisEnvelope {
        get throws { try RedisEnvelope.decode(Array(try string("request_envelope").utf8)) }
    }

    /// The decoded envelope and task of a message fixture.
    func decoded() throws -> (envelope: RedisEnvelope, task: TaskMessage) {
        let envelope = try RedisEnvelope.decode(try envelopeBytes)
        return (envelope, try TaskMessage.decode(envelope))
    }

    private func string(_ key: String) throws -> String {
        guard let value = document[key]?.stringValue else { throw Missing(what: "\(name).\(key)") }
        return value
    }

    struct Missing: Error, CustomStringConvertible {
        var what: String
        var description: String { "fixture \(what) not found" }
    }
}

extension JSONValue {
    /// The value with the named members of every object (at any depth) replaced by `"*"`: for comparing the
    /// structure of two messages or metas whose ids, tags and times differ.
    func masking(_ keys: Set<String>) -> JSONValue {
        switch self {
        case .object(let members):
            var masked = OrderedDictionary<String, JSONValue>()
            for (key, value) in members {
                masked[key] = keys.contains(key) ? "*" : value.masking(keys)
            }
            return .object(masked)
        case .array(let elements):
            return .array(elements.map { $0.masking(keys) })
        default:
            return self
        }
    }

    /// The shape of the value: every scalar replaced by its type name, object keys and order kept.
    var shape: JSONValue {
        switch self {
        case .object(let members): return .object(members.mapValues(\.shape))
        case .array(let elements): return .array(elements.map(\.shape))
        default: return .string(typeName)
        }
    }
}
