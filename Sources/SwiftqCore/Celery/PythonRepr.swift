import OrderedCollections

/// The text Python Celery puts in the `argsrepr` and `kwargsrepr` headers (protocol.rst, "argsrepr";
/// celery-wire-protocol.md §1.2) and shows in events, logs and Flower.
///
/// Celery does not use the builtin `repr()` there but `celery.utils.saferepr.saferepr(value, 1024, maxlevels=3)`
/// (`celery/app/amqp.py`, `as_task_v2`), and this type reproduces that function token for token, because its output
/// differs from `repr()` in ways a reader sees:
///
/// - strings are always quoted with `'`, and only `'` is escaped (`\'`): `"it's"` becomes `'it\'s'`, but a newline
///   or a backslash is written as is, where `repr()` would write `\n` or `\\`;
/// - containers nested deeper than `maxLevels` are written `[...]` or `{...}`;
/// - output is cut after about `limit` characters: a long string is cut at its last space within the budget and
///   gets `...`, a container stops with `, ...`, and the open brackets are closed.
///
/// Everything else is as `repr()`: `None`, `True`, `False`, `[1, 'a']`, `{'k': None}`, ints of any size, and floats
/// in Python's shortest form (`1e+16`, `1e-05`, `0.1`, `5.0`, `nan`, `inf`). Lengths are counted in Unicode scalars,
/// as Python counts `str` length in code points.
public enum PythonRepr {
    /// `saferepr(value, limit, maxlevels=maxLevels)`: a JSON array is rendered as a Python list, an object as a dict.
    /// `limit: nil` means no limit.
    public static func repr(_ value: JSONValue, limit: Int? = 1024, maxLevels: Int = 3) -> String {
        if let top = container(value) {
            return render(top, limit: limit, maxLevels: maxLevels)
        }
        // A lone scalar: one token, truncated to the limit like any other (saferepr gives up on a limit of 0 or less).
        if let limit, limit <= 0 { return ", ..." }
        return scalar(value, budget: limit)
    }

    /// `saferepr(tuple(args), limit, maxlevels=maxLevels)`: the positional arguments as the tuple Python's
    /// `apply_async(args=(2, 3))` and `delay(2, 3)` send, `(2, 3)`, `(2,)` or `()`.
    public static func argsRepr(_ args: [JSONValue], limit: Int? = 1024, maxLevels: Int = 3) -> String {
        let end = args.count == 1 ? ",)" : ")"
        return render(
            Container(start: "(", end: end, children: .elements(args, next: 0)),
            limit: limit,
            maxLevels: maxLevels
        )
    }

    /// A piece of `saferepr`'s token stream (`_literal`, `_key` and plain values in `celery/utils/saferepr.py`).
    private enum Token {
        /// Punctuation. `direction` is +1 for an opening bracket and -1 for a closing one; `truncates` is true for
        /// the separators, which are not replayed when closing brackets after a cut.
        case literal(String, truncates: Bool, direction: Int)
        /// A dict key.
        case key(String)
        /// A value not yet expanded.
        case value(JSONValue)
        /// The children of a container from `next` on, expanded one at a time (Python's stream is lazy too, so a
        /// huge list costs no more than the part that fits the limit).
        case elements([JSONValue], next: Int)
        /// The members of a dict from `next` on.
        case members(OrderedDictionary<String, JSONValue>, next: Int)
    }

    /// A container's brackets and its children.
    private struct Container {
        var start: String
        var end: String
        var children: Token
    }

    private static let separator = Token.literal(", ", truncates: true, direction: 0)

    /// `_saferepr` driving `reprstream`: `pending` is the work list, next token last.
    private static func render(_ top: Container, limit: Int?, maxLevels: Int) -> String {
        var pending: [Token] = []
        push(top, onto: &pending)
        var output = ""
        var budget = limit
        var level = 0
        var wasCut = false
        while let token = pending.popLast() {
            switch token {
            case .elements(let elements, let next):
                guard next < elements.count else { continue }
                pending.append(.elements(elements, next: next + 1))
                pending.append(.value(elements[next]))
                if next > 0 { pending.append(separator) }
                continue
            case .members(let members, let next):
                guard next < members.count else { continue }
                let member = members.elements[next]
                pending.append(.members(members, next: next + 1))
                pending.append(.value(member.value))
                pending.append(.literal(": ", truncates: true, direction: 0))
                pending.append(.key(member.key))
                if next > 0 { pending.append(separator) }
                continue
            case .value(let value):
                // reprstream expands a container into its brackets and children before anything is written, so the
                // budget check below sees the opening bracket.
                if let container = container(value) {
                    if maxLevels > 0 && level >= maxLevels {
                        pending.append(
                            .literal(container.start + "..." + container.end, truncates: false, direction: 0)
                        )
                    } else {
                        push(container, onto: &pending)
                    }
                    continue
                }
            case .literal(_, _, let direction):
                level += direction
            case .key:
                break
            }
            if let remaining = budget, remaining <= 0 {
                // Out of budget: closing brackets still pass, anything else ends the output.
                if case .literal(let value, _, let direction) = token, direction < 0 {
                    output += value
                    continue
                }
                pending.append(token)
                wasCut = true
                break
            }
            let text: String
            switch token {
            case .literal(let value, _, _): text = value
            case .key(let key): text = quoted(key, budget: budget)
            case .value(let value): text = scalar(value, budget: budget)
            case .elements, .members: continue
            }
            output += text
            if let remaining = budget {
                budget = remaining - text.unicodeScalars.count
            }
        }
        guard wasCut else { return output }
        // "..." in place of the rest, then close the brackets still open, innermost first. Only brackets of
        // containers already expanded count; separators and children not yet expanded are skipped.
        output += ", ..."
        var depth = 0
        for token in pending.reversed() {
            if case .literal(let value, false, let direction) = token {
                depth += direction
                if depth < 0 {
                    depth = 0
                    output += value
                }
            }
        }
        return output
    }

    private static func push(_ container: Container, onto pending: inout [Token]) {
        pending.append(.literal(container.end, truncates: false, direction: -1))
        pending.append(container.children)
        pending.append(.literal(container.start, truncates: false, direction: 1))
    }

    /// The brackets and children of a list or dict; `nil` for other values.
    private static func container(_ value: JSONValue) -> Container? {
        switch value {
        case .array(let elements): return Container(start: "[", end: "]", children: .elements(elements, next: 0))
        case .object(let members): return Container(start: "{", end: "}", children: .members(members, next: 0))
        default: return nil
        }
    }

    /// `_format_chars`: the string truncated to the budget, `'` escaped, in single quotes.
    private static func quoted(_ string: String, budget: Int?) -> String {
        let text = truncate(string, budget)
        // Most strings hold no quote: no generic `replacing` (a hot spot of every task-succeeded event's result).
        guard text.utf8.contains(UInt8(ascii: "'")) else { return "'" + text + "'" }
        return "'" + text.replacing("'", with: "\\'") + "'"
    }

    /// `str(value)` of a number, `repr` of `None`, then truncated to the budget like any plain token.
    private static func scalar(_ value: JSONValue, budget: Int?) -> String {
        switch value {
        case .null: return truncate("None", budget)
        case .bool(let flag): return truncate(flag ? "True" : "False", budget)
        case .int(let integer): return truncate(String(integer), budget)
        case .bigInt(let digits): return truncate(digits, budget)
        case .double(let number): return truncate(pythonFloat(number), budget)
        case .string(let string): return quoted(string, budget: budget)
        case .array, .object: return ""  // containers are expanded by the caller
        }
    }

    /// `celery.utils.text.truncate`: at or over `limit` scalars, keep the first `limit`, drop from the last space
    /// on, and add `...`. A zero or absent limit means no truncation.
    private static func truncate(_ string: String, _ limit: Int?) -> String {
        guard let limit, limit != 0 else { return string }
        // Fewer bytes than the limit: fewer scalars too, without counting them.
        guard string.utf8.count >= limit else { return string }
        let scalars = string.unicodeScalars
        guard scalars.count >= limit else { return string }
        var kept = String.UnicodeScalarView(scalars.prefix(limit))
        if let lastSpace = kept.lastIndex(of: " ") {
            kept = String.UnicodeScalarView(kept[..<lastSpace])
        }
        return String(kept) + "..."
    }

    /// Python's `repr(float)`: the shortest digits that round-trip (the same digits Swift chooses), written in fixed
    /// notation when the decimal exponent is in -4...15 and as `d.ddde±XX` otherwise.
    static func pythonFloat(_ value: Double) -> String {
        if value.isNaN { return "nan" }
        if value.isInfinite { return value < 0 ? "-inf" : "inf" }
        // Swift's description is e.g. "1.5e+16", "1e-05", "0.0001" or "123.25": read its digits and exponent.
        var text = value.description
        var sign = ""
        if text.hasPrefix("-") {
            sign = "-"
            text.removeFirst()
        }
        var mantissa = Substring(text)
        var exponent = 0
        if let e = text.firstIndex(where: { $0 == "e" || $0 == "E" }) {
            mantissa = text[..<e]
            exponent = Int(text[text.index(after: e)...]) ?? 0
        }
        var digits = ""
        var pointPosition = mantissa.count  // digits before the point
        if let point = mantissa.firstIndex(of: ".") {
            pointPosition = mantissa.distance(from: mantissa.startIndex, to: point)
            digits = String(mantissa[..<point]) + String(mantissa[mantissa.index(after: point)...])
        } else {
            digits = String(mantissa)
        }
        // Normalize to digits d1 d2 ... with value 0.d1d2... * 10^decimalPoint, without leading or trailing zeros.
        var decimalPoint = pointPosition + exponent
        while digits.count > 1, digits.first == "0" {
            digits.removeFirst()
            decimalPoint -= 1
        }
        while digits.count > 1, digits.last == "0" {
            digits.removeLast()
        }
        if digits == "0" { return sign + "0.0" }

        let scientificExponent = decimalPoint - 1
        if scientificExponent < -4 || scientificExponent >= 16 {
            var result = sign + String(digits.first!)
            if digits.count > 1 { result += "." + digits.dropFirst() }
            let magnitude = String(abs(scientificExponent))
            result += (scientificExponent < 0 ? "e-" : "e+") + (magnitude.count < 2 ? "0" + magnitude : magnitude)
            return result
        }
        if decimalPoint <= 0 {
            return sign + "0." + String(repeating: "0", count: -decimalPoint) + digits
        }
        if decimalPoint >= digits.count {
            return sign + digits + String(repeating: "0", count: decimalPoint - digits.count) + ".0"
        }
        let split = digits.index(digits.startIndex, offsetBy: decimalPoint)
        return sign + digits[..<split] + "." + digits[split...]
    }
}
