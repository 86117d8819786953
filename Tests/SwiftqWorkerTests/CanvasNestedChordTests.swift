import OrderedCollections
import SwiftqCore
import Testing

@testable import SwiftqConsumer

/// Chords nested in chains and groups that a worker starts (a chord step of a chain), against the messages a Celery
/// 5.7 worker publishes for the suite's `test_chain_chord_chain_chord`, `test_nested_group_chain`,
/// `test_chord_in_chords_with_chains` and `test_chain_of_two_groups_as_tuple_holds_each_task_once` (captured from
/// a stock worker on Redis): whatever finishes last in a header member reports to the chord, and the chord's size
/// counts it (Celery's `_descend`).
struct CanvasNestedChordTests {
    typealias IDs = CanvasTests.IDs
    static let now = CanvasTests.now
    static let context = CanvasTests.context

    static func task(_ name: String, _ id: String, options: OrderedDictionary<String, JSONValue> = [:]) -> JSONValue {
        var options = options
        options["task_id"] = .string(id)
        return CanvasTests.signature(name, args: [1], options: options, immutable: true)
    }
    static func group(_ id: String, _ tasks: [JSONValue]) -> JSONValue {
        CanvasTests.signature(
            "celery.group",
            options: ["task_id": .string(id)],
            subtaskType: "group",
            kwargs: ["tasks": .array(tasks)]
        )
    }
    static func chain(_ tasks: [JSONValue]) -> JSONValue {
        CanvasTests.signature("celery.chain", subtaskType: "chain", kwargs: ["tasks": .array(tasks)])
    }
    static func chord(_ header: JSONValue, _ body: JSONValue, options: OrderedDictionary<String, JSONValue> = [:])
        -> JSONValue
    {
        CanvasTests.signature(
            "celery.chord",
            options: options,
            subtaskType: "chord",
            kwargs: ["kwargs": [:], "header": header, "body": body]
        )
    }
    static func applyStep(_ step: JSONValue) -> Canvas.Outcome {
        Canvas.afterSuccess(
            CanvasTests.finished(chain: [step]),
            value: 1,
            context: context,
            now: now,
            newID: IDs().make
        )
    }
    static func embed(_ message: OutboundMessage) throws -> JSONValue {
        try #require(try CanvasTests.body(message)[2])
    }

    /// `chain(identity.si(1), chord([identity.si(2), chain(identity.si(3), chord([4, 5], 6))], 7))`.
    @Test func aChordEndingAChainInAHeaderCountsForTheOuterChordWithItsBody() throws {
        let inner = Self.chord(
            Self.group("gi", [Self.task("identity", "t4"), Self.task("identity", "t5")]),
            Self.task("identity", "t6")
        )
        let outerBody = Self.task("identity", "t7")
        let outer = Self.chord(
            Self.group("go", [Self.task("identity", "t2"), Self.chain([Self.task("identity", "t3"), inner])]),
            outerBody
        )
        let started = Self.applyStep(outer)
        #expect(started.chordSetups == [Canvas.ChordSetup(groupID: "go", size: 2)])
        #expect(started.publishes.map { $0.headers["id"] } == ["t2", "t3"])
        // t3 carries the inner chord, whose body is frozen for the outer chord: group "go", index 1, chord t7.
        let carried = try #require(try Self.embed(started.publishes[1])["chain"]?[0])
        let innerBody = try #require(carried["kwargs"]?["body"])
        #expect(innerBody["options"]?["group_id"] == "go")
        #expect(innerBody["options"]?["group_index"] == 1)
        #expect(innerBody["options"]?["chord"]?["options"]?["task_id"] == "t7")

        // When t3 finishes, the inner chord starts: its header reports to "gi", its body keeps "go".
        let nested = Self.applyStep(carried)
        #expect(nested.chordSetups == [Canvas.ChordSetup(groupID: "gi", size: 2)])
        #expect(nested.publishes.map { $0.headers["group"] } == ["gi", "gi"])
        let bodyOfHeader = try #require(try Self.embed(nested.publishes[0])["chord"])
        #expect(bodyOfHeader["options"]?["task_id"] == "t6")
        #expect(bodyOfHeader["options"]?["group_id"] == "go", "Celery's freeze keeps a group id the body has")
        #expect(bodyOfHeader["options"]?["chord"]?["options"]?["task_id"] == "t7")
    }

    /// `chain(add.si(1, 0), group(add.si(1, 100), chain(add.si(1, 200), group(1000, 2000))), add.si(1, 10))`: the
    /// chord counts three tasks, the inner group's tasks report to it with their own positions.
    @Test func aGroupEndingAChainInAHeaderCountsEachOfItsTasks() throws {
        let innerGroup = Self.group("gn", [Self.task("add", "t1000"), Self.task("add", "t2000")])
        let outer = Self.chord(
            Self.group("go", [Self.task("add", "t100"), Self.chain([Self.task("add", "t200"), innerGroup])]),
            Self.task("add", "t10")
        )
        let started = Self.applyStep(outer)
        #expect(started.chordSetups == [Canvas.ChordSetup(groupID: "go", size: 3)])
        let carried = try #require(try Self.embed(started.publishes[1])["chain"]?[0])
        let nested = Self.applyStep(carried)
        #expect(nested.publishes.map { $0.headers["id"] } == ["t1000", "t2000"])
        #expect(nested.publishes.map { $0.headers["group"] } == ["go", "go"])
        #expect(nested.publishes.map { $0.headers["group_index"] } == [0, 1])
        let chord = try #require(try Self.embed(nested.publishes[1])["chord"])
        #expect(chord["options"]?["task_id"] == "t10")
    }

    /// A header chain whose last step is a chord already frozen by the client (`test_chord_in_chords_with_chains`):
    /// the inner chord's body keeps the outer chord's group when the worker starts the inner chord.
    @Test func aBodyFrozenForAnOuterChordKeepsItsGroup() throws {
        let outerBody = Self.task("add", "t22", options: ["group_id": "go"])
        let inner = Self.chord(
            Self.group("gi", [Self.task("add", "a"), Self.task("add", "b")]),
            Self.task("add", "c", options: ["group_id": "go", "group_index": 0, "chord": outerBody])
        )
        let started = Self.applyStep(inner)
        #expect(started.chordSetups == [Canvas.ChordSetup(groupID: "gi", size: 2)])
        let body = try #require(try Self.embed(started.publishes[0])["chord"])
        #expect(body["options"]?["group_id"] == "go")
        #expect(body["options"]?["chord"]?["options"]?["task_id"] == "t22")
    }

    /// `chain(add.si(1, 0), group(add.s(1), add.s(2)), group(tsum.s(), tsum.s()), tsum.s(), add.s(1))`: the outer
    /// chord's body is a chord carrying the rest of the chain in its options; starting it hands that to its body.
    @Test func aChordBodyThatIsAChordPassesTheRestOfTheChainToItsBody() throws {
        let last = Self.task("add", "t-last")
        let innerChord = Self.chord(
            Self.group("gi", [Self.task("tsum", "s1"), Self.task("tsum", "s2")]),
            Self.task("tsum", "s3"),
            options: ["chain": [last]]
        )
        let started = Canvas.apply(innerChord, prepending: [[2, 3]], context: Self.context, now: Self.now) {
            "id-x"
        }
        #expect(started.chordSetups == [Canvas.ChordSetup(groupID: "gi", size: 2)])
        let body = try #require(try Self.embed(started.publishes[0])["chord"])
        #expect(body["options"]?["chain"] == [last])
    }

    @Test func theChordSizeIsCountedAsCeleryDescends() {
        let plain = Self.task("add", "x")
        #expect(Canvas.chordSize(plain) == 1)
        #expect(Canvas.chordSize(Self.group("g", [plain, plain, plain])) == 3)
        #expect(Canvas.chordSize(Self.chain([plain, Self.group("g", [plain, plain])])) == 2)
        #expect(Canvas.chordSize(Self.chain([plain, Self.group("g", [])])) == 1, "the last step that counts")
        #expect(Canvas.chordSize(Self.chord(Self.group("g", [plain, plain]), Self.group("h", [plain]))) == 1)
    }
}
