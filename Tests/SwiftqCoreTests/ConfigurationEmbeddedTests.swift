import Testing

@testable import SwiftqCore

@Suite struct ConfigurationEmbeddedTests {
    @Test func embeddedIsNormalisedWhateverItsCase() throws {
        let configuration = try Configuration.parse(
            "broker:\n  url: EMBEDDED\nresult_backend:\n  url: Embedded\n",
            file: "c.yaml"
        )
        #expect(configuration.broker.url == "embedded")
        #expect(configuration.resultBackend.url == "embedded")
        #expect(Configuration.EmbeddedBroker.isUsed(by: configuration))
    }

    @Test func embeddedWithAnAddressIsRefused() {
        do {
            _ = try Configuration.parse("broker:\n  url: embedded://localhost\n", file: "c.yaml")
            Issue.record("accepted embedded://localhost")
        } catch {
            #expect(
                error.description
                    == "c.yaml:2:8: broker.url: the embedded broker takes no address: write `embedded` alone"
            )
        }
    }

    @Test func theEmbeddedBrokerSocketLivesNextToTheControlSocket() throws {
        let configuration = try Configuration.parse("control:\n  socket: /run/swiftq/swiftqd.sock\n", file: "c.yaml")
        #expect(Configuration.EmbeddedBroker.socketPath(for: configuration) == "/run/swiftq/swiftq-broker.sock")
        #expect(
            Configuration.EmbeddedBroker.url(for: configuration, database: 1)
                == "redis+socket:///run/swiftq/swiftq-broker.sock?db=1"
        )
    }
}
