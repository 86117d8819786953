/// Composes a YAML text that holds at most one document into a ``YAMLNode`` tree, from libyaml's events.
///
/// What it does beyond libyaml's parser, as Yams' `compose` did for the configuration before: plain scalars are
/// typed by ``YAMLImplicitTags`` (YAML 1.1: `yes` is a bool, `010` an int), untagged quoted and block scalars are
/// strings, aliases are replaced by their anchored node, a repeated key in a mapping and a second document are
/// errors. Merge keys (`<<`) are not applied: they stay keys tagged ``YAMLTag/merge`` for the decoder to refuse.
///
/// Bounded, because a configuration file is input too and a reload must never crash the supervisor: collections
/// nest at most ``maximumDepth`` levels (the composer, node equality and hashing recurse), and the document, with
/// every alias counted as the nodes it stands for, has at most ``maximumNodes`` nodes (the "billion laughs"
/// document of nested aliases is a few lines long and would otherwise take exponential time to compare or walk).
enum YAMLComposer {
    /// The deepest nesting of sequences and mappings accepted; a configuration needs about four.
    static let maximumDepth = 64
    /// The most nodes a document may stand for once its aliases are expanded.
    static let maximumNodes = 100_000

    /// The document's root node, or `nil` for a text without a document (empty, or only comments).
    static func compose(_ text: String) throws(YAMLError) -> YAMLNode? {
        var composer = Composer(parser: try LibYAMLParser(text))
        return try composer.document()
    }

    private struct Composer: ~Copyable {
        let parser: LibYAMLParser
        /// Anchored nodes, with how many nodes each stands for (aliases inside it expanded).
        var anchors: [String: (node: YAMLNode, size: Int)] = [:]
        /// Nesting of the collection being composed.
        var depth = 0
        /// Nodes composed so far, aliases counted as the nodes they stand for.
        var expandedNodes = 0

        mutating func document() throws(YAMLError) -> YAMLNode? {
            _ = try parser.next()  // stream start
            guard case .documentStart = try parser.next() else {
                return nil  // stream end: no document
            }
            let root = try node(try parser.next())
            _ = try parser.next()  // document end
            if case .documentStart(let mark) = try parser.next() {
                throw YAMLError(code: .multipleDocuments, problem: "but found another document", mark: mark)
            }
            return root
        }

        /// The node that `event` starts, reading the events of its content.
        mutating func node(_ event: YAMLEvent) throws(YAMLError) -> YAMLNode {
            switch event {
            case .alias(let anchor, let mark):
                guard let (node, size) = anchors[anchor] else {
                    throw YAMLError(code: .undefinedAlias, problem: "found undefined alias", mark: mark)
                }
                try count(size, at: mark)
                return node
            case .scalar(let value, let anchor, let tag, let style, let mark):
                let resolved: YAMLTag
                if let tag, tag != "!" {
                    resolved = YAMLTag(rawValue: tag)
                } else if tag == nil && style == .plain {
                    resolved = YAMLImplicitTags.resolve(value)
                } else {
                    resolved = .str  // quoted, block, or the non-specific tag `!`
                }
                try count(1, at: mark)
                return register(.scalar(YAMLNode.Scalar(value, resolved, style, mark)), as: anchor, size: 1)
            case .sequenceStart(let anchor, let tag, let mark):
                let before = try enter(at: mark)
                defer { depth -= 1 }
                var items: [YAMLNode] = []
                while true {
                    let next = try parser.next()
                    if case .sequenceEnd = next {
                        break
                    }
                    items.append(try node(next))
                }
                let sequence = YAMLNode.Sequence(items: items, tag: Self.tag(tag, default: .seq), mark: mark)
                return register(.sequence(sequence), as: anchor, size: expandedNodes - before)
            case .mappingStart(let anchor, let tag, let mark):
                let before = try enter(at: mark)
                defer { depth -= 1 }
                var pairs: [(key: YAMLNode, value: YAMLNode)] = []
                while true {
                    let next = try parser.next()
                    if case .mappingEnd = next {
                        break
                    }
                    let key = try node(next)
                    pairs.append((key, try node(try parser.next())))
                }
                try Self.checkDuplicates(pairs.map(\.key))
                let mapping = YAMLNode.Mapping(pairs: pairs, tag: Self.tag(tag, default: .map), mark: mark)
                return register(.mapping(mapping), as: anchor, size: expandedNodes - before)
            case .streamStart, .streamEnd, .documentStart, .documentEnd, .sequenceEnd, .mappingEnd:
                // libyaml's parser only emits a node event where a node is due.
                preconditionFailure("libyaml emitted \(event) where a node was expected")
            }
        }

        /// Anchors are registered once their node is complete, so a node cannot contain an alias of itself.
        private mutating func register(_ node: YAMLNode, as anchor: String?, size: Int) -> YAMLNode {
            if let anchor {
                anchors[anchor] = (node, size)
            }
            return node
        }

        /// Starts a collection one level deeper; returns the node count before it.
        private mutating func enter(at mark: YAMLMark) throws(YAMLError) -> Int {
            guard depth < YAMLComposer.maximumDepth else {
                throw YAMLError(
                    code: .tooDeep,
                    problem: "collections nested deeper than \(YAMLComposer.maximumDepth) levels",
                    mark: mark
                )
            }
            depth += 1
            try count(1, at: mark)
            return expandedNodes - 1
        }

        private mutating func count(_ nodes: Int, at mark: YAMLMark) throws(YAMLError) {
            expandedNodes += nodes
            guard expandedNodes <= YAMLComposer.maximumNodes else {
                throw YAMLError(
                    code: .tooLarge,
                    problem: "the document stands for more than \(YAMLComposer.maximumNodes) nodes once its aliases "
                        + "are expanded",
                    mark: mark
                )
            }
        }

        private static func tag(_ tag: String?, default defaultTag: YAMLTag) -> YAMLTag {
            guard let tag, tag != "!" else {
                return defaultTag
            }
            return YAMLTag(rawValue: tag)
        }

        /// Keys are compared by tag and content (``YAMLNode`` equality). The error names every repeated key
        /// (sorted) and points at the first occurrence of the first one.
        private static func checkDuplicates(_ keys: [YAMLNode]) throws(YAMLError) {
            var firstOccurrence: [YAMLNode: YAMLNode] = [:]
            var repeated: [YAMLNode] = []
            for key in keys {
                if let first = firstOccurrence[key] {
                    if !repeated.contains(first) {
                        repeated.append(first)
                    }
                } else {
                    firstOccurrence[key] = key
                }
            }
            guard !repeated.isEmpty else {
                return
            }
            let sorted = repeated.map { (text: $0.scalar?.string ?? ConfigurationDecoder.describe($0), node: $0) }
                .sorted { $0.text < $1.text }
            throw YAMLError(
                code: .duplicateKeys,
                problem: "duplicate keys",
                mark: sorted[0].node.mark,
                keys: sorted.map(\.text)
            )
        }
    }
}
