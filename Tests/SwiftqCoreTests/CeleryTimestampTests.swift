import Foundation
import SwiftqCore
import Testing

/// Expected values computed with Python's `dateutil.parser.isoparse` and `datetime.isoformat` (the functions Celery
/// uses), as microseconds since 1970.
@Suite struct CeleryTimestampTests {
    static let parsed: [(String, Int64)] = [
        ("2026-11-21T22:23:12.185780+00:00", 1_795_299_792_185_780),
        ("2026-11-21T22:23:12Z", 1_795_299_792_000_000),
        ("2026-11-21T22:23:12", 1_795_299_792_000_000),  // naive: UTC
        ("2026-11-21 22:23:12.5", 1_795_299_792_500_000),
        ("2026-11-21T22:23:12.123456789+01:30", 1_795_294_392_123_456),  // digits after the sixth are dropped
        ("2026-11-21", 1_795_219_200_000_000),
        ("2026-11-21T22:23", 1_795_299_780_000_000),
        ("2026-11-21T22", 1_795_298_400_000_000),
        ("2026-11-21X22", 1_795_298_400_000_000),  // isoparse takes any separator
        ("2026-11-21T22:23:12+0530", 1_795_279_992_000_000),
        ("2026-11-21T22:23:12-03", 1_795_310_592_000_000),
        ("2026-11-21T24:00:00", 1_795_305_600_000_000),
        ("2030-01-02T03:04:05+00:00", 1_893_553_445_000_000),
        ("1969-12-31T23:59:59.999999+00:00", -1),
        ("0001-01-01T00:00:00+00:00", -62_135_596_800_000_000),
        ("9999-12-31T23:59:59+00:00", 253_402_300_799_000_000),
        ("2024-02-29T12:00:00,25Z", 1_709_208_000_250_000),
        ("2026-11-21T22:23:12.1z", 1_795_299_792_100_000),
        ("1970-01-01T00:00:00-00:00", 0),
    ]

    @Test(arguments: parsed)
    func parsesWhatIsoparseParses(text: String, microseconds: Int64) throws {
        let timestamp = try #require(CeleryTimestamp(iso8601: text))
        #expect(timestamp == CeleryTimestamp(secondsSince1970: Double(microseconds) / 1_000_000))
        #expect((timestamp.secondsSince1970 * 1_000_000).rounded() == Double(microseconds))
    }

    @Test(arguments: [
        "", "soon", "2026-13-01", "2026-02-29", "2026-11-31", "2026-11-21T25:00", "2026-11-21T22:60",
        "2026-11-21T22:23:61", "2026-11-21T22:23:12+25:00", "2026-11-21T22:23:12.", "2026-11-21T22:23:12 +00:00",
        "2026-11-21T24:00:01", "0000-01-01", "26-11-21", "2026-1-21", "2026-11-21T22:23:12+00:00junk",
        "2026-11-21T2", "2026-11-21T22:23:12+05:30:15", "2026-11-21T", "２０２６-11-21",
    ])
    func refusesWhatIsoparseRefuses(_ text: String) {
        #expect(CeleryTimestamp(iso8601: text) == nil)
    }

    static let formatted: [(Int64, String)] = [
        (1_795_300_992_185_780, "2026-11-21T22:43:12.185780+00:00"),
        (1_893_553_445_000_000, "2030-01-02T03:04:05+00:00"),  // no ".000000", as Python writes it
        (1_893_557_045_123_456, "2030-01-02T04:04:05.123456+00:00"),
        (0, "1970-01-01T00:00:00+00:00"),
        (-1, "1969-12-31T23:59:59.999999+00:00"),
        (1_500_000, "1970-01-01T00:00:01.500000+00:00"),
        (-62_135_596_800_000_000, "0001-01-01T00:00:00+00:00"),
        (253_402_300_799_000_000, "9999-12-31T23:59:59+00:00"),
        (1_795_306_989_000_001, "2026-11-22T00:23:09.000001+00:00"),
        (951_782_400_000_000, "2000-02-29T00:00:00+00:00"),
    ]

    @Test(arguments: formatted)
    func formatsAsPythonIsoformat(microseconds: Int64, text: String) throws {
        let timestamp = CeleryTimestamp(secondsSince1970: Double(microseconds) / 1_000_000)
        #expect(timestamp.iso8601 == text)
        #expect(timestamp.description == text)
        #expect(CeleryTimestamp(iso8601: text) == timestamp)
    }

    @Test func offsetsNaiveAndZuluNameTheSameInstant() throws {
        let utc = try #require(CeleryTimestamp(iso8601: "2026-11-21T22:23:12+00:00"))
        #expect(CeleryTimestamp(iso8601: "2026-11-21T22:23:12Z") == utc)
        #expect(CeleryTimestamp(iso8601: "2026-11-21T22:23:12") == utc)
        #expect(CeleryTimestamp(iso8601: "2026-11-22T00:23:12+02:00") == utc)
        #expect(CeleryTimestamp(iso8601: "2026-11-21T17:23:12-05:00") == utc)
        #expect(CeleryTimestamp(iso8601: "2026-11-22T00:23:12+02:00")?.iso8601 == "2026-11-21T22:23:12+00:00")
    }

    @Test func anyInstantFormatsAndParsesBackExactly() throws {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2_000 {
            let seconds = Double.random(in: 0..<4_102_444_800, using: &generator)  // 1970...2100
            let timestamp = CeleryTimestamp(secondsSince1970: seconds)
            let again = try #require(CeleryTimestamp(iso8601: timestamp.iso8601))
            #expect(again == timestamp)
            #expect(abs(timestamp.secondsSince1970 - seconds) < 0.000_001_5)
        }
    }

    @Test func microsecondRoundingCarriesIntoTheSecond() {
        #expect(CeleryTimestamp(secondsSince1970: 9.999_999_7).iso8601 == "1970-01-01T00:00:10+00:00")
        #expect(CeleryTimestamp(secondsSince1970: 9.999_999_2).iso8601 == "1970-01-01T00:00:09.999999+00:00")
    }

    @Test func outOfRangeValuesAreClampedToPythonsDatetimeRange() {
        #expect(CeleryTimestamp(secondsSince1970: -1e300).iso8601 == "0001-01-01T00:00:00+00:00")
        #expect(CeleryTimestamp(secondsSince1970: .infinity).iso8601 == "9999-12-31T23:59:59+00:00")
        #expect(CeleryTimestamp(secondsSince1970: .nan).iso8601 == "0001-01-01T00:00:00+00:00")
        #expect(CeleryTimestamp(iso8601: "0001-01-01T00:00:00+01:00") == nil)
    }

    @Test func ordersByInstantAndConvertsToDate() throws {
        let early = try #require(CeleryTimestamp(iso8601: "2026-11-21T22:23:12+00:00"))
        let late = early.advanced(by: 0.5)
        #expect(early < late)
        #expect(late.iso8601 == "2026-11-21T22:23:12.500000+00:00")
        #expect(early.date == Date(timeIntervalSince1970: 1_795_299_792))
        #expect(CeleryTimestamp(early.date) == early)
        let now = CeleryTimestamp.now
        #expect(abs(now.secondsSince1970 - Date().timeIntervalSince1970) < 5)
    }
}
