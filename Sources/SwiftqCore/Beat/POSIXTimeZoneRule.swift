/// A POSIX `TZ` rule such as `CET-1CEST,M3.5.0,M10.5.0/3` or `EST5EDT,M3.2.0,M11.1.0`: the footer of a TZif file,
/// which describes the zone for every instant after the file's last transition.
///
/// POSIX offsets count hours *west* of UTC (`EST5` is UTC−5); they are stored here east of UTC, as in TZif.
/// Transition dates are `Mm.w.d` (week `w` of month `m`, 5 = last, weekday `d`), `Jn` (day 1…365, never counting
/// 29 February) or `n` (day 0…365); times default to 02:00 local and may be negative or beyond 24h (TZif v3).
struct POSIXTimeZoneRule: Sendable, Equatable {
    enum DateRule: Sendable, Equatable {
        case monthWeekDay(month: Int, week: Int, weekday: Int)
        case julianNoLeap(Int)
        case zeroBased(Int)
    }

    struct Transition: Sendable, Equatable {
        var date: DateRule
        /// Seconds after local midnight.
        var time: Int
    }

    var standard: TimeZoneInfo.LocalTimeType
    var daylight: TimeZoneInfo.LocalTimeType?
    var start: Transition?
    var end: Transition?

    init(parsing text: String) throws(TimeZoneError) {
        var scanner = Scanner(Array(text.utf8))
        let standardName = try scanner.name()
        let standardOffset = -(try scanner.offset())
        standard = .init(utcOffset: standardOffset, isDST: false, abbreviation: standardName)
        guard !scanner.isAtEnd else { return }
        let daylightName = try scanner.name()
        var daylightOffset = standardOffset + 3600
        if let next = scanner.peek, next != UInt8(ascii: ",") {
            daylightOffset = -(try scanner.offset())
        }
        daylight = .init(utcOffset: daylightOffset, isDST: true, abbreviation: daylightName)
        guard scanner.take(",") else {
            throw TimeZoneError(message: "TZ rule \(text.debugDescription): daylight time without transition rules")
        }
        start = try scanner.transition()
        guard scanner.take(",") else { throw TimeZoneError(message: "TZ rule \(text.debugDescription): no end rule") }
        end = try scanner.transition()
        guard scanner.isAtEnd else {
            throw TimeZoneError(message: "TZ rule \(text.debugDescription): unexpected text at the end")
        }
    }

    func localTimeType(at instant: Int64) -> TimeZoneInfo.LocalTimeType {
        guard let daylight, let start, let end else { return standard }
        let year = CivilTime(secondsSinceEpoch: instant + Int64(standard.utcOffset)).year
        let starts = Self.instant(of: start, year: year, offset: standard.utcOffset)
        let ends = Self.instant(of: end, year: year, offset: daylight.utcOffset)
        let inDaylight =
            starts < ends
            ? instant >= starts && instant < ends
            // Southern hemisphere: daylight time spans New Year.
            : instant < ends || instant >= starts
        return inDaylight ? daylight : standard
    }

    /// The instant of a transition in `year`, given the offset in effect just before it.
    static func instant(of transition: Transition, year: Int, offset: Int) -> Int64 {
        let day: Int64
        switch transition.date {
        case .monthWeekDay(let month, let week, let weekday):
            let first = CivilTime.days(year: year, month: month, day: 1)
            var dayOfMonth = 1 + (weekday - CivilTime.weekday(days: first) + 7) % 7 + (week - 1) * 7
            while dayOfMonth > CivilTime.daysInMonth(year: year, month: month) { dayOfMonth -= 7 }
            day = first + Int64(dayOfMonth - 1)
        case .julianNoLeap(let n):
            let leapShift = CivilTime.isLeapYear(year) && n >= 60 ? 1 : 0
            day = CivilTime.days(year: year, month: 1, day: 1) + Int64(n - 1 + leapShift)
        case .zeroBased(let n):
            day = CivilTime.days(year: year, month: 1, day: 1) + Int64(n)
        }
        return day * 86_400 + Int64(transition.time) - Int64(offset)
    }

    private struct Scanner {
        let bytes: [UInt8]
        var position = 0

        init(_ bytes: [UInt8]) { self.bytes = bytes }

        var isAtEnd: Bool { position >= bytes.count }
        var peek: UInt8? { isAtEnd ? nil : bytes[position] }

        mutating func take(_ character: Unicode.Scalar) -> Bool {
            guard peek == UInt8(ascii: character) else { return false }
            position += 1
            return true
        }

        mutating func name() throws(TimeZoneError) -> String {
            let start = position
            if take("<") {
                while let byte = peek, byte != UInt8(ascii: ">") { position += 1 }
                guard take(">") else { throw TimeZoneError(message: "TZ rule: unterminated <name>") }
                return String(decoding: bytes[(start + 1)..<(position - 1)], as: UTF8.self)
            }
            while let byte = peek, (byte >= 65 && byte <= 90) || (byte >= 97 && byte <= 122) { position += 1 }
            guard position - start >= 3 else { throw TimeZoneError(message: "TZ rule: expected a zone abbreviation") }
            return String(decoding: bytes[start..<position], as: UTF8.self)
        }

        mutating func number() throws(TimeZoneError) -> Int {
            var value = 0
            var digits = 0
            while let byte = peek, byte >= 48, byte <= 57 {
                value = value * 10 + Int(byte - 48)
                digits += 1
                position += 1
            }
            guard digits > 0 else { throw TimeZoneError(message: "TZ rule: expected a number") }
            return value
        }

        /// `[+-]hh[:mm[:ss]]` in seconds.
        mutating func offset() throws(TimeZoneError) -> Int {
            var sign = 1
            if take("-") { sign = -1 } else { _ = take("+") }
            var seconds = try number() * 3600
            if take(":") { seconds += try number() * 60 }
            if take(":") { seconds += try number() }
            return sign * seconds
        }

        mutating func transition() throws(TimeZoneError) -> Transition {
            let date: DateRule
            if take("M") {
                let month = try number()
                guard take(".") else { throw TimeZoneError(message: "TZ rule: expected Mm.w.d") }
                let week = try number()
                guard take(".") else { throw TimeZoneError(message: "TZ rule: expected Mm.w.d") }
                let weekday = try number()
                guard (1...12).contains(month), (1...5).contains(week), (0...6).contains(weekday) else {
                    throw TimeZoneError(message: "TZ rule: Mm.w.d out of range")
                }
                date = .monthWeekDay(month: month, week: week, weekday: weekday)
            } else if take("J") {
                date = .julianNoLeap(try number())
            } else {
                date = .zeroBased(try number())
            }
            var time = 7200
            if take("/") { time = try offset() }
            return Transition(date: date, time: time)
        }
    }
}
