import Testing

@testable import SwiftqBootsteps

/// Records what the steps did, in order.
final class Journal {
    var events: [String] = []
    var failing: Set<String> = []
    var disabled: Set<String> = []
}

struct StepFailure: Error, CustomStringConvertible {
    var description: String { "boom" }
}

func step(_ name: String, requires: [String] = []) -> Bootstep<Journal> {
    Bootstep(
        name: name,
        requires: requires,
        isEnabled: { !$0.disabled.contains(name) },
        start: { journal in
            if journal.failing.contains(name) { throw StepFailure() }
            journal.events.append("start \(name)")
        },
        stop: { journal in journal.events.append("stop \(name)") }
    )
}

@Suite struct BlueprintTests {
    @Test func startsRequirementsFirstAndKeepsDeclarationOrderForTies() throws {
        let blueprint = try Blueprint(
            name: "supervisor",
            steps: [
                step("Notify", requires: ["Consumer", "Control"]),
                step("Consumer", requires: ["Pool"]),
                step("Control"),
                step("Pool", requires: ["Control"]),
                step("Logging"),
            ]
        )
        #expect(blueprint.order.map(\.name) == ["Control", "Pool", "Consumer", "Notify", "Logging"])
    }

    @Test func stopsInReverseOrderExactlyOnce() throws {
        let blueprint = try Blueprint(
            name: "b",
            steps: [step("C", requires: ["B"]), step("B", requires: ["A"]), step("A")]
        )
        let journal = Journal()
        let started = try blueprint.start(journal)
        #expect(started.names == ["A", "B", "C"])
        started.stop(journal)
        started.stop(journal)
        #expect(journal.events == ["start A", "start B", "start C", "stop C", "stop B", "stop A"])
    }

    @Test func missingRequirementNamesBothSteps() {
        #expect(
            throws: BootstepError(
                code: .missingRequirement,
                steps: ["Consumer", "Broker"],
                message: "b blueprint: step \"Consumer\" requires \"Broker\", which is not a step"
            )
        ) {
            try Blueprint(name: "b", steps: [step("Pool"), step("Consumer", requires: ["Broker"])])
        }
    }

    @Test func cycleNamesTheStepsOfTheLoop() {
        do {
            _ = try Blueprint(
                name: "b",
                steps: [
                    step("Control"),
                    step("A", requires: ["C", "Control"]),
                    step("B", requires: ["A"]),
                    step("C", requires: ["B"]),
                ]
            )
            Issue.record("a cycle was accepted")
        } catch {
            #expect(error.code == .cycle)
            #expect(Set(error.steps) == ["A", "B", "C"])
            #expect(error.steps.first == error.steps.last)
            #expect(error.message.contains("cycle"))
            #expect(!error.steps.contains("Control"))
        }
    }

    @Test func selfRequirementIsACycle() {
        #expect(throws: BootstepError.self) { try Blueprint(name: "b", steps: [step("A", requires: ["A"])]) }
    }

    @Test func duplicateNamesAreRejected() {
        do {
            _ = try Blueprint(name: "b", steps: [step("A"), step("A")])
            Issue.record("duplicate accepted")
        } catch {
            #expect(error.code == .duplicateStep)
            #expect(error.steps == ["A"])
        }
    }

    @Test func failedStartStopsWhatAlreadyStartedInReverse() throws {
        let blueprint = try Blueprint(
            name: "b",
            steps: [step("A"), step("B", requires: ["A"]), step("C", requires: ["B"]), step("D", requires: ["C"])]
        )
        let journal = Journal()
        journal.failing = ["C"]
        do {
            _ = try blueprint.start(journal)
            Issue.record("start succeeded")
        } catch {
            #expect(error.code == .startFailed)
            #expect(error.steps == ["C"])
            #expect(error.cause is StepFailure)
            #expect(error.message.contains("\"C\" failed to start: boom"))
        }
        #expect(journal.events == ["start A", "start B", "stop B", "stop A"])
    }

    @Test func disabledStepIsSkippedButKeepsOrdering() throws {
        let blueprint = try Blueprint(
            name: "b",
            steps: [step("Beat", requires: ["Consumer"]), step("Consumer", requires: ["Broker"]), step("Broker")]
        )
        let journal = Journal()
        journal.disabled = ["Consumer"]
        let started = try blueprint.start(journal)
        #expect(started.names == ["Broker", "Beat"])
        started.stop(journal)
        #expect(journal.events == ["start Broker", "start Beat", "stop Beat", "stop Broker"])
    }

    @Test func dotRendersNodesEdgesAndDisabledSteps() throws {
        let blueprint = try Blueprint(
            name: "supervisor",
            steps: [step("Pool"), step("Consumer", requires: ["Pool"]), step("Beat", requires: ["Consumer"])]
        )
        let journal = Journal()
        journal.disabled = ["Beat"]
        #expect(
            blueprint.dot(context: journal) == """
                digraph "supervisor" {
                    rankdir=BT;
                    node [shape=box];
                    "Pool";
                    "Consumer";
                    "Beat" [style=dashed];
                    "Consumer" -> "Pool";
                    "Beat" -> "Consumer";
                }

                """
        )
    }
}
