extension Duration {
    /// Parses the duration syntax of the configuration file, so timeouts read the way people say them.
    ///
    /// Accepted: one or more `<number><unit>` components with units `h`, `m`, `s`, `ms`, largest first and each at
    /// most once (`30s`, `5m`, `1h30m`, `2m30s`, `500ms`, `1.5s`), or a bare number of seconds (`30`, `1.5`).
    /// Numbers are decimal, with an optional fraction; the result is exact to the nanosecond (finer digits are
    /// truncated). Signs, spaces inside the text, other units and values beyond ±292 years are rejected (`nil`).
    /// Leading and trailing whitespace is ignored.
    public init?(configurationString text: String) {
        guard let nanoseconds = DurationSyntax.nanoseconds(in: text) else {
            return nil
        }
        self = .nanoseconds(nanoseconds)
    }

    /// The shortest spelling `init(configurationString:)` reads back as the same value (to the nanosecond), as
    /// used in error messages and generated documentation: `30s`, `1m30s`, `1.5s`, `500ms`, `0s`.
    public var configurationString: String {
        let (seconds, attoseconds) = components
        let total = Int128(seconds) * 1_000_000_000 + Int128(attoseconds / 1_000_000_000)
        return (total < 0 ? "-" : "") + DurationSyntax.render(nanoseconds: total.magnitude)
    }
}

/// The grammar behind `Duration(configurationString:)`, kept apart so the public surface stays two members.
enum DurationSyntax {
    /// Units from largest to smallest; a component's unit must come strictly after the previous one's.
    private static let units: [(suffix: String, nanoseconds: Int128)] = [
        ("h", 3_600_000_000_000),
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
    ]

    /// More digits than this in one number cannot fit in 292 years anyway; the cap keeps `Int128` math safe.
    private static let maximumDigits = 20

    static func nanoseconds(in text: String) -> Int64? {
        let characters = Array(text.trimmingWhitespace().unicodeScalars)
        guard !characters.isEmpty else {
            return nil
        }
        var index = 0
        var total: Int128 = 0
        var lastUnit = -1
        while index < characters.count {
            guard let (whole, fraction, fractionScale) = number(in: characters, at: &index) else {
                return nil
            }
            let unit: Int
            if index == characters.count && lastUnit == -1 {
                unit = 2  // a bare number: seconds
            } else {
                guard let found = self.unit(in: characters, at: &index), found > lastUnit else {
                    return nil
                }
                unit = found
            }
            lastUnit = unit
            let scale = units[unit].nanoseconds
            total += whole * scale + fraction * scale / fractionScale
            guard total <= Int128(Int64.max) else {
                return nil
            }
        }
        return Int64(total)
    }

    /// Reads `digits[.digits]` at `index`; returns the whole part, the fraction digits as an integer and the
    /// fraction's scale (10^number of fraction digits).
    private static func number(
        in characters: [Unicode.Scalar],
        at index: inout Int
    ) -> (Int128, Int128, Int128)? {
        guard let whole = digits(in: characters, at: &index) else {
            return nil
        }
        guard index < characters.count, characters[index] == "." else {
            return (whole.value, 0, 1)
        }
        index += 1
        guard let fraction = digits(in: characters, at: &index) else {
            return nil
        }
        return (whole.value, fraction.value, fraction.scale)
    }

    private static func digits(in characters: [Unicode.Scalar], at index: inout Int) -> (value: Int128, scale: Int128)?
    {
        var value: Int128 = 0
        var scale: Int128 = 1
        var count = 0
        while index < characters.count, ("0"..."9").contains(characters[index]) {
            let digit = Int128(characters[index].value - ("0" as Unicode.Scalar).value)
            count += 1
            guard count <= maximumDigits else {
                return nil
            }
            value = value * 10 + digit
            scale *= 10
            index += 1
        }
        return count == 0 ? nil : (value, scale)
    }

    /// Reads the longest unit suffix at `index` and returns its position in `units`.
    private static func unit(in characters: [Unicode.Scalar], at index: inout Int) -> Int? {
        var end = index
        while end < characters.count, characters[end].properties.isAlphabetic {
            end += 1
        }
        let suffix = String(String.UnicodeScalarView(characters[index..<end]))
        guard let position = units.firstIndex(where: { $0.suffix == suffix }) else {
            return nil
        }
        index = end
        return position
    }

    static func render(nanoseconds: UInt128) -> String {
        guard nanoseconds > 0 else {
            return "0s"
        }
        let hours = nanoseconds / 3_600_000_000_000
        let minutes = nanoseconds / 60_000_000_000 % 60
        let subMinute = nanoseconds % 60_000_000_000
        var text = ""
        if hours > 0 {
            text += "\(hours)h"
        }
        if minutes > 0 {
            text += "\(minutes)m"
        }
        guard subMinute > 0 else {
            return text
        }
        let seconds = subMinute / 1_000_000_000
        let fraction = subMinute % 1_000_000_000
        if fraction == 0 {
            return text + "\(seconds)s"
        }
        if seconds == 0 && fraction % 1_000_000 == 0 {
            return text + "\(fraction / 1_000_000)ms"
        }
        var fractionDigits = String(fraction)
        fractionDigits = String(repeating: "0", count: 9 - fractionDigits.count) + fractionDigits
        while fractionDigits.hasSuffix("0") {
            fractionDigits.removeLast()
        }
        return text + "\(seconds).\(fractionDigits)s"
    }
}
