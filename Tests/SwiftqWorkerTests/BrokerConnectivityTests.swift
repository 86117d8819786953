import SwiftqConsumer
import Testing

/// The worker's broker state derived from each connection's reports: one connection's error is not undone by
/// another's success, and a recovery shows only when every connection that reported is up again.
@Suite struct BrokerConnectivityTests {
    @Test func notConnectedUntilTheFetchConnectionIsEvenIfTheWriterWrote() {
        var state = BrokerConnectivity()
        #expect(!state.isConnected)
        #expect(state.detail == "not connected")
        let report1 = state.report(.write, connected: true, detail: "writing")
        #expect(!report1)
        #expect(!state.isConnected)
        let report2 = state.report(.fetch, connected: true, detail: "connected to redis://x")
        #expect(report2)
        #expect(state.isConnected)
        #expect(state.detail == "connected to redis://x")
    }

    @Test func aWriteErrorWhileFetchingIsDownUntilTheWriterRecovers() {
        var state = BrokerConnectivity()
        state.report(.fetch, connected: true, detail: "connected to redis://x")
        let report3 = state.report(.write, connected: false, detail: "timeout")
        #expect(report3)
        #expect(!state.isConnected)
        #expect(state.detail == "write connection: timeout")
        // The fetch thread going on (or reconnecting) does not hide the writer's failure: no flap back to healthy.
        let report4 = state.report(.fetch, connected: true, detail: "connected to redis://x")
        #expect(!report4)
        #expect(!state.isConnected)
        // The same failure again is no change; another reason is (the supervisor shows the latest).
        let report5 = state.report(.write, connected: false, detail: "timeout")
        #expect(!report5)
        let report6 = state.report(.write, connected: false, detail: "connection refused")
        #expect(report6)
        let report7 = state.report(.write, connected: true, detail: "writing to redis://x")
        #expect(report7)
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
        let report8 = state.report(.fetch, connected: true, detail: "up")
        #expect(report8)
        #expect(!state.isConnected)
        #expect(state.detail == "write connection: io")
        let report9 = state.report(.write, connected: true, detail: "ok")
        #expect(report9)
        #expect(state.isConnected)
    }

    @Test func aFetchLossIsReportedEvenWhileTheWriterIsUp() {
        var state = BrokerConnectivity()
        state.report(.fetch, connected: true, detail: "up")
        state.report(.write, connected: true, detail: "ok")
        let report10 = state.report(.fetch, connected: false, detail: "eof")
        #expect(report10)
        #expect(!state.isConnected)
        #expect(state.detail == "fetch connection: eof")
    }
}
