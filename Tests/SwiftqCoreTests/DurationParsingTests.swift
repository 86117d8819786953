import SwiftqCore
import Testing

@Suite("Duration: configuration syntax")
struct DurationParsingTests {
    @Test(arguments: [
        ("30s", Duration.seconds(30)),
        ("5m", .seconds(300)),
        ("1h30m", .seconds(5400)),
        ("500ms", .milliseconds(500)),
        ("1h", .seconds(3600)),
        ("2m30s", .seconds(150)),
        ("1.5s", .milliseconds(1500)),
        ("30", .seconds(30)),
        ("1.5", .milliseconds(1500)),
        ("0", .zero),
        ("0s", .zero),
        ("0.25h", .seconds(900)),
        ("1h2m3s4ms", .milliseconds(3_723_004)),
        ("0.000000001s", .nanoseconds(1)),
        ("0.0000000019s", .nanoseconds(1)),
        ("  45s\n", .seconds(45)),
    ])
    func accepted(text: String, duration: Duration) {
        #expect(Duration(configurationString: text) == duration)
    }

    @Test(arguments: [
        "", "soon", "s", "-5s", "+5s", "5 s", "1h 30m", "30s5m", "1m1m", "1.s", ".5s", "5sec", "5d",
        "1e3", "1:30", "0x10", "1h30", "99999999999999999999h",
    ])
    func rejected(text: String) {
        #expect(Duration(configurationString: text) == nil)
    }

    @Test(arguments: [
        (Duration.zero, "0s"),
        (.seconds(30), "30s"),
        (.seconds(90), "1m30s"),
        (.seconds(5400), "1h30m"),
        (.seconds(3600), "1h"),
        (.milliseconds(500), "500ms"),
        (.milliseconds(1500), "1.5s"),
        (.nanoseconds(1), "0.000000001s"),
        (.seconds(-90), "-1m30s"),
    ])
    func rendered(duration: Duration, text: String) {
        #expect(duration.configurationString == text)
        if duration >= .zero {
            #expect(Duration(configurationString: text) == duration)
        }
    }
}
