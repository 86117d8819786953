/// A five-field crontab expression (`minute hour day-of-month month day-of-week`), as Vixie cron reads it.
///
/// Fields take `*`, numbers, ranges (`1-5`), steps (`*/15`, `10-40/10`, `5/15` = from 5 to the end), lists
/// (`1,15,30`), and names of months (`jan`…`dec`) and days (`sun`…`sat`, where `7` is also Sunday). The macros
/// `@yearly` (`@annually`), `@monthly`, `@weekly`, `@daily` (`@midnight`) and `@hourly` stand for their expansions.
/// Day of month and day of week follow Vixie cron's rule: when both are restricted (neither starts with `*`), a day
/// matches if **either** matches; otherwise both must.
public struct CronExpression: Sendable, Hashable, CustomStringConvertible {
    /// The text as written (trimmed), for display.
    public let source: String
    let minutes: UInt64
    let hours: UInt32
    let daysOfMonth: UInt32
    let months: UInt16
    let daysOfWeek: UInt8
    let daysOfMonthRestricted: Bool
    let daysOfWeekRestricted: Bool

    public var description: String { source }

    public init(parsing text: String) throws(CronError) {
        let trimmed = text.trimmingWhitespace()
        source = trimmed
        var expanded = trimmed
        if trimmed.hasPrefix("@") {
            switch trimmed.lowercased() {
            case "@yearly", "@annually": expanded = "0 0 1 1 *"
            case "@monthly": expanded = "0 0 1 * *"
            case "@weekly": expanded = "0 0 * * 0"
            case "@daily", "@midnight": expanded = "0 0 * * *"
            case "@hourly": expanded = "0 * * * *"
            default:
                throw CronError(
                    "unknown macro \(trimmed.debugDescription); expected @yearly, @monthly, @weekly, @daily or @hourly"
                )
            }
        }
        let fields = expanded.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        guard fields.count == 5 else {
            throw CronError(
                "expected 5 fields (minute hour day-of-month month day-of-week), got \(fields.count)"
            )
        }
        minutes = try Self.field(fields[0], name: "minute", range: 0...59, names: [:])
        hours = UInt32(try Self.field(fields[1], name: "hour", range: 0...23, names: [:]))
        daysOfMonth = UInt32(try Self.field(fields[2], name: "day of month", range: 1...31, names: [:]))
        months = UInt16(try Self.field(fields[3], name: "month", range: 1...12, names: Self.monthNames))
        var weekdays = try Self.field(fields[4], name: "day of week", range: 0...7, names: Self.dayNames)
        if weekdays & (1 << 7) != 0 { weekdays = (weekdays | 1) & ~(1 << 7) }
        daysOfWeek = UInt8(weekdays)
        daysOfMonthRestricted = !fields[2].hasPrefix("*")
        daysOfWeekRestricted = !fields[4].hasPrefix("*")
        if daysOfMonthRestricted && !daysOfWeekRestricted {
            // A day of month that no chosen month has (31 February) would never run.
            let possible = (1...12).contains { month in
                let length = month == 2 ? 29 : CivilTime.daysInMonth(year: 2001, month: month)
                return months & (1 << month) != 0 && (1...length).contains { daysOfMonth & (1 << $0) != 0 }
            }
            if !possible {
                throw CronError("no chosen month has the chosen day of month; the expression would never run")
            }
        }
    }

    static let monthNames: [String: Int] = [
        "jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6, "jul": 7, "aug": 8, "sep": 9, "oct": 10,
        "nov": 11, "dec": 12,
    ]
    static let dayNames: [String: Int] = ["sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6]

    /// One field as a bit set of the allowed values.
    static func field(_ text: String, name: String, range: ClosedRange<Int>, names: [String: Int]) throws(CronError)
        -> UInt64
    {
        var bits: UInt64 = 0
        for item in text.split(separator: ",", omittingEmptySubsequences: false) {
            guard !item.isEmpty else {
                throw CronError("\(name) field \(text.debugDescription) has an empty list item")
            }
            let parts = item.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count <= 2 else {
                throw CronError("\(name) field: \(String(item).debugDescription) has two steps")
            }
            var step = 1
            if parts.count == 2 {
                guard let value = Int(parts[1]), value > 0, value <= range.upperBound else {
                    throw CronError(
                        "\(name) field: step \(String(parts[1]).debugDescription) must be a number from 1 to \(range.upperBound)"
                    )
                }
                step = value
            }
            var low: Int
            var high: Int
            if parts[0] == "*" {
                low = range.lowerBound
                high = range.upperBound
                if name == "day of week" { high = 6 }
            } else {
                let bounds = parts[0].split(separator: "-", omittingEmptySubsequences: false)
                guard bounds.count <= 2 else {
                    throw CronError("\(name) field: \(String(parts[0]).debugDescription) is not a value or a range")
                }
                low = try value(bounds[0], name: name, range: range, names: names)
                high = low
                if bounds.count == 2 {
                    high = try value(bounds[1], name: name, range: range, names: names)
                    guard low <= high else {
                        throw CronError("\(name) field: range \(String(parts[0]).debugDescription) runs backwards")
                    }
                } else if parts.count == 2 {
                    // `5/15`: from 5 to the end of the field, as cronie reads it.
                    high = name == "day of week" ? 6 : range.upperBound
                }
            }
            var current = low
            while current <= high {
                bits |= 1 << UInt64(current)
                current += step
            }
        }
        return bits
    }

    private static func value(_ text: Substring, name: String, range: ClosedRange<Int>, names: [String: Int])
        throws(CronError) -> Int
    {
        if let number = Int(text) {
            guard range.contains(number) else {
                throw CronError("\(name) field: \(number) is out of range \(range.lowerBound)-\(range.upperBound)")
            }
            return number
        }
        if let named = names[text.lowercased()] { return named }
        let expectation =
            names.isEmpty
            ? "a number from \(range.lowerBound) to \(range.upperBound)"
            : "a number from \(range.lowerBound) to \(range.upperBound) or a name such as \(names.keys.sorted().first ?? "")"
        throw CronError("\(name) field: \(String(text).debugDescription) is not \(expectation)")
    }

    /// Whether the expression matches a date (ignoring the time of day).
    public func matches(year: Int, month: Int, day: Int) -> Bool {
        guard months & (1 << month) != 0 else { return false }
        let weekday = CivilTime.weekday(days: CivilTime.days(year: year, month: month, day: day))
        let domMatch = daysOfMonth & (1 << day) != 0
        let dowMatch = daysOfWeek & (1 << weekday) != 0
        if daysOfMonthRestricted && daysOfWeekRestricted { return domMatch || dowMatch }
        return domMatch && dowMatch
    }

    /// The first instant strictly after `instant` (seconds since the epoch) at which the expression fires in `zone`,
    /// or `nil` if none within 30 years.
    ///
    /// Daylight saving time: a wall time the clock skips (02:30 on a spring-forward night) fires once, at the instant
    /// of the jump (03:00 new time in Europe/Berlin and America/New_York); a wall time that occurs twice (01:30 on a
    /// fall-back night in New York, 02:30 in Berlin) fires once, at its first occurrence (still daylight time).
    public func nextFire(after instant: Int64, in zone: TimeZoneInfo) -> Int64? {
        let wall = zone.civilTime(at: instant)
        var days = CivilTime.days(year: wall.year, month: wall.month, day: wall.day)
        let lastDay = days + 366 * 30
        var firstDay = true
        while days <= lastDay {
            let (year, month, day) = CivilTime.civil(fromDays: days)
            if matches(year: year, month: month, day: day) {
                for hour in 0..<24 where hours & (1 << hour) != 0 {
                    if firstDay && hour < wall.hour { continue }
                    for minute in 0..<60 where minutes & (1 << UInt64(minute)) != 0 {
                        if firstDay && hour == wall.hour && minute < wall.minute { continue }
                        let civil = CivilTime(year: year, month: month, day: day, hour: hour, minute: minute)
                        let fire: Int64
                        switch zone.resolve(civil) {
                        case .unique(let at): fire = at
                        case .repeated(let first, _): fire = first
                        case .skipped(let transition): fire = transition
                        }
                        if fire > instant { return fire }
                    }
                }
            }
            firstDay = false
            days += 1
        }
        return nil
    }
}

/// Why a cron expression was refused.
public struct CronError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    init(_ message: String) { self.message = message }
    public var description: String { message }
}
