#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// An instant as Celery writes it on the wire: the `eta` and `expires` headers (protocol.rst, "eta", "expires";
/// celery-wire-protocol.md §1.4) and the result meta's `date_done` (§3.2).
///
/// Python writes `datetime.isoformat()` of an aware UTC time, `2026-11-21T22:23:12.185780+00:00`, and reads with
/// `dateutil.isoparse`. ``init(iso8601:)`` accepts what `isoparse` accepts in the extended (punctuated) form:
///
/// - a date alone (`2026-11-21`, midnight), or a date, one separator character (`T` from Python; `isoparse`
///   takes any character that is not a digit, and so does this) and `HH`, `HH:MM` or `HH:MM:SS`; `24:00:00` is
///   midnight of the next day;
/// - a fraction of the seconds after `.` or `,` with any number of digits, truncated to microseconds as `isoparse`
///   does;
/// - `Z`/`z`, `±HH`, `±HHMM` or `±HH:MM` as the offset. A *naive* time (no offset) is taken as UTC:
///   Python reads it in the app's `timezone`, which is UTC unless configured otherwise, and swiftq assumes UTC.
///
/// ``iso8601`` writes what Python's `isoformat()` writes for the same instant in UTC, including its quirk of leaving
/// out the fraction entirely when the microsecond is zero (`2030-01-02T03:04:05+00:00`).
///
/// Like a Python `datetime`, a timestamp has microsecond resolution and lies in the years 1...9999: every
/// initializer rounds to the nearest microsecond and clamps to that range. That makes equality mean what it means in
/// Python, and makes format → parse exact, so a message survives encoding and decoding unchanged. The instant is kept
/// as seconds since 1970 in a `Double`, which resolves microseconds for any date Celery uses (doubles near 2^31 s are
/// about 0.24 µs apart).
public struct CeleryTimestamp: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// Seconds since 1970-01-01T00:00:00Z, a whole number of microseconds.
    public private(set) var secondsSince1970: Double

    /// 0001-01-01T00:00:00Z, Python's `datetime.min`.
    private static let earliest: Double = -62_135_596_800
    /// 9999-12-31T23:59:59Z. Python's `datetime.max` is a microsecond short of the next second, but a `Double` of this
    /// size cannot hold microseconds, so the last representable whole second stands in for it.
    private static let latest: Double = 253_402_300_799

    /// The instant `secondsSince1970` seconds after the Unix epoch, rounded to the microsecond and clamped to the
    /// years 1...9999 (NaN becomes the earliest instant).
    public init(secondsSince1970: Double) {
        let clamped = secondsSince1970.isNaN ? Self.earliest : min(max(secondsSince1970, Self.earliest), Self.latest)
        let parts = Self.split(clamped)
        self.secondsSince1970 = Self.combine(seconds: parts.seconds, microsecond: parts.microsecond)
    }

    /// The instant of `date`, rounded to the microsecond.
    public init(_ date: Date) {
        self.init(secondsSince1970: date.timeIntervalSince1970)
    }

    /// Whole seconds (rounded down) and the microsecond within them, rounded to the nearest.
    private static func split(_ value: Double) -> (seconds: Int, microsecond: Int) {
        var whole = value.rounded(.down)
        var microsecond = ((value - whole) * 1_000_000).rounded()
        if microsecond >= 1_000_000 {
            whole += 1
            microsecond = 0
        }
        return (Int(whole), Int(microsecond))
    }

    /// The one formula that turns seconds and microseconds into the stored `Double`, used by parsing too, so that a
    /// formatted timestamp parses back to the identical value.
    private static func combine(seconds: Int, microsecond: Int) -> Double {
        Double(seconds) + Double(microsecond) / 1_000_000
    }

    /// The current time, as `app.now()` gives it for `date_done`.
    public static var now: CeleryTimestamp {
        CeleryTimestamp(Date())
    }

    /// The instant as a Foundation `Date`.
    public var date: Date {
        Date(timeIntervalSince1970: secondsSince1970)
    }

    /// The instant `seconds` later (earlier when negative), as Python computes `now + countdown`.
    public func advanced(by seconds: Double) -> CeleryTimestamp {
        CeleryTimestamp(secondsSince1970: secondsSince1970 + seconds)
    }

    public static func < (lhs: CeleryTimestamp, rhs: CeleryTimestamp) -> Bool {
        lhs.secondsSince1970 < rhs.secondsSince1970
    }

    /// The ``iso8601`` text.
    public var description: String {
        iso8601
    }
}

// MARK: - Parsing

extension CeleryTimestamp {
    /// Parses an ISO 8601 time as `dateutil.isoparse` does; see the type documentation for the accepted forms.
    /// Returns `nil` for anything else, including dates that do not exist (`2026-02-30`) and years outside
    /// 1...9999, which Python's `datetime` cannot hold.
    public init?(iso8601 text: String) {
        var scanner = DigitScanner(Array(text.utf8))
        guard let year = scanner.number(digits: 4), scanner.skip("-"),
            let month = scanner.number(digits: 2), scanner.skip("-"),
            let day = scanner.number(digits: 2),
            year >= 1, (1...12).contains(month), (1...Self.daysIn(month: month, year: year)).contains(day)
        else { return nil }

        var hour = 0
        var minute = 0
        var second = 0
        var microsecond = 0
        var offset = 0
        if !scanner.atEnd {
            guard scanner.skipSeparator(), let parsedHour = scanner.number(digits: 2)
            else { return nil }
            hour = parsedHour
            if scanner.skip(":") {
                guard let parsedMinute = scanner.number(digits: 2) else { return nil }
                minute = parsedMinute
                if scanner.skip(":") {
                    guard let parsedSecond = scanner.number(digits: 2) else { return nil }
                    second = parsedSecond
                    if scanner.skip(".") || scanner.skip(",") {
                        guard let fraction = scanner.fraction() else { return nil }
                        microsecond = fraction
                    }
                }
            }
            guard minute < 60, second < 60 else { return nil }
            // isoparse allows 24:00 (with nothing but zeros after it) as the midnight ending the day.
            guard hour < 24 || (hour == 24 && minute == 0 && second == 0 && microsecond == 0) else { return nil }
            if !scanner.atEnd {
                guard let parsedOffset = scanner.utcOffset() else { return nil }
                offset = parsedOffset
            }
        }
        guard scanner.atEnd else { return nil }

        let days = Self.daysSince1970(year: year, month: month, day: day)
        let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offset
        let value = Self.combine(seconds: seconds, microsecond: microsecond)
        // An offset can move a time just inside year 1 or 9999 outside Python's range.
        guard value >= Self.earliest, value <= Self.latest else { return nil }
        self.init(secondsSince1970: value)
    }

    private static func isLeap(_ year: Int) -> Bool {
        year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
    }

    private static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: return isLeap(year) ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    /// Days from 1970-01-01 to the given proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
    static func daysSince1970(year: Int, month: Int, day: Int) -> Int {
        let shiftedYear = month <= 2 ? year - 1 : year
        let era = (shiftedYear >= 0 ? shiftedYear : shiftedYear - 399) / 400
        let yearOfEra = shiftedYear - era * 400
        let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    /// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's `civil_from_days`).
    static func civilDate(daysSince1970 days: Int) -> (year: Int, month: Int, day: Int) {
        let shifted = days + 719_468
        let era = (shifted >= 0 ? shifted : shifted - 146_096) / 146_097
        let dayOfEra = shifted - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1_460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthIndex + 2) / 5 + 1
        let month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }
}

// MARK: - Formatting

extension CeleryTimestamp {
    /// Python's `isoformat()` of this instant in UTC: `YYYY-MM-DDTHH:MM:SS.ffffff+00:00`, with the `.ffffff` left
    /// out when the microsecond is zero.
    public var iso8601: String {
        let (seconds, microsecond) = Self.split(secondsSince1970)
        let days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
        let secondOfDay = seconds - days * 86_400
        let date = Self.civilDate(daysSince1970: days)
        var text = Self.padded(date.year, 4) + "-" + Self.padded(date.month, 2) + "-" + Self.padded(date.day, 2)
        text += "T" + Self.padded(secondOfDay / 3_600, 2) + ":" + Self.padded(secondOfDay / 60 % 60, 2)
        text += ":" + Self.padded(secondOfDay % 60, 2)
        if microsecond != 0 {
            text += "." + Self.padded(microsecond, 6)
        }
        return text + "+00:00"
    }

    private static func padded(_ value: Int, _ width: Int) -> String {
        let digits = String(value)
        return digits.count >= width ? digits : String(repeating: "0", count: width - digits.count) + digits
    }
}

/// Reads the fixed-width numbers of an ISO 8601 text.
private struct DigitScanner {
    let bytes: [UInt8]
    var position = 0

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
    }

    var atEnd: Bool { position == bytes.count }

    mutating func skip(_ character: Unicode.Scalar) -> Bool {
        guard position < bytes.count, bytes[position] == UInt8(ascii: character) else { return false }
        position += 1
        return true
    }

    /// Exactly `digits` ASCII digits.
    mutating func number(digits: Int) -> Int? {
        guard position + digits <= bytes.count else { return nil }
        var value = 0
        for byte in bytes[position..<position + digits] {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            value = value * 10 + Int(byte - UInt8(ascii: "0"))
        }
        position += digits
        return value
    }

    /// One or more digits of a fraction, as microseconds; digits after the sixth are read and dropped.
    mutating func fraction() -> Int? {
        var microseconds = 0
        var count = 0
        while position < bytes.count, bytes[position] >= UInt8(ascii: "0"), bytes[position] <= UInt8(ascii: "9") {
            if count < 6 {
                microseconds = microseconds * 10 + Int(bytes[position] - UInt8(ascii: "0"))
            }
            count += 1
            position += 1
        }
        guard count > 0 else { return nil }
        for _ in count..<max(count, 6) {
            microseconds *= 10
        }
        return microseconds
    }

    /// Any one character that is not a digit, as `isoparse` takes between the date and the time.
    mutating func skipSeparator() -> Bool {
        guard position < bytes.count else { return false }
        let byte = bytes[position]
        guard byte < UInt8(ascii: "0") || byte > UInt8(ascii: "9"), byte < 0x80 else { return false }
        position += 1
        return true
    }

    /// `Z`, `z`, `±HH`, `±HHMM` or `±HH:MM` (`isoparse` refuses seconds), as seconds east of UTC.
    mutating func utcOffset() -> Int? {
        if skip("Z") || skip("z") { return 0 }
        let sign: Int
        if skip("+") {
            sign = 1
        } else if skip("-") {
            sign = -1
        } else {
            return nil
        }
        guard let hours = number(digits: 2), hours < 24 else { return nil }
        var minutes = 0
        if skip(":") || !atEnd {
            guard let parsed = number(digits: 2) else { return nil }
            minutes = parsed
        }
        guard minutes < 60 else { return nil }
        return sign * (hours * 3_600 + minutes * 60)
    }
}
