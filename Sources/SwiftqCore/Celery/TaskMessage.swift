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
public struct TaskMessage: Sendable, Equatable {
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
    public var id: String
    /// `task` header: the registered task name. Required; its presence marks a protocol 2 message.
    public var name: String
    /// `shadow` header: a display name that replaces ``name`` in logs and events (§1.2).
    public var shadow: String?
    /// Positional arguments: the body's first element.
    public var args: [JSONValue] { didSet { wire.bytes = [] } }
    /// Keyword arguments: the body's second element.
    public var kwargs: OrderedDictionary<String, JSONValue> { didSet { wire.bytes = [] } }
    /// The body's third element: `{"callbacks", "errbacks", "chain", "chord"}` (§1.3), or `.null`. Kept whole,
    /// since signatures are passed on rather than interpreted here.
    public var embed: JSONValue { didSet { wire.bytes = [] } }
    /// Every header as received, custom ones included, in wire order.
    public var headers: OrderedDictionary<String, JSONValue>
    /// `root_id` header: the id of the first task of the workflow; Python sends the task's own id by default.
    public var rootID: String?
    /// `parent_id` header: the id of the task that sent this one, if it was sent from a task.
    public var parentID: String?
    /// `group` header: the group id, for group members and chord headers.
    public var group: String?
    /// `group_index` header: the position in the group (the score of ordered chord results).
    public var groupIndex: Int?
    /// `eta` header: do not run before this instant (§1.4).
    public var eta: CeleryTimestamp?
    /// `expires` header: revoke instead of running after this instant (§1.4).
    public var expires: CeleryTimestamp?
    /// `retries` header: how many times the task has been retried; 0 when absent.
    public var retries: Int
    /// `timelimit` header, `[hard, soft]`.
    public var timeLimit: TimeLimit
    /// `argsrepr` header: Python's `saferepr` of the args, for events and logs (see ``PythonRepr``).
    public var argsRepr: String?
    /// `kwargsrepr` header: Python's `saferepr` of the kwargs.
    public var kwargsRepr: String?
    /// `origin` header: the sender's node name, `gen<pid>@<host>` for a client.
    public var origin: String?
    /// `ignore_result` header: `true` to store no result; `nil` (sent as `null` by `send_task` of an unknown name)
    /// means the task's own default.
    public var ignoreResult: Bool?
    /// `reply_to` property: the client's oid, used by the `rpc://` backend (§1.1).
    public var replyTo: String?
    /// `correlation_id` property: the task id, as Python sends it.
    public var correlationID: String?
    /// Whether kombu restored this message after another consumer failed to ack it (§2.6).
    public var redelivered: Bool
    /// The body as it arrived (inflated when compressed): the JSON text `[args, kwargs, embed]` that ``args``,
    /// ``kwargs`` and ``embed`` were decoded from. Handed to the pool child as it is, never encoded again. Empty for
    /// a message built in code, and emptied when ``args``, ``kwargs`` or ``embed`` change, so it never disagrees
    /// with them. Not part of a message's identity (`==`): the same task formatted differently is the same message.
    public var body: [UInt8] {
        get { wire.bytes }
        set { wire.bytes = newValue }
    }
    private var wire = WireBody()

    /// How the broker delivered the message: its properties as they arrived (kombu's names: `correlation_id`,
    /// `reply_to`, `priority`, `delivery_mode`, `app_id`, …; on Redis also `delivery_info`, `body_encoding` and
    /// `delivery_tag`), and the exchange and routing key it was published with. What Celery's request shows as
    /// `properties` and `delivery_info`. Empty for a message built in code. Like ``body``, not part of a message's
    /// identity (`==`): it describes one delivery, not the task.
    public var received: Received {
        get { delivery.value }
        set { delivery.value = newValue }
    }
    private var delivery = DeliveryDetails()

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
    private struct DeliveryDetails: Sendable, Equatable {
        var value = Received()
        static func == (_: DeliveryDetails, _: DeliveryDetails) -> Bool { true }
    }

    /// The wire form of the body, equal to any other: see ``body``.
    private struct WireBody: Sendable, Equatable {
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
        self.id = id
        self.name = name
        self.shadow = shadow
        self.args = args
        self.kwargs = kwargs
        self.embed = embed
        self.rootID = rootID ?? id
        self.parentID = parentID
        self.group = group
        self.groupIndex = groupIndex
        self.eta = eta
        self.expires = expires
        self.retries = retries
        self.timeLimit = timeLimit
        self.argsRepr = argsRepr ?? PythonRepr.argsRepr(args)
        self.kwargsRepr = kwargsRepr ?? PythonRepr.repr(.object(kwargs))
        self.origin = origin
        self.ignoreResult = ignoreResult
        self.replyTo = replyTo
        self.correlationID = correlationID ?? id
        self.redelivered = redelivered
        self.headers = [:]
        self.headers = wireHeaders(extra: extraHeaders)
    }

    /// A message with the given body and headers and every other property empty, nothing computed: the decoder's
    /// starting point, which then reads each header.
    init(
        id: String,
        name: String,
        args: [JSONValue],
        kwargs: OrderedDictionary<String, JSONValue>,
        embed: JSONValue,
        headers: OrderedDictionary<String, JSONValue>
    ) {
        self.id = id
        self.name = name
        self.args = args
        self.kwargs = kwargs
        self.embed = embed
        self.headers = headers
        self.retries = 0
        self.timeLimit = TimeLimit()
        self.redelivered = false
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
