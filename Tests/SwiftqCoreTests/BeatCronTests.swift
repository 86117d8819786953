import SwiftqCore
import Testing

/// One next-run case: expression, zone, the instant after which to look (UTC), the expected fire time (UTC).
struct CronCase: Sendable, CustomTestStringConvertible {
    var expression: String
    var zone: String
    var after: CivilTime
    var expected: CivilTime
    var note: String

    init(_ expression: String, _ zone: String, after: String, _ expected: String, _ note: String) {
        self.expression = expression
        self.zone = zone
        self.after = CivilTime.utc(after)
        self.expected = CivilTime.utc(expected)
        self.note = note
    }

    var testDescription: String { "\(expression) in \(zone): \(note)" }
}

extension CivilTime {
    /// `2026-03-29T01:00` (minutes; seconds zero).
    static func utc(_ text: String) -> CivilTime {
        let parts = text.split(whereSeparator: { "-T:".contains($0) }).map { Int($0)! }
        return CivilTime(year: parts[0], month: parts[1], day: parts[2], hour: parts[3], minute: parts[4])
    }
}

@Suite("Beat: cron expressions")
struct BeatCronTests {
    static let cases: [CronCase] = [
        .init("*/15 * * * *", "UTC", after: "2026-01-01T00:07", "2026-01-01T00:15", "step"),
        .init("*/15 * * * *", "UTC", after: "2026-01-01T00:15", "2026-01-01T00:30", "strictly after"),
        .init("0 9-17/4 * * mon-fri", "UTC", after: "2026-01-03T10:00", "2026-01-05T09:00", "range step and day names"),
        .init("0 9-17/4 * * mon-fri", "UTC", after: "2026-01-05T09:00", "2026-01-05T13:00", "range step"),
        .init("30 8 1,15 * *", "UTC", after: "2026-01-01T09:00", "2026-01-15T08:30", "list"),
        .init("0 0 13 * fri", "UTC", after: "2026-01-01T00:00", "2026-01-02T00:00", "OR rule: Friday 2 Jan"),
        .init("0 0 13 * fri", "UTC", after: "2026-01-09T00:00", "2026-01-13T00:00", "OR rule: 13 Jan"),
        .init("0 0 */2 * fri", "UTC", after: "2026-01-01T00:00", "2026-01-09T00:00", "* day of month: AND rule"),
        .init("0 0 * * 7", "UTC", after: "2026-01-01T00:00", "2026-01-04T00:00", "7 is Sunday"),
        .init("0 12 31 * *", "UTC", after: "2026-04-01T00:00", "2026-05-31T12:00", "months without a 31st skipped"),
        .init("0 0 29 2 *", "UTC", after: "2026-01-01T00:00", "2028-02-29T00:00", "29 February"),
        .init("@monthly", "UTC", after: "2026-01-31T12:00", "2026-02-01T00:00", "macro"),
        .init("@yearly", "UTC", after: "2026-06-01T00:00", "2027-01-01T00:00", "macro"),
        .init("@hourly", "UTC", after: "2026-06-01T00:00", "2026-06-01T01:00", "macro"),
        .init("0 0 1 jan-mar/2 *", "UTC", after: "2026-01-02T00:00", "2026-03-01T00:00", "month names with a step"),
        .init("0 8 * * *", "Europe/Berlin", after: "2026-01-01T00:00", "2026-01-01T07:00", "winter, UTC+1"),
        .init("0 8 * * *", "Europe/Berlin", after: "2026-07-01T00:00", "2026-07-01T06:00", "summer, UTC+2"),
        // Spring forward in Berlin, 29 March 2026: 02:00 CET becomes 03:00 CEST at 01:00 UTC.
        .init(
            "30 2 * * *",
            "Europe/Berlin",
            after: "2026-03-28T12:00",
            "2026-03-29T01:00",
            "skipped 02:30 runs at 03:00"
        ),
        .init("30 2 * * *", "Europe/Berlin", after: "2026-03-29T01:00", "2026-03-30T00:30", "then daily again"),
        .init(
            "*/15 * * * *",
            "Europe/Berlin",
            after: "2026-03-29T00:50",
            "2026-03-29T01:00",
            "the gap's runs collapse"
        ),
        .init("*/15 * * * *", "Europe/Berlin", after: "2026-03-29T01:00", "2026-03-29T01:15", "after the gap"),
        // Fall back in Berlin, 25 October 2026: 03:00 CEST becomes 02:00 CET at 01:00 UTC.
        .init("30 2 * * *", "Europe/Berlin", after: "2026-10-24T12:00", "2026-10-25T00:30", "first 02:30 (CEST)"),
        .init("30 2 * * *", "Europe/Berlin", after: "2026-10-25T00:30", "2026-10-26T01:30", "not the second 02:30"),
        // New York, 8 March 2026: 02:00 EST becomes 03:00 EDT at 07:00 UTC.
        .init("30 2 * * *", "America/New_York", after: "2026-03-07T12:00", "2026-03-08T07:00", "skipped 02:30"),
        .init("0 3 * * *", "America/New_York", after: "2026-03-07T12:00", "2026-03-08T07:00", "03:00 EDT itself"),
        // New York, 1 November 2026: 02:00 EDT becomes 01:00 EST at 06:00 UTC.
        .init("30 1 * * *", "America/New_York", after: "2026-10-31T12:00", "2026-11-01T05:30", "first 01:30 (EDT)"),
        .init("30 1 * * *", "America/New_York", after: "2026-11-01T05:30", "2026-11-02T06:30", "once, not twice"),
    ]

    @Test(arguments: cases)
    func nextFire(_ item: CronCase) throws {
        let expression = try CronExpression(parsing: item.expression)
        let zone = try TimeZoneInfo.load(named: item.zone)
        let fire = expression.nextFire(after: item.after.secondsSinceEpoch, in: zone)
        #expect(fire.map { CivilTime(secondsSinceEpoch: $0) } == item.expected)
    }

    @Test(arguments: [
        ("* * * *", "expected 5 fields"),
        ("60 * * * *", "minute field: 60 is out of range 0-59"),
        ("* 24 * * *", "hour field: 24 is out of range"),
        ("* * 0 * *", "day of month field: 0 is out of range"),
        ("* * * 13 *", "month field: 13 is out of range"),
        ("* * * foo *", "month field: \"foo\" is not"),
        ("* * * * 8", "day of week field: 8 is out of range"),
        ("5-1 * * * *", "runs backwards"),
        ("*/0 * * * *", "step \"0\""),
        ("1,,2 * * * *", "empty list item"),
        ("@often", "unknown macro"),
        ("0 0 31 2 *", "would never run"),
    ])
    func rejected(_ text: String, _ message: String) {
        #expect {
            _ = try CronExpression(parsing: text)
        } throws: { error in
            "\(error)".contains(message)
        }
    }

    @Test func orRuleNeedsBothRestricted() throws {
        let both = try CronExpression(parsing: "0 0 1 * mon")
        // 2026-06-01 is a Monday and the 1st; 2026-06-08 a Monday; 2026-07-01 a Wednesday.
        #expect(both.matches(year: 2026, month: 6, day: 8))
        #expect(both.matches(year: 2026, month: 7, day: 1))
        let star = try CronExpression(parsing: "0 0 * * mon")
        #expect(!star.matches(year: 2026, month: 7, day: 1))
    }
}

@Suite("Beat: TZif and POSIX TZ rules")
struct BeatTimeZoneTests {
    static func instant(_ text: String) -> Int64 { CivilTime.utc(text).secondsSinceEpoch }

    @Test func berlinOffsets() throws {
        let berlin = try TimeZoneInfo.load(named: "Europe/Berlin")
        #expect(berlin.localTimeType(at: Self.instant("2026-01-15T12:00")).utcOffset == 3600)
        #expect(berlin.localTimeType(at: Self.instant("2026-01-15T12:00")).abbreviation == "CET")
        let summer = berlin.localTimeType(at: Self.instant("2026-07-01T12:00"))
        #expect(summer.utcOffset == 7200 && summer.isDST && summer.abbreviation == "CEST")
        // Past the file's transitions: the footer rule answers.
        #expect(berlin.utcOffset(at: Self.instant("2150-07-01T12:00")) == 7200)
        #expect(berlin.utcOffset(at: Self.instant("2150-12-01T12:00")) == 3600)
        // The exact transition instants of 2026.
        #expect(berlin.utcOffset(at: Self.instant("2026-03-29T01:00") - 1) == 3600)
        #expect(berlin.utcOffset(at: Self.instant("2026-03-29T01:00")) == 7200)
        #expect(berlin.utcOffset(at: Self.instant("2026-10-25T01:00") - 1) == 7200)
        #expect(berlin.utcOffset(at: Self.instant("2026-10-25T01:00")) == 3600)
    }

    @Test func newYorkResolution() throws {
        let newYork = try TimeZoneInfo.load(named: "America/New_York")
        #expect(newYork.utcOffset(at: Self.instant("2026-07-01T12:00")) == -14400)
        let gap = newYork.resolve(CivilTime(year: 2026, month: 3, day: 8, hour: 2, minute: 30))
        #expect(gap == .skipped(transition: Self.instant("2026-03-08T07:00")))
        let overlap = newYork.resolve(CivilTime(year: 2026, month: 11, day: 1, hour: 1, minute: 30))
        #expect(overlap == .repeated(Self.instant("2026-11-01T05:30"), Self.instant("2026-11-01T06:30")))
        let plain = newYork.resolve(CivilTime(year: 2026, month: 6, day: 1, hour: 12))
        #expect(plain == .unique(Self.instant("2026-06-01T16:00")))
    }

    @Test func footerOnlyZoneFromPOSIXRule() throws {
        // A version 2 TZif file with no transitions: everything comes from the footer.
        var bytes: [UInt8] = []
        func header() {
            bytes += Array("TZif2".utf8) + [UInt8](repeating: 0, count: 15)
            // isutcnt, isstdcnt, leapcnt, timecnt, typecnt = 1, charcnt = 4
            for count: UInt32 in [0, 0, 0, 0, 1, 4] {
                bytes += [UInt8(count >> 24), UInt8(count >> 16 & 0xFF), UInt8(count >> 8 & 0xFF), UInt8(count & 0xFF)]
            }
            // One type: +10:00 (36000), not DST, abbreviation index 0.
            bytes += [0x00, 0x00, 0x8C, 0xA0, 0, 0] + Array("AEST".utf8)
        }
        header()
        header()
        bytes += Array("\nAEST-10AEDT,M10.1.0,M4.1.0/3\n".utf8)
        let sydney = try TimeZoneInfo.parse(bytes, name: "Test/Sydney")
        // Southern hemisphere: daylight time spans New Year.
        #expect(sydney.utcOffset(at: Self.instant("2026-01-15T00:00")) == 39600)
        #expect(sydney.utcOffset(at: Self.instant("2026-07-15T00:00")) == 36000)
        #expect(sydney.utcOffset(at: Self.instant("2026-12-15T00:00")) == 39600)
    }

    @Test func malformedAndUnknown() {
        #expect(throws: TimeZoneError.self) { try TimeZoneInfo.parse(Array("not a zone".utf8), name: "x") }
        #expect(throws: TimeZoneError.self) { try TimeZoneInfo.parse(Array("TZif2".utf8), name: "x") }
        #expect(throws: TimeZoneError.self) { try TimeZoneInfo.load(named: "Mars/Olympus_Mons") }
        #expect(throws: TimeZoneError.self) { try TimeZoneInfo.load(named: "../../etc/passwd") }
        #expect((try? TimeZoneInfo.load(named: "UTC")) == .utc)
    }

    @Test func civilTimeRoundTrip() {
        for seconds: Int64 in [-86_401, 0, 951_782_400, 1_709_164_800, 4_107_542_400] {
            #expect(CivilTime(secondsSinceEpoch: seconds).secondsSinceEpoch == seconds)
        }
        #expect(CivilTime(year: 2028, month: 2, day: 29).weekday == 2)
    }
}
