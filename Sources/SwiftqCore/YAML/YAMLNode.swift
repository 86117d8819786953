/// A position in a YAML text: 1-based line, and 1-based column counted in Unicode scalars (as libyaml counts).
struct YAMLMark: Sendable, Hashable, CustomStringConvertible {
    var line: Int
    var column: Int

    var description: String { "\(line):\(column)" }
}

/// A resolved YAML tag, e.g. `tag:yaml.org,2002:int`: what a node is, after YAML 1.1 implicit typing of plain
/// scalars (``YAMLImplicitTags``) or from an explicit tag in the text (`!!str 5`).
struct YAMLTag: Sendable, Hashable, CustomStringConvertible {
    var rawValue: String

    init(rawValue: String) { self.rawValue = rawValue }

    var description: String { rawValue }

    static let str = YAMLTag(rawValue: "tag:yaml.org,2002:str")
    static let seq = YAMLTag(rawValue: "tag:yaml.org,2002:seq")
    static let map = YAMLTag(rawValue: "tag:yaml.org,2002:map")
    static let bool = YAMLTag(rawValue: "tag:yaml.org,2002:bool")
    static let float = YAMLTag(rawValue: "tag:yaml.org,2002:float")
    static let null = YAMLTag(rawValue: "tag:yaml.org,2002:null")
    static let int = YAMLTag(rawValue: "tag:yaml.org,2002:int")
    static let merge = YAMLTag(rawValue: "tag:yaml.org,2002:merge")
    static let timestamp = YAMLTag(rawValue: "tag:yaml.org,2002:timestamp")
    static let value = YAMLTag(rawValue: "tag:yaml.org,2002:value")
}

/// A composed YAML node: what ``YAMLComposer`` builds from libyaml's events and what ``ConfigurationDecoder``
/// reads.
///
/// Aliases are resolved (an alias is a copy of its anchored node, with that node's mark) and merge keys (`<<`)
/// are kept as ordinary keys tagged ``YAMLTag/merge``: the decoder refuses them with a message, as it did when
/// Yams composed the tree. Mappings keep their keys in document order.
enum YAMLNode: Sendable {
    case scalar(Scalar)
    case mapping(Mapping)
    case sequence(Sequence)

    /// How a scalar was written. Only plain scalars are typed from their text.
    enum ScalarStyle: Sendable, Hashable {
        case plain, singleQuoted, doubleQuoted, literal, folded
    }

    /// A scalar: its text (escapes and folding already applied), tag, style and position.
    struct Scalar: Sendable {
        var string: String
        var tag: YAMLTag
        var style: ScalarStyle
        var mark: YAMLMark?

        init(_ string: String, _ tag: YAMLTag, _ style: ScalarStyle, _ mark: YAMLMark? = nil) {
            self.string = string
            self.tag = tag
            self.style = style
            self.mark = mark
        }
    }

    /// A mapping: its key/value pairs in document order (keys are unique: the composer rejects duplicates).
    struct Mapping: Sendable, RandomAccessCollection {
        var pairs: [(key: YAMLNode, value: YAMLNode)]
        var tag: YAMLTag
        var mark: YAMLMark?

        var startIndex: Int { pairs.startIndex }
        var endIndex: Int { pairs.endIndex }
        subscript(position: Int) -> (key: YAMLNode, value: YAMLNode) { pairs[position] }
    }

    /// A sequence: its items in order.
    struct Sequence: Sendable, RandomAccessCollection {
        var items: [YAMLNode]
        var tag: YAMLTag
        var mark: YAMLMark?

        var startIndex: Int { items.startIndex }
        var endIndex: Int { items.endIndex }
        subscript(position: Int) -> YAMLNode { items[position] }
    }

    /// Where the node starts in the text; `nil` for a node made in code (an environment override).
    var mark: YAMLMark? {
        switch self {
        case .scalar(let scalar): scalar.mark
        case .mapping(let mapping): mapping.mark
        case .sequence(let sequence): sequence.mark
        }
    }

    /// The node's resolved tag.
    var tag: YAMLTag {
        switch self {
        case .scalar(let scalar): scalar.tag
        case .mapping(let mapping): mapping.tag
        case .sequence(let sequence): sequence.tag
        }
    }

    /// The scalar, when this node is one.
    var scalar: Scalar? {
        guard case .scalar(let scalar) = self else {
            return nil
        }
        return scalar
    }
}

/// Node equality as the duplicate-key check needs it (and as Yams had it): same tag and same content, style and
/// position aside. So `5` and `"5"` are different keys (int and str), `a` and `'a'` the same one.
extension YAMLNode: Hashable {
    static func == (lhs: YAMLNode, rhs: YAMLNode) -> Bool {
        switch (lhs, rhs) {
        case (.scalar(let left), .scalar(let right)):
            return left.tag == right.tag && left.string == right.string
        case (.sequence(let left), .sequence(let right)):
            return left.tag == right.tag && left.items == right.items
        case (.mapping(let left), .mapping(let right)):
            return left.tag == right.tag && left.pairs.count == right.pairs.count
                && zip(left.pairs, right.pairs).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        default:
            return false
        }
    }

    func hash(into hasher: inout Hasher) {
        hasher.combine(tag)
        switch self {
        case .scalar(let scalar): hasher.combine(scalar.string)
        case .sequence(let sequence): hasher.combine(sequence.items.count)
        case .mapping(let mapping): hasher.combine(mapping.pairs.count)
        }
    }
}
