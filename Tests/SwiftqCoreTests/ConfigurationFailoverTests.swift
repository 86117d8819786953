import SwiftqCore
import Testing

/// kombu's failover URLs in the configuration: `sentinel://` lists with `master_name`, and `;`-separated AMQP hosts.
@Suite("Configuration: broker failover URLs")
struct ConfigurationFailoverTests {
    static func diagnostics(_ yaml: String, environment: [String: String] = [:]) -> [String] {
        ConfigurationEffectiveTests.diagnostics(yaml, environment: environment)
    }

    @Test func aSentinelListWithItsMasterNameIsAccepted() throws {
        let yaml = """
            broker:
              url: sentinel://:pw@127.0.0.1:26379/0;sentinel://127.0.0.1:26380;sentinel://127.0.0.1:26381
              master_name: mymaster
            result_backend:
              url: sentinel://127.0.0.1:26379/1;sentinel://127.0.0.1:26380/1
              master_name: mymaster

            """
        let configuration = try Configuration.parse(yaml, file: "config.yaml")
        #expect(configuration.broker.masterName == "mymaster")
        #expect(configuration.resultBackend.masterName == "mymaster")
        #expect(configuration.broker.url.hasPrefix("sentinel://:pw@127.0.0.1:26379/0;"))
        // Rendered and read back the same; masked, every element of the list loses its password.
        #expect(try Configuration.parse(configuration.yaml(maskingSecrets: false), file: "p.yaml") == configuration)
        let masked = configuration.yaml(maskingSecrets: true)
        #expect(masked.contains("  master_name: mymaster\n"))
        #expect(!masked.contains(":pw@"))
    }

    @Test func aSentinelURLWithoutMasterNameIsAnError() {
        #expect(
            Self.diagnostics("broker:\n  url: sentinel://127.0.0.1:26379;sentinel://127.0.0.1:26380\n") == [
                "config.yaml:2:3: broker.url: broker.url lists Redis Sentinels but broker.master_name is not set: "
                    + "name the master they monitor (kombu's transport option master_name)"
            ]
        )
        #expect(
            Self.diagnostics("result_backend:\n  url: sentinel://h:26379/1\n") == [
                "config.yaml:2:3: result_backend.url: result_backend.url lists Redis Sentinels but "
                    + "result_backend.master_name is not set: name the master they monitor (kombu's transport "
                    + "option master_name)"
            ]
        )
        // Through the environment too, named by its variable.
        #expect(
            Self.diagnostics(
                "broker:\n  url: redis://h/0\n",
                environment: ["SWIFTQ_BROKER_URL": "sentinel://h:26379"]
            ) == [
                "config.yaml:2:3: broker.url: SWIFTQ_BROKER_URL lists Redis Sentinels but broker.master_name is not "
                    + "set: name the master they monitor (kombu's transport option master_name)"
            ]
        )
    }

    @Test func aMasterNameWithoutSentinelsIsAnError() {
        #expect(
            Self.diagnostics("broker:\n  url: redis://h:6379/0\n  master_name: mymaster\n") == [
                "config.yaml:3:3: broker.master_name: broker.master_name is \"mymaster\", but broker.url is not a "
                    + "sentinel:// URL; remove broker.master_name or list the sentinels in broker.url"
            ]
        )
        #expect(
            Self.diagnostics("broker:\n  master_name: \"my master\"\n") == [
                "config.yaml:2:16: broker.master_name: expected the master's name, as the sentinels monitor it (no "
                    + "spaces), got \"my master\""
            ]
        )
    }

    @Test func anEmptySentinelListIsAnError() {
        #expect(
            Self.diagnostics("broker:\n  url: sentinel://\n  master_name: m\n") == [
                "config.yaml:2:8: broker.url: sentinel 1 names no host: the list of sentinels is empty there; write "
                    + "sentinel://HOST[:PORT] for each sentinel"
            ]
        )
        #expect(
            Self.diagnostics("broker:\n  url: sentinel://a:1;;sentinel://b:2\n  master_name: m\n") == [
                "config.yaml:2:8: broker.url: sentinel 2 of the list is empty: separate sentinels with one ';', as in "
                    + "sentinel://h1:26379;sentinel://h2:26379"
            ]
        )
        #expect(
            Self.diagnostics("broker:\n  url: sentinel://a:1;redis://b:2\n  master_name: m\n") == [
                "config.yaml:2:8: broker.url: sentinel 2 of the list is not a sentinel:// URL: every element must be one"
            ]
        )
        #expect(
            Self.diagnostics("broker:\n  url: \"sentinel://:pw@:26379\"\n  master_name: m\n") == [
                "config.yaml:2:8: broker.url: sentinel 1 names no host: the list of sentinels is empty there; write "
                    + "sentinel://HOST[:PORT] for each sentinel"
            ]
        )
    }

    @Test func amqpHostListsAreAcceptedAndOtherListsAreNot() throws {
        let configuration = try Configuration.parse(
            "broker:\n  url: amqp://u:p@h1:5672//;amqp://u:p@h2:5673//\n  queue_type: quorum\n",
            file: "config.yaml"
        )
        #expect(configuration.broker.url == "amqp://u:p@h1:5672//;amqp://u:p@h2:5673//")
        #expect(configuration.broker.queueType == .quorum)
        #expect(
            configuration.yaml(maskingSecrets: true).contains(
                "  url: \"amqp://u:***@h1:5672//;amqp://u:***@h2:5673//\"\n"
            )
        )
        #expect(
            Self.diagnostics("broker:\n  url: amqp://h1//;amqps://h2//\n") == [
                "config.yaml:2:8: broker.url: host 2 of the failover list is not an amqp:// URL: every element must "
                    + "use the first one's scheme"
            ]
        )
        #expect(
            Self.diagnostics("broker:\n  url: amqp://h1//;\n") == [
                "config.yaml:2:8: broker.url: host 2 of the failover list is empty: separate URLs with one ';'"
            ]
        )
        #expect(
            Self.diagnostics("broker:\n  url: redis://h1/0;redis://h2/0\n") == [
                "config.yaml:2:8: broker.url: a ';'-separated list of URLs is a failover list: amqp:// hosts for "
                    + "RabbitMQ, or sentinel:// sentinels (with broker.master_name) for Redis; redis:// URLs cannot "
                    + "be listed"
            ]
        )
    }

    @Test func urlCredentialsWorkOnEveryElementOfAList() {
        #expect(
            URLCredentials.masked("amqp://u:a@h1//;amqp://u:b@h2//") == "amqp://u:***@h1//;amqp://u:***@h2//"
        )
        #expect(URLCredentials.hasPassword("amqp://u@h1//;amqp://u:b@h2//"))
        #expect(!URLCredentials.hasPassword("sentinel://h1;sentinel://h2"))
        #expect(
            URLCredentials.settingPassword("x", in: "amqp://u@h1//;amqp://u@h2//") == "amqp://u:x@h1//;amqp://u:x@h2//"
        )
        // kombu reads the master's password from the first sentinel URL.
        #expect(
            URLCredentials.settingPassword("x", in: "sentinel://h1/0;sentinel://h2/0")
                == "sentinel://:x@h1/0;sentinel://h2/0"
        )
    }
}
