import Foundation
import SwiftqCore
import Testing

/// The files shipped next to the binaries: systemd units and man pages, checked with the real tools.
@Suite struct PackagingTests {
    static let root = CommandLineTests.repositoryRoot

    @Test func systemdAnalyzeVerifiesTheUnitsWithoutAWord() throws {
        let directory = try TemporaryDirectory()
        let units = try FileManager.default.contentsOfDirectory(atPath: Self.root + "/systemd")
            .filter { $0.hasSuffix(".service") }
        #expect(Set(units) == ["swiftqd.service", "swiftqd@.service"])
        var paths: [String] = []
        for unit in units {
            // verify insists that ExecStart's binary exists: point it at the one just built.
            let text = try String(contentsOfFile: Self.root + "/systemd/" + unit, encoding: .utf8)
                .replacingOccurrences(of: "/usr/sbin/swiftqd", with: Binaries.swiftqd)
            paths.append(try directory.write(unit, text))
            if unit == "swiftqd@.service" {
                // The template as an instance too: specifiers such as %i are only expanded there.
                paths.append(try directory.write("swiftqd@reports.service", text))
            }
        }
        let result = try runCommand("/usr/bin/systemd-analyze", ["verify", "--man=no"] + paths)
        #expect(result.status == 0)
        #expect(result.stdout.isEmpty && result.stderr.isEmpty, "\(result.stdout)\(result.stderr)")
    }

    @Test(arguments: ["swiftqd.service", "swiftqd@.service"])
    func theUnitIsANotifyServiceWithReloadWatchdogAndSandbox(_ name: String) throws {
        let unit = try String(contentsOfFile: Self.root + "/systemd/" + name, encoding: .utf8)
        for line in [
            "Type=notify", "ExecReload=/bin/kill -HUP $MAINPID", "WatchdogSec=", "RuntimeDirectory=swiftq",
            "User=swiftq", "ProtectSystem=strict", "NoNewPrivileges=yes", "PrivateTmp=yes", "KillMode=mixed",
            "RestartPreventExitStatus=78", "Restart=on-failure", "PrivateMounts=yes",
        ] {
            #expect(unit.contains("\n" + line), "\(name): missing \(line)")
        }
        // The stop timeout leaves the warm shutdown its whole default time, and a margin to stop the children.
        let timeout = unit.split(separator: "\n").first { $0.hasPrefix("TimeoutStopSec=") }
            .flatMap { Int($0.dropFirst("TimeoutStopSec=".count)) }
        let shutdown = Configuration.Worker().shutdownTimeout
        #expect(timeout.map { Duration.seconds($0) > shutdown + .seconds(10) } == true, "\(name): TimeoutStopSec")
    }

    @Test func theTemplateGivesEachInstanceItsFileRuntimeDirectoryAndSocket() throws {
        let unit = try String(contentsOfFile: Self.root + "/systemd/swiftqd@.service", encoding: .utf8)
        #expect(unit.contains("\nRuntimeDirectory=swiftq/%i\n"))
        let arguments = "--config /etc/swiftq/%i.yaml --socket /run/swiftq/%i/swiftqd.sock"
        #expect(unit.contains("\nExecStart=/usr/sbin/swiftqd \(arguments)\n"))
        #expect(unit.contains("\nExecStartPre=/usr/sbin/swiftqd --check-config \(arguments)\n"))
    }

    /// `systemd-analyze security` scores the sandbox; the README reports the score, so it must stay true.
    @Test func theSandboxExposureIsLowAndTheREADMEReportsIt() throws {
        let directory = try TemporaryDirectory()
        let readme = try String(contentsOfFile: Self.root + "/README.md", encoding: .utf8)
        for (source, name) in [("swiftqd.service", "swiftqd.service"), ("swiftqd@.service", "swiftqd@reports.service")]
        {
            let text = try String(contentsOfFile: Self.root + "/systemd/" + source, encoding: .utf8)
                .replacingOccurrences(of: "/usr/sbin/swiftqd", with: Binaries.swiftqd)
            let path = try directory.write(name, text)
            let result = try runCommand("/usr/bin/systemd-analyze", ["security", "--offline=true", path])
            let match = result.stdout.firstMatch(of: #/Overall exposure level for [^:]+: ([0-9.]+) /#)
            let exposure = match.flatMap { Double($0.1) }
            #expect(exposure.map { $0 <= 2.0 } == true, "\(name): \(result.stdout.suffix(200))\(result.stderr)")
            if let match {
                #expect(readme.contains("exposure \(match.1)"), "README does not report exposure \(match.1)")
            }
        }
    }

    @Test func manPagesPassMandocLint() throws {
        let pages = ["swiftqd.8", "swiftqctl.1", "swiftq.yaml.5"].map { Self.root + "/man/" + $0 }
        for page in pages { #expect(FileManager.default.fileExists(atPath: page), "missing \(page)") }
        let result = try runCommand("/usr/bin/mandoc", ["-Tlint", "-W", "warning"] + pages)
        #expect(result.status == 0)
        #expect(result.stdout.isEmpty && result.stderr.isEmpty, "\(result.stdout)\(result.stderr)")
    }
}
