/// Walks a composed YAML node tree by hand, reading values into a `Configuration` and collecting every problem
/// with its position, instead of stopping at the first one the way `Decodable` does.
///
/// Scalars are interpreted from their source text and style rather than through YAML 1.1 type resolution alone:
/// string settings take a plain scalar's text verbatim (`hostname: no` is the string "no", not `false`), while
/// integer settings require a plain scalar that YAML reads as an integer (so `"4"`, `4.0` and `yes` are rejected).
struct ConfigurationDecoder {
    let file: String
    private(set) var diagnostics: [ConfigurationDiagnostic] = []
    /// Where each key that was read is written (`"broker.password_file"` → its key node's mark), for problems
    /// found after decoding, such as a password file that cannot be read.
    private(set) var keyMarks: [String: YAMLMark] = [:]

    init(file: String) {
        self.file = file
    }

    // MARK: - Reporting

    mutating func report(_ message: String, at node: YAMLNode?, keyPath: String?) {
        let mark = node?.mark
        diagnostics.append(
            ConfigurationDiagnostic(
                file: file,
                line: mark?.line,
                column: mark?.column,
                keyPath: keyPath,
                message: message
            )
        )
    }

    private mutating func expected(_ expectation: String, at node: YAMLNode, keyPath: String?) {
        report("expected \(expectation), got \(Self.describe(node))", at: node, keyPath: keyPath)
    }

    /// How a value is shown after "got": strings in double quotes, other scalars as written, collections by kind.
    static func describe(_ node: YAMLNode) -> String {
        switch node {
        case .scalar(let scalar):
            let tag = node.tag.rawValue
            if node.isPlain {
                if tag == YAMLTag.null.rawValue {
                    return scalar.string.isEmpty ? "nothing" : scalar.string
                }
                return tag == YAMLTag.str.rawValue ? quoted(scalar.string) : scalar.string
            }
            return quoted(scalar.string)
        case .sequence(let sequence):
            return sequence.isEmpty ? "an empty list" : "a list"
        case .mapping(let mapping):
            return mapping.isEmpty ? "an empty mapping" : "a mapping"
        }
    }

    /// Double-quoted with escapes, shortened when long, so any text fits on one diagnostic line.
    static func quoted(_ text: String) -> String {
        let limit = 80
        var result = "\""
        var count = 0
        for scalar in text.unicodeScalars {
            if count == limit {
                result += "…"
                break
            }
            count += 1
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case "\n": result += "\\n"
            case "\t": result += "\\t"
            case "\r": result += "\\r"
            default:
                if scalar.properties.generalCategory == .control {
                    result += "\\u{\(String(scalar.value, radix: 16))}"
                } else {
                    result.unicodeScalars.append(scalar)
                }
            }
        }
        return result + "\""
    }

    // MARK: - Document and sections

    mutating func decode(_ root: YAMLNode?) -> Configuration {
        var configuration = Configuration()
        // No document (empty file, only comments) or an explicitly empty one: all defaults.
        guard let root, !root.isNull else {
            return configuration
        }
        guard case .mapping(let mapping) = root else {
            let names = ConfigurationSchema.sections.map(\.name).joined(separator: ", ")
            expected("a mapping of configuration sections (\(names))", at: root, keyPath: nil)
            return configuration
        }
        let sectionNames = ConfigurationSchema.sections.map(\.name)
        for (keyNode, value) in mapping {
            guard let key = keyName(keyNode, parentPath: nil) else {
                continue
            }
            guard let section = ConfigurationSchema.section(named: key) else {
                reportUnknownKey(key, at: keyNode, parentPath: nil, validKeys: sectionNames)
                continue
            }
            decode(value, as: section, into: &configuration)
        }
        checkHardTimeLimits(configuration)
        return configuration
    }

    /// A hard time limit needs a process to kill: with the threads or solo pool, a task past it could only be
    /// abandoned while it keeps running, so a configured one is refused here rather than silently weakened.
    private mutating func checkHardTimeLimits(_ configuration: Configuration) {
        guard configuration.worker.pool.isInProcess else { return }
        var limited: [String] = []
        if configuration.taskDefaults.timeLimit != nil { limited.append("tasks.defaults.time_limit") }
        // An exec task's program is a process of its own, which its limit kills whatever the pool.
        for (name, settings) in configuration.taskSettings
        where settings.timeLimit != nil && configuration.tasks[name] == nil {
            limited.append("tasks.\(name).time_limit")
        }
        guard !limited.isEmpty else { return }
        let mark = keyMarks["worker.pool"]
        diagnostics.append(
            ConfigurationDiagnostic(
                file: file,
                line: mark?.line,
                column: mark?.column,
                keyPath: "worker.pool",
                message: "a hard time limit (\(limited.joined(separator: ", "))) needs worker.pool: prefork: the "
                    + "\(configuration.worker.pool.rawValue) pool runs tasks inside the consumer, where nothing can stop "
                    + "a task at its limit; use soft_time_limit (the task is asked to stop) or the prefork pool"
            )
        )
    }

    private mutating func decode(_ node: YAMLNode, as section: ConfigurationSection, into target: inout Configuration) {
        // `worker:` with every key commented out is a normal sight in an annotated file: all defaults (for `tasks:`,
        // no tasks).
        guard !node.isNull else {
            return
        }
        if let entries = section.entries {
            decodeEntries(node, as: section, entries, into: &target)
            return
        }
        decodeMapping(
            node,
            at: section.name,
            expected: "a mapping of \(section.contents)",
            fields: section.fields,
            owner: node,
            into: &target
        )
    }

    /// Reads the named entries of a section such as `tasks`: each key is a name chosen in the file.
    private mutating func decodeEntries(
        _ node: YAMLNode,
        as section: ConfigurationSection,
        _ entries: ConfigurationEntries,
        into target: inout Configuration
    ) {
        guard case .mapping(let mapping) = node else {
            expected("a mapping of \(section.contents)", at: node, keyPath: section.name)
            return
        }
        var firstLines: [String: Int] = [:]
        for (keyNode, value) in mapping {
            guard let name = keyName(keyNode, parentPath: section.name) else {
                continue
            }
            guard !keyNode.isNull, !name.isEmpty else {
                expected("a \(entries.noun) name", at: keyNode, keyPath: section.name)
                continue
            }
            // The composer only catches repeated keys with the same tag: a plain `yes:` (a boolean) and a quoted
            // "yes" (a string) are different keys to YAML, but the same name here.
            if let firstLine = firstLines[name] {
                report(
                    "duplicate key; already set on line \(firstLine)",
                    at: keyNode,
                    keyPath: "\(section.name).\(name)"
                )
                continue
            }
            firstLines[name] = keyNode.mark?.line ?? 0
            entries.decode(name, keyNode, value, "\(section.name).\(name)", &self, &target)
        }
    }

    /// Reads a mapping of `fields` at `keyPath` into `target`: unknown keys are reported with a suggestion, and
    /// missing required keys at `owner` (the key that names the mapping). Returns whether nothing was reported.
    @discardableResult
    mutating func decodeMapping<Target>(
        _ node: YAMLNode,
        at keyPath: String,
        expected expectation: String,
        fields: [ConfigurationField<Target>],
        owner: YAMLNode,
        into target: inout Target
    ) -> Bool {
        let reportedBefore = diagnostics.count
        guard case .mapping(let mapping) = node else {
            expected(expectation, at: node, keyPath: keyPath)
            return false
        }
        var present: Set<String> = []
        for (keyNode, value) in mapping {
            guard let key = keyName(keyNode, parentPath: keyPath) else {
                continue
            }
            guard let field = fields.first(where: { $0.key == key }) else {
                reportUnknownKey(key, at: keyNode, parentPath: keyPath, validKeys: fields.map(\.key))
                continue
            }
            present.insert(key)
            keyMarks["\(keyPath).\(key)"] = keyNode.mark
            field.decode(value, "\(keyPath).\(key)", &self, &target)
        }
        for field in fields where field.isRequired && !present.contains(field.key) {
            report("missing required key \(Self.quoted(field.key))", at: owner, keyPath: keyPath)
        }
        return diagnostics.count == reportedBefore
    }

    /// The text of a mapping key, or `nil` (after reporting) for keys that cannot name a setting.
    private mutating func keyName(_ node: YAMLNode, parentPath: String?) -> String? {
        guard case .scalar(let scalar) = node else {
            expected("a key name", at: node, keyPath: parentPath)
            return nil
        }
        if node.isPlain && node.tag.rawValue == YAMLTag.merge.rawValue {
            report(
                "merge keys (<<) are not supported; write the settings out",
                at: node,
                keyPath: parentPath.map { "\($0).<<" } ?? "<<"
            )
            return nil
        }
        return scalar.string
    }

    private mutating func reportUnknownKey(_ key: String, at node: YAMLNode, parentPath: String?, validKeys: [String]) {
        let keyPath = parentPath.map { "\($0).\(key)" } ?? key
        if let suggestion = Suggestion.closest(to: key, among: validKeys) {
            report("unknown key; did you mean \(suggestion)?", at: node, keyPath: keyPath)
            return
        }
        // A known key in the wrong place, e.g. `concurrency` at the top level instead of under `worker`, or `exec`
        // outside a task.
        let normalized = Suggestion.normalize(key)
        let elsewhere = (Configuration.knownKeyPaths + Configuration.patternKeyPaths).filter { path in
            path != keyPath && Suggestion.normalize(String(path.split(separator: ".").last ?? "")) == normalized
        }
        if !elsewhere.isEmpty {
            report("unknown key; did you mean \(Suggestion.list(elsewhere))?", at: node, keyPath: keyPath)
            return
        }
        report("unknown key; expected one of \(validKeys.joined(separator: ", "))", at: node, keyPath: keyPath)
    }

    // MARK: - Scalars

    /// The text of a scalar that is not null, verbatim (YAML 1.1 booleans and numbers included), or `nil` after
    /// reporting `expectation`.
    mutating func text(_ node: YAMLNode, at keyPath: String, expected expectation: String) -> String? {
        guard case .scalar(let scalar) = node, !node.isNull else {
            expected(expectation, at: node, keyPath: keyPath)
            return nil
        }
        return scalar.string
    }

    /// An integer within `range`, written the YAML 1.1 way (`8`, `1_000`, `0x10`, `0o17`, and `017` is octal).
    mutating func integer(
        _ node: YAMLNode,
        at keyPath: String,
        in range: ClosedRange<Int>,
        expected expectation: String
    ) -> Int? {
        guard case .scalar(let scalar) = node, node.isPlain, node.tag.rawValue == YAMLTag.int.rawValue else {
            var found = Self.describe(node)
            // A quoted "4" looks like a number in the message; say why it was not read as one.
            if case .scalar(let scalar) = node, !node.isPlain,
                [YAMLTag.int, YAMLTag.float].contains(YAMLImplicitTags.resolve(scalar.string))
            {
                found += " (a quoted string)"
            }
            report("expected \(expectation), got \(found)", at: node, keyPath: keyPath)
            return nil
        }
        let rangeDescription = "an integer from \(range.lowerBound) to \(range.upperBound)"
        guard let value = Self.integerValue(scalar.string) else {
            // Either sexagesimal (`1:30`, a YAML 1.1 curiosity not worth supporting) or too large for 64 bits.
            expected(scalar.string.contains(":") ? expectation : rangeDescription, at: node, keyPath: keyPath)
            return nil
        }
        guard range.contains(value) else {
            expected(rangeDescription, at: node, keyPath: keyPath)
            return nil
        }
        return value
    }

    /// The value of a YAML 1.1 integer literal (underscores, sign, `0x`, `0b`, `0o` and leading-zero octal).
    static func integerValue(_ literal: String) -> Int? {
        var text = Substring(literal.replacing("_", with: ""))
        var sign = ""
        if let first = text.first, first == "-" || first == "+" {
            sign = first == "-" ? "-" : ""
            text = text.dropFirst()
        }
        guard !text.isEmpty else {
            return nil
        }
        for (prefix, radix) in [("0x", 16), ("0b", 2), ("0o", 8)] where text.hasPrefix(prefix) {
            return Int(sign + text.dropFirst(2), radix: radix)
        }
        if text.count > 1 && text.hasPrefix("0") {
            return Int(sign + text.dropFirst(), radix: 8)
        }
        return Int(sign + text, radix: 10)
    }

    /// A non-negative duration (`30s`, `1h30m`, `1.5`), or a positive one when `allowsZero` is false.
    mutating func duration(_ node: YAMLNode, at keyPath: String, allowsZero: Bool) -> Duration? {
        let syntax = "a duration such as 30s, 5m or 1h30m"
        guard case .scalar(let scalar) = node, !node.isNull, node.tag.rawValue != YAMLTag.bool.rawValue else {
            expected(syntax, at: node, keyPath: keyPath)
            return nil
        }
        guard let value = Duration(configurationString: scalar.string) else {
            let trimmed = scalar.string.trimmingWhitespace()
            if trimmed.hasPrefix("-"), Duration(configurationString: String(trimmed.dropFirst())) != nil {
                expected(
                    allowsZero ? "a non-negative duration" : "a positive duration such as 30s",
                    at: node,
                    keyPath: keyPath
                )
            } else {
                expected(syntax, at: node, keyPath: keyPath)
            }
            return nil
        }
        guard allowsZero || value > .zero else {
            expected("a positive duration such as 30s", at: node, keyPath: keyPath)
            return nil
        }
        return value
    }

    /// A YAML 1.1 boolean written plain: `true`/`false`, or `yes`/`no`/`on`/`off`, each in lower case, capitalized
    /// or upper case. A quoted `"true"` or a number such as `1` is refused rather than guessed at: a switch that
    /// silently reads the wrong way is worse than an error.
    mutating func boolean(_ node: YAMLNode, at keyPath: String) -> Bool? {
        if case .scalar(let scalar) = node, node.isPlain, node.tag.rawValue == YAMLTag.bool.rawValue {
            switch scalar.string.lowercased() {
            case "true", "yes", "on": return true
            case "false", "no", "off": return false
            default: break
            }
        }
        var found = Self.describe(node)
        // A quoted "true" looks like a boolean in the message; say why it was not read as one.
        if case .scalar(let scalar) = node, !node.isPlain, YAMLImplicitTags.resolve(scalar.string) == .bool {
            found += " (a quoted string)"
        }
        report("expected true or false, got \(found)", at: node, keyPath: keyPath)
        return nil
    }

    // MARK: - Settings with their own syntax

    /// A URL whose scheme is one of `schemes`; `embedded` is accepted alone or as `embedded://`.
    mutating func url(_ node: YAMLNode, at keyPath: String, schemes: [String]) -> String? {
        let schemeList = Suggestion.list(schemes, quoted: false)
        let expectation = "a URL with scheme \(schemeList)"
        guard let text = text(node, at: keyPath, expected: expectation) else {
            return nil
        }
        let url = text.trimmingWhitespace()
        let scheme: String?
        if url.lowercased() == "embedded" {
            scheme = "embedded"
        } else if let range = url.firstRange(of: "://"), Self.isSchemeSyntax(url[..<range.lowerBound]) {
            scheme = url[..<range.lowerBound].lowercased()
        } else {
            scheme = nil
        }
        guard let scheme, schemes.contains(scheme) else {
            var message = "expected \(expectation), got \(Self.describe(node))"
            if let scheme, let suggestion = Suggestion.closest(to: scheme, among: schemes) {
                message += "; did you mean \(suggestion)?"
            }
            report(message, at: node, keyPath: keyPath)
            return nil
        }
        if scheme == "embedded" {
            // The daemon and swiftqctl recognise exactly `embedded`: normalise the spelling, and refuse an
            // address, which would otherwise pass here and fail at run time.
            guard url.lowercased() == "embedded" else {
                report("the embedded broker takes no address: write `embedded` alone", at: node, keyPath: keyPath)
                return nil
            }
            return "embedded"
        }
        return url
    }

    private static func isSchemeSyntax(_ text: Substring) -> Bool {
        guard let first = text.unicodeScalars.first, first.isASCII, first.properties.isAlphabetic else {
            return false
        }
        return text.unicodeScalars.allSatisfy { scalar in
            scalar.isASCII
                && (scalar.properties.isAlphabetic || ("0"..."9").contains(scalar)
                    || "+-.".unicodeScalars.contains(scalar))
        }
    }

    /// A Celery node name: any text without whitespace (placeholders are expanded later, at runtime).
    mutating func nodeName(_ node: YAMLNode, at keyPath: String) -> String? {
        let expectation = "a node name such as celery@%h"
        guard let name = text(node, at: keyPath, expected: expectation) else {
            return nil
        }
        guard !name.isEmpty, !name.unicodeScalars.contains(where: { $0.properties.isWhitespace }) else {
            expected("\(expectation) (not empty, no whitespace)", at: node, keyPath: keyPath)
            return nil
        }
        return name
    }

    /// At least one queue name, from a YAML list or a comma-separated string; names are trimmed, must not be empty
    /// and must not repeat.
    mutating func queues(_ node: YAMLNode, at keyPath: String) -> [String]? {
        guard let entries = listEntries(node, at: keyPath, of: "queue names") else {
            return nil
        }
        guard !entries.isEmpty else {
            expected("at least one queue", at: node, keyPath: keyPath)
            return nil
        }
        var valid = true
        for entry in entries where entry.text.isEmpty {
            report("expected a queue name, got \(entry.found)", at: entry.node, keyPath: entry.keyPath)
            valid = false
        }
        valid = reportDuplicates(entries.filter { !$0.text.isEmpty }) && valid
        return valid ? entries.map(\.text) : nil
    }

    /// Environment variable names, each a name (`APP_SETTING`) or a prefix ending in `*` (`APP_*`); may be empty.
    mutating func environmentNames(_ node: YAMLNode, at keyPath: String) -> [String]? {
        if node.isNull { return [] }
        guard let entries = listEntries(node, at: keyPath, of: "environment variable names") else { return nil }
        var valid = true
        for entry in entries where !Self.isEnvironmentPattern(entry.text) {
            report(
                "expected an environment variable name (letters, digits and _, not starting with a digit), "
                    + "optionally ending in * for a prefix, got \(entry.found)",
                at: entry.node,
                keyPath: entry.keyPath
            )
            valid = false
        }
        valid = reportDuplicates(entries) && valid
        return valid ? entries.map(\.text) : nil
    }

    static func isEnvironmentPattern(_ text: String) -> Bool {
        var name = Substring(text)
        if name.hasSuffix("*") { name = name.dropLast() }
        guard let first = name.utf8.first, !(UInt8(ascii: "0")...UInt8(ascii: "9")).contains(first) else {
            return false
        }
        return name.utf8.allSatisfy { byte in
            byte == UInt8(ascii: "_") || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
                || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
                || (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte)
        }
    }

    /// An absolute path without NUL characters (a file the daemon reads, such as a password file: a relative
    /// path would depend on the working directory, which is `/` under systemd).
    mutating func absolutePath(_ node: YAMLNode, at keyPath: String) -> String? {
        guard let path = text(node, at: keyPath, expected: "an absolute path") else {
            return nil
        }
        guard path.hasPrefix("/"), !path.utf8.contains(0) else {
            expected("an absolute path", at: node, keyPath: keyPath)
            return nil
        }
        return path
    }

    /// An absolute path that fits in `sockaddr_un.sun_path`.
    mutating func socketPath(_ node: YAMLNode, at keyPath: String) -> String? {
        guard let path = text(node, at: keyPath, expected: "an absolute path") else {
            return nil
        }
        guard path.hasPrefix("/") else {
            expected("an absolute path", at: node, keyPath: keyPath)
            return nil
        }
        let maximum = Configuration.Control.maximumSocketPathBytes
        guard path.utf8.count <= maximum, !path.utf8.contains(0) else {
            report(
                "expected a path of at most \(maximum) bytes (the limit of a Unix socket address), "
                    + "got \(path.utf8.count) bytes",
                at: node,
                keyPath: keyPath
            )
            return nil
        }
        return path
    }

    /// A program and its arguments, the argv it is started with: a YAML list (never a string split on spaces, which
    /// would bring a shell's quoting rules along) of non-empty strings taken verbatim. The program, the first item, is an
    /// absolute path or a bare command name to look up in `PATH`; a relative path would depend on the daemon's
    /// working directory. Every bad item is reported.
    mutating func argv(_ node: YAMLNode, at keyPath: String) -> [String]? {
        guard case .sequence(let sequence) = node else {
            expected("a list of the program and its arguments", at: node, keyPath: keyPath)
            return nil
        }
        guard !sequence.isEmpty else {
            expected("a list with at least the program to run", at: node, keyPath: keyPath)
            return nil
        }
        var argv: [String] = []
        for (index, item) in sequence.enumerated() {
            let itemPath = "\(keyPath)[\(index)]"
            guard case .scalar(let scalar) = item, !item.isNull else {
                expected("a string", at: item, keyPath: itemPath)
                continue
            }
            let argument = scalar.string
            if argument.isEmpty {
                expected("a non-empty string", at: item, keyPath: itemPath)
            } else if argument.utf8.contains(0) {
                // C strings end at the first NUL: the program would see a different argument.
                expected("a string without NUL characters", at: item, keyPath: itemPath)
            } else if index == 0 && argument.contains("/") && !argument.hasPrefix("/") {
                expected("an absolute path or a command name to look up in PATH", at: item, keyPath: itemPath)
            } else {
                argv.append(argument)
            }
        }
        return argv.count == sequence.count ? argv : nil
    }

    /// Permission bits, always read as octal as chmod does: `0660`, `660`, `"0660"`, `0o660` all mean rw-rw----.
    /// YAML integers in other bases (`0x1b0`) are taken at their value.
    mutating func fileMode(_ node: YAMLNode, at keyPath: String) -> UInt32? {
        let expectation = "an octal file mode from 0 to 0777 such as 0660"
        guard case .scalar(let scalar) = node, !node.isNull else {
            expected(expectation, at: node, keyPath: keyPath)
            return nil
        }
        var digits = Substring(scalar.string.trimmingWhitespace())
        if digits.hasPrefix("0o") || digits.hasPrefix("0O") {
            digits = digits.dropFirst(2)
        }
        let value: Int?
        if !digits.isEmpty, digits.count <= 12, digits.unicodeScalars.allSatisfy({ ("0"..."7").contains($0) }) {
            value = Int(digits, radix: 8)
        } else if node.isPlain && node.tag.rawValue == YAMLTag.int.rawValue {
            value = Self.integerValue(scalar.string)
        } else {
            value = nil
        }
        guard let value, value >= 0, value <= Int(Configuration.Control.modeRange.upperBound) else {
            expected(expectation, at: node, keyPath: keyPath)
            return nil
        }
        return UInt32(value)
    }

    enum PrincipalKind {
        case user
        case group

        var expectation: String {
            switch self {
            case .user: "a user name or numeric uid"
            case .group: "a group name or numeric gid"
            }
        }
    }

    /// A user or group written as a name or a decimal id, not yet resolved.
    enum Principal: Equatable {
        case id(UInt32)
        case name(String)
    }

    /// One user or group: all decimal digits is an id (0...4294967294; 4294967295 is `(uid_t)-1`, "no id"),
    /// anything else must be a plausible name (no whitespace, `:`, `/` or `,`, not starting with `-`).
    mutating func principal(_ node: YAMLNode, at keyPath: String, kind: PrincipalKind) -> Principal? {
        guard case .scalar = node, !node.isNull else {
            expected(kind.expectation, at: node, keyPath: keyPath)
            return nil
        }
        return principal(
            ListEntry(text: node.scalar?.string.trimmingWhitespace() ?? "", node: node, keyPath: keyPath),
            kind: kind
        )
    }

    /// Users or groups from a YAML list or a comma-separated string; null means an empty list.
    mutating func principals(_ node: YAMLNode, at keyPath: String, kind: PrincipalKind) -> [Principal]? {
        guard !node.isNull else {
            return []
        }
        let what = kind == .user ? "user names or uids" : "group names or gids"
        guard let entries = listEntries(node, at: keyPath, of: what) else {
            return nil
        }
        var valid = true
        var principals: [Principal] = []
        for entry in entries {
            if let principal = principal(entry, kind: kind) {
                principals.append(principal)
            } else {
                valid = false
            }
        }
        valid = reportDuplicates(entries) && valid
        return valid ? principals : nil
    }

    private mutating func principal(_ entry: ListEntry, kind: PrincipalKind) -> Principal? {
        let text = entry.text
        if !text.isEmpty, text.unicodeScalars.allSatisfy({ ("0"..."9").contains($0) }) {
            guard let id = UInt32(text), id != UInt32.max else {
                let idName = kind == .user ? "uid" : "gid"
                report(
                    "expected a \(idName) from 0 to \(UInt32.max - 1), got \(entry.found)",
                    at: entry.node,
                    keyPath: entry.keyPath
                )
                return nil
            }
            return .id(id)
        }
        // A YAML integer in another notation (`0x10`, `1_000`) is more likely a mistake than a name.
        let isOtherInteger = entry.isWholeNode && entry.node.isPlain && entry.node.tag.rawValue == YAMLTag.int.rawValue
        guard !isOtherInteger, Self.isPlausiblePrincipalName(text) else {
            report("expected \(kind.expectation), got \(entry.found)", at: entry.node, keyPath: entry.keyPath)
            return nil
        }
        return .name(text)
    }

    static func isPlausiblePrincipalName(_ name: String) -> Bool {
        guard !name.isEmpty, !name.hasPrefix("-"), name != ".", name != ".." else {
            return false
        }
        return !name.unicodeScalars.contains { scalar in
            scalar.properties.isWhitespace || scalar.properties.generalCategory == .control
                || ":/,".unicodeScalars.contains(scalar)
        }
    }

    /// The log level name, case-insensitively.
    mutating func logLevel(_ node: YAMLNode, at keyPath: String) -> LogLevel? {
        let names = LogLevel.allCases.map(\.rawValue)
        let expectation = "one of \(names.joined(separator: ", "))"
        guard let text = text(node, at: keyPath, expected: expectation) else {
            return nil
        }
        guard let level = LogLevel(rawValue: text.trimmingWhitespace().lowercased()) else {
            var message = "expected \(expectation), got \(Self.describe(node))"
            if let suggestion = Suggestion.closest(to: text, among: names) {
                message += "; did you mean \(suggestion)?"
            }
            report(message, at: node, keyPath: keyPath)
            return nil
        }
        return level
    }

    // MARK: - Lists

    /// One item of a list setting, with where to point at when it is wrong.
    struct ListEntry {
        /// The item, trimmed.
        var text: String
        /// The item's own node, or the whole comma-separated string's node.
        var node: YAMLNode
        /// `section.key[index]`.
        var keyPath: String
        /// Whether `node` is the item alone (a YAML list item or an uncut scalar) rather than a string it was
        /// cut from.
        var isWholeNode = true

        /// The item as shown after "got".
        var found: String {
            isWholeNode ? ConfigurationDecoder.describe(node) : ConfigurationDecoder.quoted(text)
        }
    }

    /// The items of a YAML list of scalars, or of a comma-separated scalar (`celery, high`), trimmed and numbered
    /// in order. `nil` after reporting when the node or an item is not a scalar.
    private mutating func listEntries(_ node: YAMLNode, at keyPath: String, of what: String) -> [ListEntry]? {
        let expectation = "a list or a comma-separated string of \(what)"
        switch node {
        case .sequence(let sequence):
            var entries: [ListEntry] = []
            var valid = true
            for (index, item) in sequence.enumerated() {
                let itemPath = "\(keyPath)[\(index)]"
                guard case .scalar(let scalar) = item, !item.isNull else {
                    expected("a string", at: item, keyPath: itemPath)
                    valid = false
                    continue
                }
                entries.append(ListEntry(text: scalar.string.trimmingWhitespace(), node: item, keyPath: itemPath))
            }
            return valid ? entries : nil
        case .scalar(let scalar) where !node.isNull:
            let parts = scalar.string.split(separator: ",", omittingEmptySubsequences: false)
            return parts.enumerated().map { index, part in
                ListEntry(
                    text: String(part).trimmingWhitespace(),
                    node: node,
                    keyPath: "\(keyPath)[\(index)]",
                    isWholeNode: parts.count == 1
                )
            }
        default:
            expected(expectation, at: node, keyPath: keyPath)
            return nil
        }
    }

    /// Reports each entry whose text repeats an earlier one; returns whether there were none.
    private mutating func reportDuplicates(_ entries: [ListEntry]) -> Bool {
        var firstPaths: [String: String] = [:]
        var unique = true
        for entry in entries {
            if let first = firstPaths[entry.text] {
                report(
                    "\(Self.quoted(entry.text)) is listed twice (first as \(first))",
                    at: entry.node,
                    keyPath: entry.keyPath
                )
                unique = false
            } else {
                firstPaths[entry.text] = entry.keyPath
            }
        }
        return unique
    }
}

extension YAMLNode {
    /// Null in YAML terms: `~`, `null` or nothing at all, when written plain.
    var isNull: Bool {
        guard case .scalar = self else {
            return false
        }
        return isPlain && tag.rawValue == YAMLTag.null.rawValue
    }

    /// A plain (unquoted, non-block) scalar: the only style YAML resolves to numbers, booleans and null.
    var isPlain: Bool {
        guard case .scalar(let scalar) = self else {
            return false
        }
        return scalar.style == .plain
    }
}

extension UserRef {
    init(_ principal: ConfigurationDecoder.Principal) {
        switch principal {
        case .id(let id): self = .id(id)
        case .name(let name): self = .name(name)
        }
    }
}

extension GroupRef {
    init(_ principal: ConfigurationDecoder.Principal) {
        switch principal {
        case .id(let id): self = .id(id)
        case .name(let name): self = .name(name)
        }
    }
}
