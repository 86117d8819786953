import OrderedCollections

/// A JSON object kept as its validated text until something reads its members: a Redis envelope's task headers.
///
/// The worker reads a task's headers through the typed fields that one pass over the text found (``TaskMessage``).
/// Building the dictionary besides (a hash table of Celery's ~20 headers, a string for every key) and freeing it
/// after the task was about a sixth of the work the worker did per task on the thread that reads Redis, for
/// something only retries, replacements, dead letters and a task that reads its own request look at.
///
/// Reading ``members`` while the text is kept decodes it each time; a change in place (``mutableMembers``) decodes it
/// for good. Two objects are equal when their members are, whichever form each is in.
package struct LazyJSONObject: Sendable, Equatable {
    /// The members, when decoded or given as a dictionary; empty while ``text`` is kept.
    private var decoded: OrderedDictionary<String, JSONValue>
    /// The object's JSON text, validated when it was stored, until the members are decoded for good.
    private var text: ArraySlice<UInt8>?

    /// An object of these members.
    package init(_ members: OrderedDictionary<String, JSONValue> = [:]) {
        decoded = members
        text = nil
    }

    /// An object read from `text`, which the caller has validated as one JSON object (for example with
    /// ``JSONValue/parsing(_:deferring:visitingMembersOf:maxDepth:_:)``).
    ///
    /// The text is copied: a slice would keep the whole document it was cut from alive (an envelope with a body of
    /// megabytes, for as long as its task is held).
    package init(validatedText text: ArraySlice<UInt8>) {
        decoded = [:]
        self.text = Array(text)[...]
    }

    /// Whether the members are a dictionary already (reading them costs nothing).
    package var isDecoded: Bool { text == nil }

    /// The text kept while the members are not decoded: an array of its own (see ``init(validatedText:)``).
    package var keptText: ArraySlice<UInt8>? { text }

    /// The members, in document order; a key given twice has its last value, as in ``JSONValue/init(parsing:maxDepth:)``.
    package var members: OrderedDictionary<String, JSONValue> {
        guard let text else { return decoded }
        // The text was validated when it was stored: this parse does not fail (were it to, the object reads as
        // empty, not as a crash).
        return (try? JSONValue(parsing: text))?.objectValue ?? [:]
    }

    /// The members, for a change in place: decoded for good first.
    package var mutableMembers: OrderedDictionary<String, JSONValue> {
        get { members }
        _modify {
            if text != nil {
                decoded = members
                text = nil
            }
            yield &decoded
        }
    }

    package static func == (lhs: LazyJSONObject, rhs: LazyJSONObject) -> Bool {
        if let left = lhs.text, let right = rhs.text, left.elementsEqual(right) { return true }
        return lhs.members == rhs.members
    }
}
