import OrderedCollections

extension JSONValue {
    /// The nesting limit used when `maxDepth` is not given: deep enough for any real task payload, shallow enough that
    /// hostile input cannot make the worker build absurdly deep values (which are also destroyed recursively).
    public static let defaultMaxDepth = 512

    /// Parses one JSON text from UTF-8 bytes.
    ///
    /// The grammar is RFC 8259 with exactly the extensions Python's `json` module writes: the bare words `NaN`,
    /// `Infinity` and `-Infinity`. Everything else is strict:
    ///
    /// - only space, tab, CR and LF count as whitespace, and nothing but whitespace may follow the value;
    /// - numbers may not have leading zeros, a leading `+`, or a bare `.`; integers that fit `Int64` become
    ///   ``int(_:)``, larger ones ``bigInt(_:)`` with their exact text, and anything with a fraction or exponent a
    ///   correctly rounded ``double(_:)`` (out-of-range exponents give infinity or zero, as in Python);
    /// - strings must be valid UTF-8 (no overlong forms, no encoded surrogates) and may not contain raw control
    ///   characters below U+0020. All JSON escapes are supported; a `\u` escape of a lone UTF-16 surrogate, which
    ///   Python accepts but a Swift `String` cannot hold, is replaced with U+FFFD;
    /// - for duplicate object keys the last value wins, in the position of the first occurrence, as in Python;
    /// - arrays and objects may nest at most `maxDepth` levels.
    ///
    /// Contiguous inputs (`[UInt8]`, `ArraySlice<UInt8>`, `Data`, `String.UTF8View` of a native string, ...) are parsed
    /// in place; other collections are copied into an array first.
    ///
    /// - Throws: ``JSONParseError`` with the byte offset of the first problem.
    public init(parsing bytes: some Collection<UInt8>, maxDepth: Int = JSONValue.defaultMaxDepth) throws(JSONParseError)
    {
        let result = bytes.withContiguousStorageIfAvailable { buffer in
            JSONValue.parse(buffer, maxDepth: maxDepth)
        }
        if let result {
            self = try result.get()
        } else {
            let copy = Array(bytes)
            self = try copy.withUnsafeBufferPointer { JSONValue.parse($0, maxDepth: maxDepth) }.get()
        }
    }

    /// Parses one JSON text from a string; see `init(parsing:maxDepth:)` for bytes. Error offsets count UTF-8 bytes.
    public init(parsing string: String, maxDepth: Int = JSONValue.defaultMaxDepth) throws(JSONParseError) {
        try self.init(parsing: string.utf8, maxDepth: maxDepth)
    }

    /// Parses a JSON text as ``init(parsing:maxDepth:)`` does, except that the members of the outermost object named
    /// in `deferred` are only delimited, not decoded: they come back as their JSON text (`raw`, validated only as
    /// far as finding where it ends) and as `null` in `value`. The pool child reads its task frames so: the request
    /// context is decoded only if the task asks for it.
    ///
    /// - Throws: ``JSONParseError`` as ``init(parsing:maxDepth:)``.
    public static func parsing(
        _ bytes: [UInt8],
        deferring deferred: [String],
        maxDepth: Int = JSONValue.defaultMaxDepth
    ) throws(JSONParseError) -> (value: JSONValue, raw: JSONDeferredMembers) {
        let result = bytes.withUnsafeBufferPointer {
            buffer -> Result<(JSONValue, DeferredRanges), JSONParseError> in
            var parser = JSONParser(input: buffer, maxDepth: maxDepth)
            parser.deferMembers(deferred)
            return Result { () throws(JSONParseError) in (try parser.parseDocument(), parser.deferredRanges) }
        }
        let (value, ranges) = try result.get()
        return (value, JSONDeferredMembers(bytes: bytes, names: deferred, ranges: ranges))
    }

    /// Parses a JSON text as ``parsing(_:deferring:maxDepth:)`` does, and when the deferred member `visited` is an
    /// object, also hands its members to `visit`, in document order, as their key's UTF-8 (escapes decoded) and
    /// their value: in one pass, the member is validated in full and its text returned in `raw`, without building
    /// the object or a string for any key. A key the object repeats is handed over each time (the last value is the
    /// member's); `visit` gets a nil key before each such object (the outermost one may repeat the member, and the
    /// last one counts).
    ///
    /// - Throws: ``JSONParseError`` as ``init(parsing:maxDepth:)``.
    package static func parsing(
        _ bytes: [UInt8],
        deferring deferred: [String],
        visitingMembersOf visited: String,
        maxDepth: Int = JSONValue.defaultMaxDepth,
        _ visit: (UnsafeBufferPointer<UInt8>?, JSONValue) -> Void
    ) throws(JSONParseError) -> (value: JSONValue, raw: JSONDeferredMembers) {
        let result = withoutActuallyEscaping(visit) { visit in
            bytes.withUnsafeBufferPointer { buffer -> Result<(JSONValue, DeferredRanges), JSONParseError> in
                var parser = JSONParser(input: buffer, maxDepth: maxDepth)
                parser.deferMembers(deferred)
                parser.memberVisitor = visit
                parser.visitedMember = visited
                return Result { () throws(JSONParseError) in (try parser.parseDocument(), parser.deferredRanges) }
            }
        }
        let (value, ranges) = try result.get()
        return (value, JSONDeferredMembers(bytes: bytes, names: deferred, ranges: ranges))
    }

    private static func parse(_ input: UnsafeBufferPointer<UInt8>, maxDepth: Int) -> Result<JSONValue, JSONParseError> {
        var parser = JSONParser(input: input, maxDepth: maxDepth)
        return Result { () throws(JSONParseError) in try parser.parseDocument() }
    }
}

/// The text of the deferred members a parse found (``JSONValue/parsing(_:deferring:maxDepth:)``), by name.
///
/// A list beside the names asked for, not a dictionary: one or two names per parse, looked up once or twice each,
/// cost less compared than hashed (two dictionaries per envelope were ~4 % of the fetch thread's decoding).
public struct JSONDeferredMembers: Sendable {
    private let bytes: [UInt8]
    private let names: [String]
    /// Parallel to `names`: where each one's text is in `bytes`, nil when the document has no such member.
    private let ranges: DeferredRanges

    init(bytes: [UInt8], names: [String], ranges: DeferredRanges) {
        self.bytes = bytes
        self.names = names
        self.ranges = ranges
    }

    /// The JSON text of the outermost member `name`, if it was deferred and present (the last one, if repeated).
    public subscript(name: String) -> ArraySlice<UInt8>? {
        guard let index = deferredIndex(of: name, in: names), let range = ranges[index] else { return nil }
        return bytes[range]
    }

    /// Whether no deferred member was found.
    public var isEmpty: Bool { names.indices.allSatisfy { ranges[$0] == nil } }
}

/// Where `key` is in `names`: compared, not hashed (one or two names; two different small strings' `==` is a
/// runtime call, so their lengths are compared first).
private func deferredIndex(of key: String, in names: [String]) -> Int? {
    let length = key.utf8.count
    return names.firstIndex { $0.utf8.count == length && $0 == key }
}

/// Where each deferred member's text is, by the index of its name: the first two inline, so that a parse that defers
/// one or two members (every one swiftq makes) allocates nothing for them.
struct DeferredRanges {
    private var first: Range<Int>?
    private var second: Range<Int>?
    private var rest: [Range<Int>?] = []

    init(count: Int) {
        if count > 2 { rest = Array(repeating: nil, count: count - 2) }
    }

    subscript(index: Int) -> Range<Int>? {
        get {
            switch index {
            case 0: first
            case 1: second
            default: rest[index - 2]
            }
        }
        set {
            switch index {
            case 0: first = newValue
            case 1: second = newValue
            default: rest[index - 2] = newValue
            }
        }
    }
}

/// Exact powers of ten that a `Double` holds without rounding: the fast path for short decimal numbers.
private let exactPowersOfTen: [Double] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
]

/// An array or object still being parsed: an array's elements, or an object's values with their keys beside them
/// (stored properties, not an enum payload, so that the parser appends in place without copy-on-write copies).
///
/// An object's dictionary is built once, when it closes (``object``).
private struct OpenContainer {
    var isObject: Bool
    var elements: [JSONValue] = []
    var keys: [String] = []

    init(isObject: Bool) {
        self.isObject = isObject
        elements.reserveCapacity(8)
        if isObject { keys.reserveCapacity(8) }
    }

    /// The key whose value is being parsed, for objects.
    var key: String { keys[keys.count - 1] }

    /// The object's members (``OrderedDictionary/init(jsonMembers:values:)``).
    var object: OrderedDictionary<String, JSONValue> { OrderedDictionary(jsonMembers: keys, values: elements) }
}

/// A single-use recursive-descent parser over a contiguous UTF-8 buffer.
///
/// Nesting is handled with an explicit stack instead of recursion, so the depth limit, not the thread's stack size,
/// decides how deep a document may be. Every read of `input` is preceded by a `position < end` check.
private struct JSONParser {
    let input: UnsafeBufferPointer<UInt8>
    let end: Int
    let maxDepth: Int
    /// Levels of nesting outside the value ``parseValue()`` parses: the objects whose members are being visited.
    var outerDepth = 0
    var position = 0
    /// Reused buffer for strings that contain escapes.
    var scratch: [UInt8] = []
    /// Members of the outermost object that are only delimited (``JSONValue/parsing(_:deferring:maxDepth:)``),
    /// and where their text was found.
    /// A list, not a set: one or two names, compared with each outermost key rather than hashing every key.
    var deferred: [String] = []
    /// Parallel to `deferred`.
    var deferredRanges = DeferredRanges(count: 0)
    /// What ``JSONValue/parsing(_:deferring:visitingMembersOf:maxDepth:_:)`` hands the members of `visitedMember` to.
    var memberVisitor: ((UnsafeBufferPointer<UInt8>?, JSONValue) -> Void)?
    var visitedMember: String?
    /// A key with escapes, kept while its member's value is parsed (``parseObjectMembers(_:)``): `scratch` serves
    /// the value.
    var keyScratch: [UInt8] = []

    init(input: UnsafeBufferPointer<UInt8>, maxDepth: Int) {
        self.input = input
        self.end = input.count
        self.maxDepth = maxDepth
    }

    mutating func parseDocument() throws(JSONParseError) -> JSONValue {
        let value = try parseValue()
        skipWhitespace()
        if position < end {
            throw failure("unexpected \(describeByte(at: position)) after the JSON value")
        }
        return value
    }

    // MARK: Values and containers

    mutating func parseValue() throws(JSONParseError) -> JSONValue {
        var stack: [OpenContainer] = []
        nextValue: while true {
            skipWhitespace()
            guard position < end else { throw failure("unexpected end of input, expected a value") }
            var value: JSONValue
            if !deferred.isEmpty, outerDepth == 0, stack.count == 1, stack[0].isObject,
                let deferredIndex = deferredIndex(of: stack[0].key)
            {
                let start = position
                if let visitor = memberVisitor, input[position] == UInt8(ascii: "{"), stack[0].key == visitedMember {
                    visitor(nil, .null)
                    outerDepth = 2
                    try parseObjectMembers { visitor($0, $1) }
                    outerDepth = 0
                } else {
                    try skipValue()
                }
                deferredRanges[deferredIndex] = start..<position
                value = .null
            } else {
                switch input[position] {
                case UInt8(ascii: "["):
                    guard stack.count + outerDepth < maxDepth else {
                        throw failure("maximum nesting depth of \(maxDepth) exceeded")
                    }
                    position += 1
                    skipWhitespace()
                    if position < end && input[position] == UInt8(ascii: "]") {
                        position += 1
                        value = .array([])
                    } else {
                        stack.append(OpenContainer(isObject: false))
                        continue nextValue
                    }
                case UInt8(ascii: "{"):
                    guard stack.count + outerDepth < maxDepth else {
                        throw failure("maximum nesting depth of \(maxDepth) exceeded")
                    }
                    position += 1
                    skipWhitespace()
                    if position < end && input[position] == UInt8(ascii: "}") {
                        position += 1
                        value = .object([:])
                    } else {
                        var container = OpenContainer(isObject: true)
                        container.keys.append(try parseKey(orElse: "expected string key or '}'"))
                        stack.append(container)
                        continue nextValue
                    }
                case UInt8(ascii: "\""):
                    value = .string(try parseString())
                case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                    value = try parseNumber()
                case UInt8(ascii: "t"):
                    try expectLiteral("true")
                    value = .bool(true)
                case UInt8(ascii: "f"):
                    try expectLiteral("false")
                    value = .bool(false)
                case UInt8(ascii: "n"):
                    try expectLiteral("null")
                    value = .null
                case UInt8(ascii: "N"):
                    try expectLiteral("NaN")
                    value = .double(.nan)
                case UInt8(ascii: "I"):
                    try expectLiteral("Infinity")
                    value = .double(.infinity)
                default:
                    throw failure("unexpected \(describeByte(at: position)), expected a value")
                }
            }

            // Store the finished value in its container; when that closes the container, store the container in its
            // parent, and so on.
            while let top = stack.indices.last {
                skipWhitespace()
                let next: UInt8? = position < end ? input[position] : nil
                if stack[top].isObject {
                    // An object that reaches 8 members is most likely a task's headers (Celery sends ~20): room for
                    // 32 at once, instead of growing to 16 and again to 32.
                    if stack[top].elements.count == 8 {
                        stack[top].elements.reserveCapacity(32)
                        stack[top].keys.reserveCapacity(32)
                    }
                    stack[top].elements.append(value)
                    if next == UInt8(ascii: ",") {
                        position += 1
                        stack[top].keys.append(try parseKey(orElse: "expected string key"))
                        continue nextValue
                    } else if next == UInt8(ascii: "}") {
                        position += 1
                        value = .object(stack.removeLast().object)
                    } else {
                        throw expected("',' or '}'")
                    }
                } else {
                    stack[top].elements.append(value)
                    if next == UInt8(ascii: ",") {
                        position += 1
                        continue nextValue
                    } else if next == UInt8(ascii: "]") {
                        position += 1
                        value = .array(stack.removeLast().elements)
                    } else {
                        throw expected("',' or ']'")
                    }
                }
            }
            return value
        }
    }

    /// Only delimits the outermost members named in `names`.
    mutating func deferMembers(_ names: [String]) {
        deferred = names
        deferredRanges = DeferredRanges(count: names.count)
    }

    /// Which of `deferred` an outermost member named `key` is, if it is only delimited.
    func deferredIndex(of key: String) -> Int? { SwiftqCore.deferredIndex(of: key, in: deferred) }

    /// Moves past one value without building it: strings are scanned (escapes skipped, UTF-8 checked), brackets
    /// counted, anything else taken up to the next delimiter. Enough to find where a deferred member ends; its text
    /// is parsed in full when it is decoded.
    mutating func skipValue() throws(JSONParseError) {
        var depth = 0
        repeat {
            skipWhitespace()
            guard position < end else { throw failure("unexpected end of input, expected a value") }
            switch input[position] {
            case UInt8(ascii: "["), UInt8(ascii: "{"):
                guard depth < maxDepth else { throw failure("maximum nesting depth of \(maxDepth) exceeded") }
                depth += 1
                position += 1
            case UInt8(ascii: "]"), UInt8(ascii: "}"):
                guard depth > 0 else { throw failure("unexpected \(describeByte(at: position)), expected a value") }
                depth -= 1
                position += 1
            case UInt8(ascii: "\""):
                let open = position
                position += 1
                try scanUnescapedRun(open: open)
                while input[position] == UInt8(ascii: "\\") {
                    guard end - position >= 2 else {
                        throw JSONParseError(offset: open, message: "unterminated string")
                    }
                    position += 2
                    try scanUnescapedRun(open: open)
                }
                position += 1
            case UInt8(ascii: ","), UInt8(ascii: ":"):
                guard depth > 0 else { throw failure("unexpected \(describeByte(at: position)), expected a value") }
                position += 1
            default:
                let start = position
                while position < end {
                    switch input[position] {
                    case UInt8(ascii: ","), UInt8(ascii: ":"), UInt8(ascii: "]"), UInt8(ascii: "}"),
                        UInt8(ascii: "["), UInt8(ascii: "{"), UInt8(ascii: "\""), UInt8(ascii: " "),
                        UInt8(ascii: "\t"), UInt8(ascii: "\n"), UInt8(ascii: "\r"):
                        break
                    default:
                        position += 1
                        continue
                    }
                    break
                }
                if position == start { throw failure("unexpected \(describeByte(at: position)), expected a value") }
            }
        } while depth > 0
    }

    /// Parses `"key" :` (with surrounding whitespace) and returns the key.
    mutating func parseKey(orElse message: String) throws(JSONParseError) -> String {
        guard let text = try parseKeyText(orElse: message) else { return String(decoding: keyScratch, as: UTF8.self) }
        return String(decoding: UnsafeBufferPointer(rebasing: input[text]), as: UTF8.self)
    }

    /// Parses the object at `position` (its `{`), handing each member to `visit`; `outerDepth` counts the object.
    mutating func parseObjectMembers(_ visit: (UnsafeBufferPointer<UInt8>, JSONValue) -> Void) throws(JSONParseError) {
        position += 1
        skipWhitespace()
        if position < end && input[position] == UInt8(ascii: "}") {
            position += 1
        } else {
            var orElse = "expected string key or '}'"
            while true {
                let key = try parseKeyText(orElse: orElse)
                let value = try parseValue()
                if let key {
                    visit(UnsafeBufferPointer(rebasing: input[key]), value)
                } else {
                    keyScratch.withUnsafeBufferPointer { visit($0, value) }
                }
                skipWhitespace()
                if position < end && input[position] == UInt8(ascii: ",") {
                    position += 1
                    orElse = "expected string key"
                } else if position < end && input[position] == UInt8(ascii: "}") {
                    position += 1
                    break
                } else {
                    throw expected("',' or '}'")
                }
            }
        }
    }

    /// Parses `"key" :` as ``parseKey(orElse:)`` does, without making a string of the key: returns where its text
    /// is in `input` when it has no escapes, else nil with its UTF-8 in `keyScratch`.
    mutating func parseKeyText(orElse message: String) throws(JSONParseError) -> Range<Int>? {
        skipWhitespace()
        guard position < end, input[position] == UInt8(ascii: "\"") else {
            throw position < end ? failure(message) : failure("unexpected end of input, \(message)")
        }
        let open = position
        position += 1
        let start = position
        try scanUnescapedRun(open: open)
        var text: Range<Int>? = start..<position
        if input[position] == UInt8(ascii: "\\") {
            swap(&scratch, &keyScratch)
            try unescape(open: open, from: start)
            swap(&scratch, &keyScratch)
            text = nil
        }
        position += 1
        skipWhitespace()
        guard position < end, input[position] == UInt8(ascii: ":") else { throw expected("':' after object key") }
        position += 1
        return text
    }

    mutating func expectLiteral(_ literal: StaticString) throws(JSONParseError) {
        let count = literal.utf8CodeUnitCount
        let bytes = literal.utf8Start
        guard end - position >= count else { throw failure("invalid literal, expected '\(literal)'") }
        for index in 0..<count where input[position + index] != bytes[index] {
            throw failure("invalid literal, expected '\(literal)'")
        }
        position += count
    }

    // MARK: Numbers

    mutating func parseNumber() throws(JSONParseError) -> JSONValue {
        let start = position
        let negative = input[position] == UInt8(ascii: "-")
        if negative {
            position += 1
            if position < end && input[position] == UInt8(ascii: "I") {
                try expectLiteral("Infinity")
                return .double(-.infinity)
            }
            guard position < end, isDigit(input[position]) else { throw expected("digit after '-'") }
        }

        // Up to 19 significant digits are collected into `mantissa` (exact: 19 digits < 2^64). `truncated` records
        // that there were more, in which case the exact text is used instead.
        var mantissa: UInt64 = 0
        var significantDigits = 0
        var truncated = false

        let integerStart = position
        if input[position] == UInt8(ascii: "0") {
            position += 1
            if position < end && isDigit(input[position]) {
                throw JSONParseError(offset: integerStart, message: "leading zeros are not allowed")
            }
        } else {
            repeat {
                if significantDigits < 19 {
                    mantissa = mantissa &* 10 &+ UInt64(input[position] &- UInt8(ascii: "0"))
                    significantDigits += 1
                } else {
                    truncated = true
                }
                position += 1
            } while position < end && isDigit(input[position])
        }

        var isInteger = true
        var fractionDigits = 0  // digits after '.' that went into `mantissa`
        if position < end && input[position] == UInt8(ascii: ".") {
            isInteger = false
            position += 1
            guard position < end, isDigit(input[position]) else { throw expected("digit after '.'") }
            repeat {
                if significantDigits < 19 {
                    mantissa = mantissa &* 10 &+ UInt64(input[position] &- UInt8(ascii: "0"))
                    fractionDigits += 1
                    // Zeros before the first non-zero digit do not use up precision.
                    if mantissa != 0 { significantDigits += 1 }
                } else {
                    truncated = true
                }
                position += 1
            } while position < end && isDigit(input[position])
        }

        var exponent = 0
        if position < end && (input[position] | 0x20) == UInt8(ascii: "e") {
            isInteger = false
            position += 1
            var exponentNegative = false
            if position < end && (input[position] == UInt8(ascii: "+") || input[position] == UInt8(ascii: "-")) {
                exponentNegative = input[position] == UInt8(ascii: "-")
                position += 1
            }
            guard position < end, isDigit(input[position]) else { throw expected("digit in exponent") }
            repeat {
                // Saturate: anything this large already means infinity or zero.
                if exponent < 100_000 { exponent = exponent * 10 + Int(input[position] &- UInt8(ascii: "0")) }
                position += 1
            } while position < end && isDigit(input[position])
            if exponentNegative { exponent = -exponent }
        }

        if isInteger {
            if !truncated {
                if negative, mantissa <= UInt64(Int64.max) + 1 {
                    return .int(Int64(bitPattern: 0 &- mantissa))
                } else if !negative, mantissa <= UInt64(Int64.max) {
                    return .int(Int64(mantissa))
                }
            }
            return .bigInt(String(decoding: UnsafeBufferPointer(rebasing: input[start..<position]), as: UTF8.self))
        }

        if !truncated {
            if mantissa == 0 { return .double(negative ? -0.0 : 0.0) }
            // Clinger's fast path: both operands are exact doubles, so the single IEEE operation rounds correctly.
            let power = exponent - fractionDigits
            if mantissa <= 1 << 53 && power >= -22 && power <= 22 {
                var value = Double(mantissa)
                if power < 0 { value /= exactPowersOfTen[-power] } else { value *= exactPowersOfTen[power] }
                return .double(negative ? -value : value)
            }
        }
        let text = String(decoding: UnsafeBufferPointer(rebasing: input[start..<position]), as: UTF8.self)
        guard let value = Double(text) else {
            throw JSONParseError(offset: start, message: "invalid number")
        }
        return .double(value)
    }

    // MARK: Strings

    /// Parses a string starting at its opening quote.
    mutating func parseString() throws(JSONParseError) -> String {
        let open = position
        position += 1
        let start = position
        try scanUnescapedRun(open: open)
        if input[position] == UInt8(ascii: "\"") {
            let text = String(decoding: UnsafeBufferPointer(rebasing: input[start..<position]), as: UTF8.self)
            position += 1
            return text
        }

        try unescape(open: open, from: start)
        position += 1
        return String(decoding: scratch, as: UTF8.self)
    }

    /// Assembles in `scratch` the UTF-8 of a string with escapes: its text starts at `start`, `position` is at its
    /// first backslash; on return `position` is at the closing quote.
    mutating func unescape(open: Int, from start: Int) throws(JSONParseError) {
        scratch.removeAll(keepingCapacity: true)
        scratch.append(contentsOf: UnsafeBufferPointer(rebasing: input[start..<position]))
        while input[position] == UInt8(ascii: "\\") {
            try parseEscape(open: open)
            let runStart = position
            try scanUnescapedRun(open: open)
            scratch.append(contentsOf: UnsafeBufferPointer(rebasing: input[runStart..<position]))
        }
    }

    /// Advances to the next `"` or `\`, validating UTF-8 and rejecting control characters on the way. On return
    /// `position < end`.
    mutating func scanUnescapedRun(open: Int) throws(JSONParseError) {
        guard let base = input.baseAddress else { throw JSONParseError(offset: open, message: "unterminated string") }
        while position < end {
            position = JSONByteScan.plainRunEnd(base, from: position, to: end)
            guard position < end else { break }
            let byte = input[position]
            if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") { return }
            if byte < 0x20 {
                throw failure("unescaped control character U+00\(hex(byte)) in string")
            }
            try skipUTF8Sequence()  // What else stops the plain run: a byte above 0x7F.
        }
        throw JSONParseError(offset: open, message: "unterminated string")
    }

    /// Validates one multi-byte UTF-8 sequence starting at `position` and moves past it. Overlong forms, encoded
    /// surrogates and code points above U+10FFFF are rejected, exactly as the Unicode standard requires.
    mutating func skipUTF8Sequence() throws(JSONParseError) {
        let lead = input[position]
        let length: Int
        var secondRange: ClosedRange<UInt8> = 0x80...0xBF
        switch lead {
        case 0xC2...0xDF: length = 2
        case 0xE0: (length, secondRange) = (3, 0xA0...0xBF)
        case 0xE1...0xEC, 0xEE...0xEF: length = 3
        case 0xED: (length, secondRange) = (3, 0x80...0x9F)
        case 0xF0: (length, secondRange) = (4, 0x90...0xBF)
        case 0xF1...0xF3: length = 4
        case 0xF4: (length, secondRange) = (4, 0x80...0x8F)
        default: throw failure("invalid UTF-8 byte 0x\(hex(lead)) in string")
        }
        guard end - position >= length, secondRange.contains(input[position + 1]) else {
            throw failure("invalid UTF-8 sequence in string")
        }
        for index in 2..<length where input[position + index] & 0xC0 != 0x80 {
            throw failure("invalid UTF-8 sequence in string")
        }
        position += length
    }

    /// Decodes the escape at `position` (a backslash) into `scratch`.
    mutating func parseEscape(open: Int) throws(JSONParseError) {
        let escapeStart = position
        position += 1
        guard position < end else { throw JSONParseError(offset: open, message: "unterminated string") }
        let replacement: UInt8
        switch input[position] {
        case UInt8(ascii: "\""): replacement = UInt8(ascii: "\"")
        case UInt8(ascii: "\\"): replacement = UInt8(ascii: "\\")
        case UInt8(ascii: "/"): replacement = UInt8(ascii: "/")
        case UInt8(ascii: "b"): replacement = 0x08
        case UInt8(ascii: "f"): replacement = 0x0C
        case UInt8(ascii: "n"): replacement = 0x0A
        case UInt8(ascii: "r"): replacement = 0x0D
        case UInt8(ascii: "t"): replacement = 0x09
        case UInt8(ascii: "u"):
            guard let unit = hex4(at: position + 1) else {
                throw JSONParseError(offset: escapeStart, message: "invalid \\u escape, expected 4 hex digits")
            }
            position += 5
            appendUTF8(scalar: combineSurrogates(unit))
            return
        default:
            throw JSONParseError(offset: escapeStart, message: "invalid escape character \(describeByte(at: position))")
        }
        scratch.append(replacement)
        position += 1
    }

    /// Turns a UTF-16 code unit from a `\u` escape into a scalar value, consuming a following `\u` low surrogate
    /// when `unit` is a high surrogate. Lone surrogates become U+FFFD.
    mutating func combineSurrogates(_ unit: UInt32) -> UInt32 {
        switch unit {
        case 0xD800...0xDBFF:
            guard end - position >= 6,
                input[position] == UInt8(ascii: "\\"),
                input[position + 1] == UInt8(ascii: "u"),
                let low = hex4(at: position + 2),
                (0xDC00...0xDFFF).contains(low)
            else { return 0xFFFD }
            position += 6
            return 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
        case 0xDC00...0xDFFF:
            return 0xFFFD
        default:
            return unit
        }
    }

    /// The value of four hex digits at `index`, or `nil` if they are not all there.
    func hex4(at index: Int) -> UInt32? {
        guard index >= 0, end - index >= 4 else { return nil }
        var value: UInt32 = 0
        for offset in 0..<4 {
            let byte = input[index + offset]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: return nil
            }
            value = value << 4 | UInt32(digit)
        }
        return value
    }

    mutating func appendUTF8(scalar: UInt32) {
        switch scalar {
        case ..<0x80:
            scratch.append(UInt8(scalar))
        case ..<0x800:
            scratch.append(UInt8(0xC0 | scalar >> 6))
            scratch.append(UInt8(0x80 | scalar & 0x3F))
        case ..<0x1_0000:
            scratch.append(UInt8(0xE0 | scalar >> 12))
            scratch.append(UInt8(0x80 | scalar >> 6 & 0x3F))
            scratch.append(UInt8(0x80 | scalar & 0x3F))
        default:
            scratch.append(UInt8(0xF0 | scalar >> 18))
            scratch.append(UInt8(0x80 | scalar >> 12 & 0x3F))
            scratch.append(UInt8(0x80 | scalar >> 6 & 0x3F))
            scratch.append(UInt8(0x80 | scalar & 0x3F))
        }
    }

    // MARK: Helpers

    mutating func skipWhitespace() {
        while position < end {
            switch input[position] {
            case 0x20, 0x09, 0x0A, 0x0D: position += 1
            default: return
            }
        }
    }

    func isDigit(_ byte: UInt8) -> Bool {
        byte &- UInt8(ascii: "0") < 10
    }

    func failure(_ message: String) -> JSONParseError {
        JSONParseError(offset: position, message: message)
    }

    /// "expected X" at the current position, mentioning the end of input when that is the problem.
    func expected(_ what: String) -> JSONParseError {
        failure(position < end ? "expected \(what)" : "unexpected end of input, expected \(what)")
    }

    /// The byte at `index` for a message: `'x'` for printable ASCII, `byte 0xNN` otherwise.
    func describeByte(at index: Int) -> String {
        let byte = input[index]
        if byte > 0x20 && byte < 0x7F {
            return "'\(Character(Unicode.Scalar(byte)))'"
        }
        return "byte 0x\(hex(byte))"
    }

    func hex(_ byte: UInt8) -> String {
        let digits = Array("0123456789ABCDEF")
        return "\(digits[Int(byte >> 4)])\(digits[Int(byte & 0x0F)])"
    }
}
