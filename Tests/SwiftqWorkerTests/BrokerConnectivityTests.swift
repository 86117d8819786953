import SwiftqConsumer
import Testing

/// The worker's broker state derived from each connection's reports: one connection's error is not undone by
/// another's success, and a recovery shows only when every connection that reported is up again.
@Suite struct BrokerConnectivityTests {
    @Test func notConnectedUntilTheFetchConnectionIsEvenIfTheWriterWrote() {
        var state = BrokerConnectivity()
        #expect(!state.isConnected)
        #expect(state.detail == "not connected")
        #expect(!state.report(.write, connected: true, detail: "writing"))
        #expect(!state.isConnected)
        #expect(state.report(.fetch, connected: true, detail: "connected to redis://x"))
        #expect(state.isConnected)
        #expect(state.detail == "connected to redis://x")
    }

    @Test func aWriteErrorWhileFetchingIsDownUntilTheWriterRecovers() {
        var state = BrokerConnectivity()
        state.report(.fetch, connected: true, detail: "connected to redis://x")
        #expect(state.report(.write, connected: false, detail: "timeout"))
        #expect(!state.isConnected)
        #expect(state.detail == "write connection: timeout")
        // The fetch thread going on (or reconnecting) does not hide the writer's failure: no flap back to healthy.
        #expect(!state.report(.fetch, connected: true, detail: "connected to redis://x"))
        #expect(!state.isConnected)
        // The same failure again is no change; another reason is (the supervisor shows the latest).
        #expect(!state.report(.write, connected: false, detail: "timeout"))
        #expect(state.report(.write, connected: false, detail: "connection refused"))
        #expect(state.report(.write, connected: true, detail: "writing to redis://x"))
        #expect(state.isConnected)
        #expect(state.detail == "connected to redis://x")
    }

    @Test func bothDownNamesBothAndFetchAloneComingBackIsNotEnough() {
        var state = BrokerConnectivity()
        state.report(.fetch, connected: true, detail: "up")
        state.report(.fetch, connected: false, detail: "eof")
        state.report(.write, connected: false, detail: "io")
        #expect(state.detail == "fetch connection: eof; write connection: io")
        // Still down, with one reason fewer.
        #expect(state.report(.fetch, connected: true, detail: "up"))
        #expect(!state.isConnected)
        #expect(state.detail == "write connection: io")
        #expect(state.report(.write, connected: true, detail: "ok"))
        #expect(state.isConnected)
    }

    @Test func aFetchLossIsReportedEvenWhileTheWriterIsUp() {
        var state = BrokerConnectivity()
        state.report(.fetch, connected: true, detail: "up")
        state.report(.write, connected: true, detail: "ok")
        #expect(state.report(.fetch, connected: false, detail: "eof"))
        #expect(!state.isConnected)
        #expect(state.detail == "fetch connection: eof")
    }
}
