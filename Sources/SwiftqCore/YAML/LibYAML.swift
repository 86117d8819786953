import CLibYAML

/// Why a YAML text could not be composed into one document: libyaml's own problem and position, or one the
/// composer found (a second document, an undefined alias, repeated keys).
struct YAMLError: Error, Sendable, Equatable {
    /// Which stage refused the text; the first four are libyaml's `yaml_error_type_t`.
    enum Code: Sendable, Equatable {
        /// libyaml could not allocate.
        case memory
        /// Not decodable text (libyaml's reader: control characters, bad encoding).
        case reader
        /// libyaml's scanner (tokens: quotes, indentation, `:` where it cannot be).
        case scanner
        /// libyaml's parser (structure: a block that does not close, a missing `-`).
        case parser
        /// An alias (`*name`) without a preceding anchor.
        case undefinedAlias
        /// A second document (`---`) in a text that must hold one.
        case multipleDocuments
        /// A mapping repeats a key; ``YAMLError/keys`` names them.
        case duplicateKeys
        /// Collections nest deeper than ``YAMLComposer/maximumDepth``.
        case tooDeep
        /// Aliases expand to more than ``YAMLComposer/maximumNodes`` nodes.
        case tooLarge
    }

    /// What libyaml says was being read when the problem was found ("while scanning a quoted scalar") and where
    /// that started.
    struct Context: Sendable, Equatable {
        var text: String
        var mark: YAMLMark
    }

    var code: Code
    /// The problem in libyaml's words (or the composer's).
    var problem: String
    /// Where the problem is: libyaml's problem mark, the second document's start, the first occurrence of a
    /// repeated key. `nil` for reader and memory errors (see ``byteOffset``).
    var mark: YAMLMark?
    var context: Context?
    /// Reader errors: offset in bytes of the offending input, and its value (a byte or a code point; -1 if none).
    var byteOffset: Int?
    var value: Int?
    /// Duplicate keys: the repeated keys' texts, sorted.
    var keys: [String] = []
}

/// One event of libyaml's parser, copied out of its `yaml_event_t` (whose strings libyaml frees with the event).
enum YAMLEvent: Sendable {
    case streamStart
    case streamEnd
    case documentStart(YAMLMark)
    case documentEnd
    case alias(anchor: String, mark: YAMLMark)
    /// `tag` is `nil` when the text gives none (libyaml expands `!!str` to `tag:yaml.org,2002:str`).
    case scalar(value: String, anchor: String?, tag: String?, style: YAMLNode.ScalarStyle, mark: YAMLMark)
    case sequenceStart(anchor: String?, tag: String?, mark: YAMLMark)
    case sequenceEnd
    case mappingStart(anchor: String?, tag: String?, mark: YAMLMark)
    case mappingEnd
}

/// Owner of a libyaml `yaml_parser_t` reading UTF-8 text: the one place where libyaml's pointers are handled.
///
/// The parser and a private copy of the input live at stable addresses until `deinit`, since libyaml keeps
/// pointers to both between calls. Each ``next()`` call returns one event as Swift values (the C event is deleted
/// before it returns) or libyaml's error as a ``YAMLError``.
struct LibYAMLParser: ~Copyable {
    private let parser: UnsafeMutablePointer<yaml_parser_t>
    private let input: UnsafeMutableBufferPointer<UInt8>

    init(_ text: String) throws(YAMLError) {
        parser = .allocate(capacity: 1)
        // yaml_parser_initialize zeroes the struct first; it fails only when it cannot allocate its buffers.
        guard yaml_parser_initialize(parser) == 1 else {
            parser.deallocate()
            throw YAMLError(code: .memory, problem: "out of memory")
        }
        let utf8 = text.utf8
        input = .allocate(capacity: max(utf8.count, 1))
        _ = input.initialize(from: utf8)
        yaml_parser_set_encoding(parser, YAML_UTF8_ENCODING)
        yaml_parser_set_input_string(parser, input.baseAddress, utf8.count)
    }

    deinit {
        yaml_parser_delete(parser)
        parser.deallocate()
        input.deallocate()
    }

    /// The next event (`yaml_parser_parse`). After `.streamEnd` or an error, libyaml returns nothing more.
    func next() throws(YAMLError) -> YAMLEvent {
        var event = yaml_event_t()
        guard yaml_parser_parse(parser, &event) == 1 else {
            throw error()
        }
        defer { yaml_event_delete(&event) }
        let mark = Self.mark(event.start_mark)
        switch event.type {
        case YAML_STREAM_START_EVENT:
            return .streamStart
        case YAML_STREAM_END_EVENT:
            return .streamEnd
        case YAML_DOCUMENT_START_EVENT:
            return .documentStart(mark)
        case YAML_DOCUMENT_END_EVENT:
            return .documentEnd
        case YAML_ALIAS_EVENT:
            return .alias(anchor: Self.string(event.data.alias.anchor) ?? "", mark: mark)
        case YAML_SCALAR_EVENT:
            let scalar = event.data.scalar
            // The length, not the terminating NUL: a double-quoted "\0" puts a NUL inside the value.
            let value = scalar.value.map {
                String(decoding: UnsafeBufferPointer(start: $0, count: scalar.length), as: UTF8.self)
            }
            return .scalar(
                value: value ?? "",
                anchor: Self.string(scalar.anchor),
                tag: Self.string(scalar.tag),
                style: Self.style(scalar.style),
                mark: mark
            )
        case YAML_SEQUENCE_START_EVENT:
            let start = event.data.sequence_start
            return .sequenceStart(anchor: Self.string(start.anchor), tag: Self.string(start.tag), mark: mark)
        case YAML_SEQUENCE_END_EVENT:
            return .sequenceEnd
        case YAML_MAPPING_START_EVENT:
            let start = event.data.mapping_start
            return .mappingStart(anchor: Self.string(start.anchor), tag: Self.string(start.tag), mark: mark)
        case YAML_MAPPING_END_EVENT:
            return .mappingEnd
        default:
            // YAML_NO_EVENT: libyaml returns it only after the stream ended, which the composer never asks past.
            return .streamEnd
        }
    }

    /// libyaml's error state as a typed error (`parser.error`, `problem`, `problem_mark`, `context`).
    private func error() -> YAMLError {
        let state = parser.pointee
        let problem = state.problem.map { String(cString: $0) } ?? "unknown YAML error"
        let context = state.context.map {
            YAMLError.Context(text: String(cString: $0), mark: Self.mark(state.context_mark))
        }
        switch state.error {
        case YAML_MEMORY_ERROR:
            return YAMLError(code: .memory, problem: "out of memory")
        case YAML_READER_ERROR:
            return YAMLError(
                code: .reader,
                problem: problem,
                byteOffset: state.problem_offset,
                value: Int(state.problem_value)
            )
        case YAML_SCANNER_ERROR:
            return YAMLError(code: .scanner, problem: problem, mark: Self.mark(state.problem_mark), context: context)
        default:
            return YAMLError(code: .parser, problem: problem, mark: Self.mark(state.problem_mark), context: context)
        }
    }

    /// libyaml's marks are 0-based.
    private static func mark(_ mark: yaml_mark_t) -> YAMLMark {
        YAMLMark(line: mark.line + 1, column: mark.column + 1)
    }

    private static func string(_ pointer: UnsafeMutablePointer<yaml_char_t>?) -> String? {
        pointer.map { String(cString: $0) }
    }

    private static func style(_ style: yaml_scalar_style_t) -> YAMLNode.ScalarStyle {
        switch style {
        case YAML_SINGLE_QUOTED_SCALAR_STYLE: .singleQuoted
        case YAML_DOUBLE_QUOTED_SCALAR_STYLE: .doubleQuoted
        case YAML_LITERAL_SCALAR_STYLE: .literal
        case YAML_FOLDED_SCALAR_STYLE: .folded
        default: .plain
        }
    }
}
