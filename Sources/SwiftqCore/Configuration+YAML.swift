extension Configuration {
    /// Parses YAML text; `file` is used in error messages as given.
    ///
    /// Unset keys keep their defaults; an empty document (or one with only comments) is all defaults. Throws every
    /// problem found (syntax errors stop at the first, since nothing after it can be trusted).
    ///
    /// This is the file alone: the environment is not consulted and password files are not read (see
    /// ``load(contentsOf:environment:)`` and ``effective(parsing:file:environment:)`` for the configuration the
    /// daemon runs with). It is what a child process uses on text its supervisor already resolved.
    public static func parse(_ yaml: String, file: String) throws(ConfigurationError) -> Configuration {
        var decoder = ConfigurationDecoder(file: file)
        let configuration = decoder.decode(try compose(yaml, file: file))
        let diagnostics =
            decoder.diagnostics
            + sentinelDiagnostics(
                configuration,
                file: file,
                keyMarks: decoder.keyMarks,
                reported: decoder.diagnostics
            )
        guard diagnostics.isEmpty else {
            throw ConfigurationError(diagnostics: diagnostics)
        }
        return configuration
    }

    /// The YAML node tree of `yaml`, or its syntax error as a one-line diagnostic.
    static func compose(_ yaml: String, file: String) throws(ConfigurationError) -> YAMLNode? {
        do {
            return try YAMLComposer.compose(yaml)
        } catch {
            throw ConfigurationError(diagnostics: [YAMLSyntaxDiagnostic.make(error, file: file, yaml: yaml)])
        }
    }
}

/// Turns ``YAMLError``s into one-line diagnostics at the problem's position.
enum YAMLSyntaxDiagnostic {
    static func make(_ error: YAMLError, file: String, yaml: String) -> ConfigurationDiagnostic {
        switch error.code {
        case .scanner, .parser, .undefinedAlias, .memory, .tooDeep, .tooLarge:
            var message = error.problem
            if let context = error.context {
                message += " (\(context.text) at line \(context.mark.line), column \(context.mark.column))"
            }
            return ConfigurationDiagnostic(
                file: file,
                line: error.mark?.line,
                column: error.mark?.column,
                message: message
            )
        case .multipleDocuments:
            return ConfigurationDiagnostic(
                file: file,
                line: error.mark?.line,
                column: error.mark?.column,
                message: "expected a single YAML document, found another one"
            )
        case .reader:
            let mark = error.byteOffset.flatMap { position(ofUTF8Offset: $0, in: yaml) }
            var message = error.problem
            if let value = error.value, value >= 0 {
                message += " (byte 0x\(String(value, radix: 16, uppercase: true)))"
            }
            return ConfigurationDiagnostic(file: file, line: mark?.line, column: mark?.column, message: message)
        case .duplicateKeys:
            return duplicateKeys(
                error.keys,
                firstAt: error.mark ?? YAMLMark(line: 0, column: 0),
                file: file,
                yaml: yaml
            )
        }
    }

    /// The composer only says which key repeats and where its first occurrence is. In a block mapping the repetition sits
    /// at the same indentation further down, and the parent keys at smaller indentations above: finding them points
    /// the message at the line to delete, with its key path. When the layout is not that simple (flow style, list
    /// items), the diagnostic falls back to the first occurrence without a key path.
    static func duplicateKeys(_ keys: [String], firstAt first: YAMLMark, file: String, yaml: String)
        -> ConfigurationDiagnostic
    {
        let lines = yaml.split(omittingEmptySubsequences: false, whereSeparator: isLineBreak)
        guard keys.count == 1, let key = keys.first, first.line >= 1, first.line <= lines.count else {
            let names = keys.map { ConfigurationDecoder.quoted($0) }.joined(separator: ", ")
            return ConfigurationDiagnostic(
                file: file,
                line: first.line,
                column: first.column,
                message: "duplicate keys \(names): each key may appear only once in a mapping"
            )
        }
        let indent = first.column - 1
        var repeatLine: Int?
        for index in first.line..<lines.count {
            let line = lines[index]
            guard let lineIndent = indentation(of: line) else {
                continue  // blank or comment
            }
            if lineIndent < indent {
                break
            }
            if lineIndent == indent && blockKey(in: line) == key {
                repeatLine = index + 1
                break
            }
        }
        guard let repeatLine else {
            return ConfigurationDiagnostic(
                file: file,
                line: first.line,
                column: first.column,
                message: "duplicate key \(ConfigurationDecoder.quoted(key)): each key may appear only once in a mapping"
            )
        }
        return ConfigurationDiagnostic(
            file: file,
            line: repeatLine,
            column: first.column,
            keyPath: parentPath(above: first.line, indent: indent, lines: lines).map {
                ($0 + [key]).joined(separator: ".")
            },
            message: "duplicate key; already set on line \(first.line)"
        )
    }

    /// The keys of the enclosing block mappings of a key at `indent` on 1-based line `line`, outermost first, or
    /// `nil` when an enclosing line is not a plain `key:` line.
    private static func parentPath(above line: Int, indent: Int, lines: [Substring]) -> [String]? {
        var path: [String] = []
        var currentIndent = indent
        var index = line - 2
        while currentIndent > 0 && index >= 0 {
            defer { index -= 1 }
            guard let lineIndent = indentation(of: lines[index]), lineIndent < currentIndent else {
                continue
            }
            guard let key = blockKey(in: lines[index]), isBareKeyLine(lines[index]) else {
                return nil
            }
            path.insert(key, at: 0)
            currentIndent = lineIndent
        }
        return currentIndent == 0 ? path : nil
    }

    /// Spaces before the content, or `nil` for blank and comment-only lines.
    private static func indentation(of line: Substring) -> Int? {
        let content = line.drop { $0 == " " }
        guard let first = content.first, first != "#" else {
            return nil
        }
        return line.count - content.count
    }

    /// The plain key of a `key:` or `key: value` line.
    private static func blockKey(in line: Substring) -> String? {
        let content = line.drop { $0 == " " }
        guard let colon = content.firstIndex(of: ":") else {
            return nil
        }
        let key = content[..<colon]
        let rest = content[content.index(after: colon)...]
        guard !key.isEmpty, rest.isEmpty || rest.first == " ",
            key.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" || $0 == "." })
        else {
            return nil
        }
        return String(key)
    }

    /// `key:` optionally followed by spaces and a comment: a line that opens a nested block.
    private static func isBareKeyLine(_ line: Substring) -> Bool {
        guard let colon = line.firstIndex(of: ":") else {
            return false
        }
        let rest = line[line.index(after: colon)...].drop { $0 == " " }
        return rest.isEmpty || rest.first == "#"
    }

    /// 1-based line and column (in Unicode scalars) of the byte at `offset` (libyaml's reader counts bytes);
    /// a byte inside a scalar is located at that scalar.
    static func position(ofUTF8Offset offset: Int, in text: String) -> (line: Int, column: Int)? {
        var line = 1
        var column = 1
        var bytes = 0
        var afterCarriageReturn = false
        for scalar in text.unicodeScalars {
            bytes += UTF8.width(scalar)
            if bytes > offset {
                return (line, column)
            }
            switch scalar {
            case "\n" where afterCarriageReturn:
                column = 1  // the second half of \r\n
            case "\n", "\r", "\u{85}", "\u{2028}", "\u{2029}":
                line += 1
                column = 1
            default:
                column += 1
            }
            afterCarriageReturn = scalar == "\r"
        }
        return bytes == offset ? (line, column) : nil
    }

    /// YAML's line breaks (`\r\n` is one `Character` in Swift).
    static func isLineBreak(_ character: Character) -> Bool {
        ["\n", "\r", "\r\n", "\u{85}", "\u{2028}", "\u{2029}"].contains(character)
    }
}
