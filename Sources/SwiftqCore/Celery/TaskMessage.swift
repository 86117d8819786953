import OrderedCollections

/// A task request in Celery's message protocol 2, as the worker runs it (protocol.rst, "Version 2";
/// celery-wire-protocol.md §1).
///
/// Decode one with ``decode(_:)`` from a ``RedisEnvelope``; build the envelope for one with
/// ``redisEnvelope(queue:priority:replyTo:deliveryTag:now:)``.
///
/// The typed properties are what the worker reads; ``headers`` keeps every header exactly as received, custom ones
/// included, because Python carries them over on retries. When an envelope is built, the typed properties are
/// authoritative for the headers they stand for, and ``headers`` supplies the rest (custom headers, `stamps`,
/// `stamped_headers`, `replaced_task_nesting`). Changing a typed property does not rewrite ``headers``, and equality
/// compares both, so a message changed after creation equals its decoded envelope only in the typed properties.
public struct TaskMessage: Sendable, Equatable, CustomReflectable {
    /// The `timelimit` header: `[hard, soft]` in seconds, `null` for "use the task's default".
    ///
    /// The wire order is **hard first**: `time_limit=30, soft_time_limit=20` is sent as `[30, 20]` (§1.2, trap 1).
    /// protocol.rst says `(soft, hard)`, which is wrong; Celery's `request.py` unpacks
    /// `time_limit, soft_time_limit = timelimit`.
    public struct TimeLimit: Sendable, Equatable {
        /// `time_limit`: kill the task after this many seconds.
        public var hard: Double?
        /// `soft_time_limit`: raise `SoftTimeLimitExceeded` in the task after this many seconds.
        public var soft: Double?

        /// Creates a time limit; `nil` means no limit given.
        public init(hard: Double? = nil, soft: Double? = nil) {
            self.hard = hard
            self.soft = soft
        }
    }

    /// `id` header: the task id (a UUID string), also the result key's suffix. Required.
    public var id: String {
        get { storage.fields.id }
        _modify {
            makeUnique()
            yield &storage.fields.id
        }
    }
    /// `task` header: the registered task name. Required; its presence marks a protocol 2 message.
    public var name: String {
        get { storage.fields.name }
        _modify {
            makeUnique()
            yield &storage.fields.name
        }
    }
    /// `shadow` header: a display name that replaces ``name`` in logs and events (§1.2).
    public var shadow: String? {
        get { storage.fields.shadow }
        _modify {
            makeUnique()
            yield &storage.fields.shadow
        }
    }
    /// Positional arguments: the body's first element.
    public var args: [JSONValue] {
        get { storage.fields.args }
        _modify {
            makeUnique()
            yield &storage.fields.args
            storage.fields.wire.bytes = []
        }
    }
    /// Keyword arguments: the body's second element.
    public var kwargs: OrderedDictionary<String, JSONValue> {
        get { storage.fields.kwargs }
        _modify {
            makeUnique()
            yield &storage.fields.kwargs
            storage.fields.wire.bytes = []
        }
    }
    /// The body's third element: `{"callbacks", "errbacks", "chain", "chord"}` (§1.3), or `.null`. Kept whole,
    /// since signatures are passed on rather than interpreted here.
    public var embed: JSONValue {
        get { storage.fields.embed }
        _modify {
            makeUnique()
            yield &storage.fields.embed
            storage.fields.wire.bytes = []
        }
    }
    /// Every header as received, custom ones included, in wire order.
    ///
    /// A message decoded from a Redis envelope keeps its headers as text until they are read (``LazyJSONObject``):
    /// each read decodes them, so a reader of several headers takes the dictionary once.
    public var headers: OrderedDictionary<String, JSONValue> {
        get { storage.fields.headers.members }
        _modify {
            makeUnique()
            yield &storage.fields.headers.mutableMembers
        }
    }
    /// `root_id` header: the id of the first task of the workflow; Python sends the task's own id by default.
    public var rootID: String? {
        get { storage.fields.rootID }
        _modify {
            makeUnique()
            yield &storage.fields.rootID
        }
    }
    /// `parent_id` header: the id of the task that sent this one, if it was sent from a task.
    public var parentID: String? {
        get { storage.fields.parentID }
        _modify {
            makeUnique()
            yield &storage.fields.parentID
        }
    }
    /// `group` header: the group id, for group members and chord headers.
    public var group: String? {
        get { storage.fields.group }
        _modify {
            makeUnique()
            yield &storage.fields.group
        }
    }
    /// `group_index` header: the position in the group (the score of ordered chord results).
    public var groupIndex: Int? {
        get { storage.fields.groupIndex }
        _modify {
            makeUnique()
            yield &storage.fields.groupIndex
        }
    }
    /// `eta` header: do not run before this instant (§1.4).
    public var eta: CeleryTimestamp? {
        get { storage.fields.eta }
        _modify {
            makeUnique()
            yield &storage.fields.eta
        }
    }
    /// `expires` header: revoke instead of running after this instant (§1.4).
    public var expires: CeleryTimestamp? {
        get { storage.fields.expires }
        _modify {
            makeUnique()
            yield &storage.fields.expires
        }
    }
    /// `retries` header: how many times the task has been retried; 0 when absent.
    public var retries: Int {
        get { storage.fields.retries }
        _modify {
            makeUnique()
            yield &storage.fields.retries
        }
    }
    /// `timelimit` header, `[hard, soft]`.
    public var timeLimit: TimeLimit {
        get { storage.fields.timeLimit }
        _modify {
            makeUnique()
            yield &storage.fields.timeLimit
        }
    }
    /// `argsrepr` header: Python's `saferepr` of the args, for events and logs (see ``PythonRepr``).
    public var argsRepr: String? {
        get { storage.fields.argsRepr }
        _modify {
            makeUnique()
            yield &storage.fields.argsRepr
        }
    }
    /// `kwargsrepr` header: Python's `saferepr` of the kwargs.
    public var kwargsRepr: String? {
        get { storage.fields.kwargsRepr }
        _modify {
            makeUnique()
            yield &storage.fields.kwargsRepr
        }
    }
    /// `origin` header: the sender's node name, `gen<pid>@<host>` for a client.
    public var origin: String? {
        get { storage.fields.origin }
        _modify {
            makeUnique()
            yield &storage.fields.origin
        }
    }
    /// `ignore_result` header: `true` to store no result; `nil` (sent as `null` by `send_task` of an unknown name)
    /// means the task's own default.
    public var ignoreResult: Bool? {
        get { storage.fields.ignoreResult }
        _modify {
            makeUnique()
            yield &storage.fields.ignoreResult
        }
    }
    /// `reply_to` property: the client's oid, used by the `rpc://` backend (§1.1).
    public var replyTo: String? {
        get { storage.fields.replyTo }
        _modify {
            makeUnique()
            yield &storage.fields.replyTo
        }
    }
    /// `correlation_id` property: the task id, as Python sends it.
    public var correlationID: String? {
        get { storage.fields.correlationID }
        _modify {
            makeUnique()
            yield &storage.fields.correlationID
        }
    }
    /// Whether kombu restored this message after another consumer failed to ack it (§2.6).
    public var redelivered: Bool {
        get { storage.fields.redelivered }
        _modify {
            makeUnique()
            yield &storage.fields.redelivered
        }
    }
    /// The body as it arrived (inflated when compressed): the JSON text `[args, kwargs, embed]` that ``args``,
    /// ``kwargs`` and ``embed`` were decoded from. Handed to the pool child as it is, never encoded again. Empty for
    /// a message built in code, and emptied when ``args``, ``kwargs`` or ``embed`` change, so it never disagrees
    /// with them. Not part of a message's identity (`==`): the same task formatted differently is the same message.
    public var body: [UInt8] {
        get { storage.fields.wire.bytes }
        _modify {
            makeUnique()
            yield &storage.fields.wire.bytes
        }
    }

    /// How the broker delivered the message: its properties as they arrived (kombu's names: `correlation_id`,
    /// `reply_to`, `priority`, `delivery_mode`, `app_id`, …; on Redis also `delivery_info`, `body_encoding` and
    /// `delivery_tag`), and the exchange and routing key it was published with. What Celery's request shows as
    /// `properties` and `delivery_info`. Empty for a message built in code. Like ``body``, not part of a message's
    /// identity (`==`): it describes one delivery, not the task.
    public var received: Received {
        get { storage.fields.delivery.value }
        _modify {
            makeUnique()
            yield &storage.fields.delivery.value
        }
    }

    /// The fields, in one box shared by copies until one of them changes: a message passes by value from the
    /// fetch thread to the consumer loop, into its deliveries and out again for every result, and copying two dozen
    /// strings and collections (a retain each) at every step was a visible share of the loop.
    private var storage: Storage

    /// Makes ``storage`` this message's own before a change: a box that another copy shares is copied first.
    private mutating func makeUnique() {
        if !isKnownUniquelyReferenced(&storage) { storage = Storage(storage.fields) }
    }

    public static func == (lhs: TaskMessage, rhs: TaskMessage) -> Bool {
        lhs.storage === rhs.storage || lhs.storage.fields == rhs.storage.fields
    }

    /// The fields, not the box, in `dump`, test failures and `"\(message)"`.
    public var customMirror: Mirror { Mirror(reflecting: storage.fields) }

    /// Every field; internal so that the decoder fills them in one value and boxes it once (setting each through
    /// its accessor checked the box's uniqueness and exclusive access about twenty times per message).
    struct Fields: Sendable, Equatable {
        var id: String
        var name: String
        var shadow: String? = nil
        var args: [JSONValue]
        var kwargs: OrderedDictionary<String, JSONValue>
        var embed: JSONValue
        var headers: LazyJSONObject
        var rootID: String? = nil
        var parentID: String? = nil
        var group: String? = nil
        var groupIndex: Int? = nil
        var eta: CeleryTimestamp? = nil
        var expires: CeleryTimestamp? = nil
        var retries: Int
        var timeLimit: TimeLimit
        var argsRepr: String? = nil
        var kwargsRepr: String? = nil
        var origin: String? = nil
        var ignoreResult: Bool? = nil
        var replyTo: String? = nil
        var correlationID: String? = nil
        var redelivered: Bool
        var wire = WireBody()
        var delivery = DeliveryDetails()
        /// `x-delivery-count` as the decoder found it, for headers it kept as text (see ``deliveryCount``).
        var deliveryCount = FoundDeliveryCount()
    }

    /// ``Fields/deliveryCount``, equal to any other: the headers it was read from are compared.
    struct FoundDeliveryCount: Sendable, Equatable {
        var value: Int64?
        static func == (_: FoundDeliveryCount, _: FoundDeliveryCount) -> Bool { true }
    }

    /// The box. `@unchecked Sendable` because it is only changed through the accessors above, each of which first
    /// makes it its message's own (``makeUnique()``): a box that two messages share (and so possibly two threads) is
    /// never written.
    private final class Storage: @unchecked Sendable {
        var fields: Fields

        init(_ fields: consuming Fields) {
            self.fields = fields
        }
    }

    /// See ``received``.
    public struct Received: Sendable, Equatable {
        public var properties: OrderedDictionary<String, JSONValue> = [:]
        public var exchange: String?
        public var routingKey: String?

        public init(
            properties: OrderedDictionary<String, JSONValue> = [:],
            exchange: String? = nil,
            routingKey: String? = nil
        ) {
            self.properties = properties
            self.exchange = exchange
            self.routingKey = routingKey
        }

        /// The message priority (`properties.priority`), nil when it has none.
        public var priority: Int? {
            properties["priority"]?.intValue.map { Int(clamping: $0) }
        }
    }

    /// ``received``, equal to any other.
    struct DeliveryDetails: Sendable, Equatable {
        var value = Received()
        static func == (_: DeliveryDetails, _: DeliveryDetails) -> Bool { true }
    }

    /// The wire form of the body, equal to any other: see ``body``.
    struct WireBody: Sendable, Equatable {
        var bytes: [UInt8] = []
        static func == (_: WireBody, _: WireBody) -> Bool { true }
    }

    /// The embed Python 5.7 sends when there is nothing to embed (§1.3). A Python worker also accepts `null` and `{}`.
    public static let defaultEmbed: JSONValue = ["callbacks": nil, "errbacks": nil, "chain": nil, "chord": nil]

    /// Creates a task message with Python's defaults: `root_id` is the task's own id, `embed` is ``defaultEmbed``,
    /// `argsrepr`/`kwargsrepr` are computed with ``PythonRepr``, and ``headers`` is filled with the headers an
    /// envelope for this message carries (in Python's order, `extraHeaders` last), so that a message survives
    /// ``redisEnvelope(queue:priority:replyTo:deliveryTag:now:)`` and ``decode(_:)`` unchanged.
    public init(
        id: String,
        name: String,
        args: [JSONValue] = [],
        kwargs: OrderedDictionary<String, JSONValue> = [:],
        embed: JSONValue = TaskMessage.defaultEmbed,
        shadow: String? = nil,
        rootID: String? = nil,
        parentID: String? = nil,
        group: String? = nil,
        groupIndex: Int? = nil,
        eta: CeleryTimestamp? = nil,
        expires: CeleryTimestamp? = nil,
        retries: Int = 0,
        timeLimit: TimeLimit = TimeLimit(),
        argsRepr: String? = nil,
        kwargsRepr: String? = nil,
        origin: String? = nil,
        ignoreResult: Bool? = nil,
        replyTo: String? = nil,
        correlationID: String? = nil,
        extraHeaders: OrderedDictionary<String, JSONValue> = [:],
        redelivered: Bool = false
    ) {
        storage = Storage(
            Fields(
                id: id,
                name: name,
                shadow: shadow,
                args: args,
                kwargs: kwargs,
                embed: embed,
                headers: LazyJSONObject(),
                rootID: rootID ?? id,
                parentID: parentID,
                group: group,
                groupIndex: groupIndex,
                eta: eta,
                expires: expires,
                retries: retries,
                timeLimit: timeLimit,
                argsRepr: argsRepr ?? PythonRepr.argsRepr(args),
                kwargsRepr: kwargsRepr ?? PythonRepr.repr(.object(kwargs)),
                origin: origin,
                ignoreResult: ignoreResult,
                replyTo: replyTo,
                correlationID: correlationID ?? id,
                redelivered: redelivered
            )
        )
        self.headers = wireHeaders(extra: extraHeaders)
    }

    /// A message of `fields` as they are: the decoder's result.
    init(fields: consuming Fields) {
        storage = Storage(fields)
    }

    /// The name to show in logs and events: ``shadow`` when set, else ``name`` (Celery's `shadow or task`).
    public var displayName: String {
        shadow ?? name
    }

    /// `embed.callbacks`: signatures to apply to the result on success (`link`); empty when none.
    public var callbacks: [JSONValue] {
        embed["callbacks"]?.arrayValue ?? []
    }

    /// `embed.errbacks`: signatures to call on failure (`link_error`); empty when none.
    public var errbacks: [JSONValue] {
        embed["errbacks"]?.arrayValue ?? []
    }

    /// `embed.chain`: the rest of the chain **in reverse order**; the next task is the last element (§1.3).
    public var chain: [JSONValue] {
        embed["chain"]?.arrayValue ?? []
    }

    /// `embed.chord`: the chord body signature, on chord header tasks only; `nil` when absent or null.
    public var chord: JSONValue? {
        guard let chord = embed["chord"], !chord.isNull else { return nil }
        return chord
    }
}

extension TaskMessage {
    /// The `x-delivery-count` header: how often RabbitMQ's quorum queue delivered the message (the worker warns near
    /// the queue's limit). Read for every task, so a message whose headers are still text answers from what the
    /// decoder found, without decoding them.
    package var deliveryCount: Int64? {
        storage.fields.headers.isDecoded
            ? storage.fields.headers.members["x-delivery-count"]?.intValue : storage.fields.deliveryCount.value
    }

    /// The `replaced_task_nesting` header: how many replacements led to this task (0 when absent).
    package var replacedTaskNesting: Int {
        headers["replaced_task_nesting"]?.intValue.map { Int(clamping: $0) } ?? 0
    }
}
