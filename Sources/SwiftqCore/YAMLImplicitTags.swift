/// YAML 1.1 implicit typing of plain scalars (`5` is an int, `yes` a bool, `~` null…), decided by hand-written
/// matchers that give exactly the tags of Yams' `Resolver.default` (the configuration was read with Yams before).
///
/// Why by hand: Yams' rules were `NSRegularExpression`s, and the first match compiled seven ICU regular
/// expressions, touching about 2 MiB of ICU code and data in every process that reads the configuration. The
/// rules are small fixed patterns; matching them directly costs nothing at start. A unit test pins the tags of
/// many generated strings, recorded from `Resolver.default` (Tests/SwiftqCoreTests/Fixtures/yaml-implicit-tags).
enum YAMLImplicitTags {
    /// The tag a plain scalar with this text resolves to, in Yams' rule order: bool, int, float, merge, null,
    /// timestamp, value; otherwise str.
    static func resolve(_ string: String) -> YAMLTag {
        var scalars = Array(string.unicodeScalars)
        // ICU's `$` also matches before one line terminator that ends the input (`\r\n` counts as one). No rule
        // matches a terminator itself, so matching the text without it decides.
        if scalars.count >= 2 && scalars[scalars.count - 2] == "\r" && scalars[scalars.count - 1] == "\n" {
            scalars.removeLast(2)
        } else if let last = scalars.last, lineTerminators.contains(last) {
            scalars.removeLast()
        }
        var text = Text(scalars)
        if booleans.contains(String(String.UnicodeScalarView(scalars))) { return .bool }
        if text.isInteger() { return .int }
        if text.isFloat() { return .float }
        if scalars == ["<", "<"] { return .merge }
        if nulls.contains(String(String.UnicodeScalarView(scalars))) { return .null }
        if text.isTimestamp() { return .timestamp }
        if scalars == ["="] { return .value }
        return .str
    }

    private static let lineTerminators: Set<Unicode.Scalar> = [
        "\n", "\u{0B}", "\u{0C}", "\r", "\u{85}", "\u{2028}", "\u{2029}",
    ]
    private static let booleans: Set<String> = [
        "yes", "Yes", "YES", "no", "No", "NO", "true", "True", "TRUE", "false", "False", "FALSE",
        "on", "On", "ON", "off", "Off", "OFF",
    ]
    private static let nulls: Set<String> = ["~", "null", "Null", "NULL", ""]

    /// A cursor over the scalar's text; each `is…` method tries the alternatives of one rule, anchored at both ends.
    private struct Text {
        let scalars: [Unicode.Scalar]
        var position = 0

        init(_ scalars: [Unicode.Scalar]) { self.scalars = scalars }

        var atEnd: Bool { position == scalars.count }

        mutating func take(_ scalar: Unicode.Scalar) -> Bool {
            guard position < scalars.count, scalars[position] == scalar else { return false }
            position += 1
            return true
        }

        mutating func take(where predicate: (Unicode.Scalar) -> Bool) -> Bool {
            guard position < scalars.count, predicate(scalars[position]) else { return false }
            position += 1
            return true
        }

        /// Takes as many as match (at most `limit`); returns how many.
        @discardableResult
        mutating func takeRun(limit: Int = .max, where predicate: (Unicode.Scalar) -> Bool) -> Int {
            var count = 0
            while count < limit && take(where: predicate) { count += 1 }
            return count
        }

        mutating func takeSign() { _ = take("-") || take("+") }

        mutating func take(anyOf words: [String]) -> Bool {
            for word in words {
                let wordScalars = Array(word.unicodeScalars)
                let end = position + wordScalars.count
                if end <= scalars.count && Array(scalars[position..<end]) == wordScalars {
                    position = end
                    return true
                }
            }
            return false
        }

        /// `(?::[0-5]?[0-9])+`: base-60 groups. Deterministic: what follows a group is `:`, `.` or the end, never a
        /// digit, so a group takes two digits whenever it can.
        mutating func takeSexagesimalGroups() -> Bool {
            var groups = 0
            while position < scalars.count && scalars[position] == ":" {
                let start = position
                position += 1
                if take(where: \.isZeroToFive) && take(where: \.isDigit) {
                    groups += 1
                    continue
                }
                position = start + 1
                guard take(where: \.isDigit) else {
                    position = start
                    break
                }
                groups += 1
            }
            return groups > 0
        }

        /// Runs `attempt` from the start; true when it matches the whole text.
        mutating func matches(_ attempt: (inout Text) -> Bool) -> Bool {
            position = 0
            return attempt(&self) && atEnd
        }

        mutating func isInteger() -> Bool {
            matches { text in  // [-+]?0b[0-1_]+
                text.takeSign()
                return text.take("0") && text.take("b") && text.takeRun(where: \.isBinaryOrUnderscore) > 0
            }
                || matches { text in  // [-+]?0o?[0-7_]+
                    text.takeSign()
                    guard text.take("0") else { return false }
                    _ = text.take("o")
                    return text.takeRun(where: \.isOctalOrUnderscore) > 0
                }
                || matches { text in  // [-+]?(?:0|[1-9][0-9_]*)
                    text.takeSign()
                    if text.take("0") { return true }
                    guard text.take(where: \.isOneToNine) else { return false }
                    text.takeRun(where: \.isDigitOrUnderscore)
                    return true
                }
                || matches { text in  // [-+]?0x[0-9a-fA-F_]+
                    text.takeSign()
                    return text.take("0") && text.take("x") && text.takeRun(where: \.isHexOrUnderscore) > 0
                }
                || matches { text in  // [-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+
                    text.takeSign()
                    guard text.take(where: \.isOneToNine) else { return false }
                    text.takeRun(where: \.isDigitOrUnderscore)
                    return text.takeSexagesimalGroups()
                }
        }

        mutating func isFloat() -> Bool {
            matches { text in  // [-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)?
                text.takeSign()
                guard text.take(where: \.isDigit) else { return false }
                text.takeRun(where: \.isDigitOrUnderscore)
                if text.take(".") { text.takeRun(where: \.isDigitOrUnderscore) }
                let beforeExponent = text.position
                if text.take("e") || text.take("E") {
                    text.takeSign()
                    if text.takeRun(where: \.isDigit) == 0 { text.position = beforeExponent }
                }
                return true
            }
                || matches { text in  // \.[0-9_]+(?:[eE][-+][0-9]+)?
                    guard text.take("."), text.takeRun(where: \.isDigitOrUnderscore) > 0 else { return false }
                    let beforeExponent = text.position
                    if text.take("e") || text.take("E") {
                        if !(text.take("-") || text.take("+")) || text.takeRun(where: \.isDigit) == 0 {
                            text.position = beforeExponent
                        }
                    }
                    return true
                }
                || matches { text in  // [-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
                    text.takeSign()
                    guard text.take(where: \.isDigit) else { return false }
                    text.takeRun(where: \.isDigitOrUnderscore)
                    guard text.takeSexagesimalGroups(), text.take(".") else { return false }
                    text.takeRun(where: \.isDigitOrUnderscore)
                    return true
                }
                || matches { text in  // [-+]?\.(?:inf|Inf|INF)
                    text.takeSign()
                    return text.take(".") && text.take(anyOf: ["inf", "Inf", "INF"])
                }
                || matches { text in  // \.(?:nan|NaN|NAN)
                    text.take(".") && text.take(anyOf: ["nan", "NaN", "NAN"])
                }
        }

        mutating func isTimestamp() -> Bool {
            matches { text in  // [0-9]{4}-[0-9]{2}-[0-9]{2}
                text.takeRun(limit: 4, where: \.isDigit) == 4 && text.take("-")
                    && text.takeRun(limit: 2, where: \.isDigit) == 2 && text.take("-")
                    && text.takeRun(limit: 2, where: \.isDigit) == 2
            }
                || matches { text in
                    // [0-9]{4}-[0-9]{1,2}-[0-9]{1,2}(?:[Tt]|[ \t]+)[0-9]{1,2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]*)?
                    // (?:[ \t]*(?:Z|[-+][0-9]{1,2}(?::[0-9]{2})?))?
                    guard text.takeRun(limit: 4, where: \.isDigit) == 4, text.take("-"),
                        text.takeRun(limit: 2, where: \.isDigit) > 0, text.take("-"),
                        text.takeRun(limit: 2, where: \.isDigit) > 0
                    else { return false }
                    guard text.take("T") || text.take("t") || text.takeRun(where: \.isBlank) > 0 else { return false }
                    guard text.takeRun(limit: 2, where: \.isDigit) > 0, text.take(":"),
                        text.takeRun(limit: 2, where: \.isDigit) == 2, text.take(":"),
                        text.takeRun(limit: 2, where: \.isDigit) == 2
                    else { return false }
                    if text.take(".") { text.takeRun(where: \.isDigit) }
                    let beforeZone = text.position
                    text.takeRun(where: \.isBlank)
                    if text.take("Z") { return true }
                    if text.take("-") || text.take("+") {
                        guard text.takeRun(limit: 2, where: \.isDigit) > 0 else {
                            text.position = beforeZone
                            return true
                        }
                        let beforeMinutes = text.position
                        if !(text.take(":") && text.takeRun(limit: 2, where: \.isDigit) == 2) {
                            text.position = beforeMinutes
                        }
                        return true
                    }
                    text.position = beforeZone
                    return true
                }
        }
    }
}

extension Unicode.Scalar {
    fileprivate var isDigit: Bool { ("0"..."9").contains(self) }
    fileprivate var isOneToNine: Bool { ("1"..."9").contains(self) }
    fileprivate var isZeroToFive: Bool { ("0"..."5").contains(self) }
    fileprivate var isDigitOrUnderscore: Bool { isDigit || self == "_" }
    fileprivate var isBinaryOrUnderscore: Bool { self == "0" || self == "1" || self == "_" }
    fileprivate var isOctalOrUnderscore: Bool { ("0"..."7").contains(self) || self == "_" }
    fileprivate var isHexOrUnderscore: Bool {
        isDigitOrUnderscore || ("a"..."f").contains(self) || ("A"..."F").contains(self)
    }
    fileprivate var isBlank: Bool { self == " " || self == "\t" }
}
