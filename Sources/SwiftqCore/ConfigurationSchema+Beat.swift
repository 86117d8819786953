import OrderedCollections

/// Section `beat` of the schema: fixed keys, and `beat.schedule`, a mapping of entry names to entries.
extension ConfigurationSchema {
    static let beat = ConfigurationSection(
        name: "beat",
        contents: "beat settings",
        fields: [
            ConfigurationField(key: "enabled") { node, path, decoder, configuration in
                if let value = decoder.boolean(node, at: path) { configuration.beat.enabled = value }
            },
            ConfigurationField(key: "timezone") { node, path, decoder, configuration in
                if let zone = decoder.timeZone(node, at: path) { configuration.beat.timezone = zone }
            },
            ConfigurationField(key: "state") { node, path, decoder, configuration in
                if let value = decoder.absolutePath(node, at: path) { configuration.beat.state = value }
            },
            ConfigurationField(key: "lock_timeout") { node, path, decoder, configuration in
                if let value = decoder.duration(node, at: path, allowsZero: false) {
                    if value < .seconds(2) {
                        decoder.report("expected at least 2s, so the holder can renew in time", at: node, keyPath: path)
                    } else {
                        configuration.beat.lockTimeout = value
                    }
                }
            },
            ConfigurationField(key: "lock_name") { node, path, decoder, configuration in
                if let value = decoder.text(node, at: path, expected: "a key or queue name"), !value.isEmpty {
                    configuration.beat.lockName = value
                }
            },
            ConfigurationField(key: "schedule", hasNamedEntries: true) { node, path, decoder, configuration in
                guard !node.isNull else { return }
                guard case .mapping(let mapping) = node else {
                    decoder.report("expected a mapping of entry names to entries", at: node, keyPath: path)
                    return
                }
                for (keyNode, value) in mapping {
                    guard case .scalar(let scalar) = keyNode, !keyNode.isNull, !scalar.string.isEmpty else {
                        decoder.report("expected an entry name", at: keyNode, keyPath: path)
                        continue
                    }
                    let name = scalar.string
                    var entry = Configuration.BeatEntry(name: name)
                    var schedules = 0
                    let entryPath = "\(path).\(name)"
                    let read = decoder.decodeMapping(
                        value,
                        at: entryPath,
                        expected: "a mapping of entry settings (\(beatEntryFields.map(\.key).joined(separator: ", ")))",
                        fields: beatEntryFields,
                        owner: keyNode,
                        into: &entry
                    )
                    if case .mapping(let pairs) = value {
                        let keys = pairs.compactMap { pair -> String? in
                            if case .scalar(let key) = pair.key { return key.string }
                            return nil
                        }
                        schedules = keys.filter { $0 == "every" || $0 == "cron" }.count
                    }
                    if read && schedules != 1 {
                        decoder.report(
                            schedules == 0
                                ? "missing schedule: give exactly one of \"every\" or \"cron\""
                                : "give exactly one of \"every\" or \"cron\", not both",
                            at: keyNode,
                            keyPath: entryPath
                        )
                        continue
                    }
                    if read { configuration.beat.schedule[name] = entry }
                }
            },
        ]
    )

    /// The keys of one `beat.schedule.<name>` entry, in documentation order.
    static let beatEntryFields: [ConfigurationField<Configuration.BeatEntry>] = [
        ConfigurationField(key: "task", isRequired: true) { node, path, decoder, entry in
            if let value = decoder.text(node, at: path, expected: "a task name"), !value.isEmpty { entry.task = value }
        },
        ConfigurationField(key: "every") { node, path, decoder, entry in
            if let value = decoder.duration(node, at: path, allowsZero: false) { entry.schedule = .interval(value) }
        },
        ConfigurationField(key: "cron") { node, path, decoder, entry in
            guard let text = decoder.text(node, at: path, expected: "a crontab expression such as \"*/5 * * * *\"")
            else { return }
            do {
                entry.schedule = .cron(try CronExpression(parsing: text))
            } catch {
                decoder.report("invalid cron expression: \(error)", at: node, keyPath: path)
            }
        },
        ConfigurationField(key: "timezone") { node, path, decoder, entry in
            if let zone = decoder.timeZone(node, at: path) { entry.timezone = zone }
        },
        ConfigurationField(key: "args") { node, path, decoder, entry in
            guard let value = decoder.json(node, at: path) else { return }
            guard case .array(let args) = value else {
                decoder.report("expected a list of arguments", at: node, keyPath: path)
                return
            }
            entry.args = args
        },
        ConfigurationField(key: "kwargs") { node, path, decoder, entry in
            guard let value = decoder.json(node, at: path) else { return }
            guard case .object(let kwargs) = value else {
                decoder.report("expected a mapping of keyword arguments", at: node, keyPath: path)
                return
            }
            entry.kwargs = kwargs
        },
        ConfigurationField(key: "queue") { node, path, decoder, entry in
            if let value = decoder.text(node, at: path, expected: "a queue name"), !value.isEmpty {
                entry.queue = value
            }
        },
        ConfigurationField(key: "routing_key") { node, path, decoder, entry in
            guard !node.isNull else { return }
            if let value = decoder.text(node, at: path, expected: "a routing key") { entry.routingKey = value }
        },
        ConfigurationField(key: "priority") { node, path, decoder, entry in
            guard !node.isNull else { return }
            if let value = decoder.integer(node, at: path, in: 0...255, expected: "an integer from 0 to 255") {
                entry.priority = value
            }
        },
        ConfigurationField(key: "expires") { node, path, decoder, entry in
            guard !node.isNull else { return }
            if let value = decoder.duration(node, at: path, allowsZero: false) { entry.expires = value }
        },
        ConfigurationField(key: "headers") { node, path, decoder, entry in
            guard let value = decoder.json(node, at: path) else { return }
            guard case .object(let headers) = value else {
                decoder.report("expected a mapping of header names to values", at: node, keyPath: path)
                return
            }
            entry.headers = headers
        },
        ConfigurationField(key: "catch_up") { node, path, decoder, entry in
            let names = Configuration.BeatEntry.CatchUp.allCases.map(\.rawValue)
            guard let text = decoder.text(node, at: path, expected: names.joined(separator: " or ")) else { return }
            if let value = Configuration.BeatEntry.CatchUp(rawValue: text) {
                entry.catchUp = value
            } else {
                decoder.report(
                    "expected \(names.joined(separator: " or ")), got \(text.debugDescription)",
                    at: node,
                    keyPath: path
                )
            }
        },
    ]

    /// `beat.schedule.<name>.task` and the other entry keys, for the documentation coverage tests.
    static var beatPatternKeyPaths: [String] {
        beatEntryFields.map { "beat.schedule.\(ConfigurationEntries.placeholder).\($0.key)" }
    }
}

extension ConfigurationDecoder {
    /// An IANA time zone name that the system's tzdata has.
    mutating func timeZone(_ node: YAMLNode, at keyPath: String) -> String? {
        guard let name = text(node, at: keyPath, expected: "an IANA time zone name such as Europe/Berlin") else {
            return nil
        }
        do {
            _ = try TimeZoneInfo.load(named: name)
            return name
        } catch {
            report(error.message, at: node, keyPath: keyPath)
            return nil
        }
    }

    /// Any YAML value as JSON (task arguments and headers): plain scalars typed the YAML 1.1 way.
    mutating func json(_ node: YAMLNode, at keyPath: String) -> JSONValue? {
        switch node {
        case .scalar(let scalar):
            if node.isNull { return .null }
            switch node.tag.rawValue {
            case YAMLTag.int.rawValue:
                if let value = Self.integerValue(scalar.string) { return .int(Int64(value)) }
            case YAMLTag.float.rawValue:
                if let value = Double(scalar.string.replacing("_", with: "")) { return .double(value) }
            case YAMLTag.bool.rawValue:
                return .bool(["y", "yes", "true", "on"].contains(scalar.string.lowercased()))
            default:
                return .string(scalar.string)
            }
            return .string(scalar.string)
        case .sequence(let sequence):
            var values: [JSONValue] = []
            for (index, item) in sequence.enumerated() {
                guard let value = json(item, at: "\(keyPath)[\(index)]") else { return nil }
                values.append(value)
            }
            return .array(values)
        case .mapping(let mapping):
            var object: OrderedDictionary<String, JSONValue> = [:]
            for (keyNode, value) in mapping {
                guard case .scalar(let key) = keyNode else {
                    report("expected a string key", at: keyNode, keyPath: keyPath)
                    return nil
                }
                guard let converted = json(value, at: "\(keyPath).\(key.string)") else { return nil }
                object[key.string] = converted
            }
            return .object(object)
        }
    }
}
