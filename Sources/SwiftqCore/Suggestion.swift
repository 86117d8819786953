/// "Did you mean …?" for misspelt keys and values: a typo in a setting name must not be silently ignored, and the
/// fix should be in the message.
enum Suggestion {
    /// The candidates closest to `word`, formatted for a message (`"concurrency"`, or `"allow_uids" or
    /// "allow_gids"` on a tie), or `nil` when none is close enough to be a plausible typo.
    ///
    /// Comparison ignores case and treats `-` as `_` (`Prefetch-Multiplier` finds `prefetch_multiplier`). A
    /// candidate qualifies within an edit distance (with transpositions) of a third of its length, at least 1, or
    /// when one word starts the other and the shorter has at least 4 characters (`prefetch`, `shutdown`).
    static func closest(to word: String, among candidates: [String]) -> String? {
        let target = normalize(word)
        guard !target.isEmpty else {
            return nil
        }
        var best: [String] = []
        var bestScore = Int.max
        for candidate in candidates {
            let normalized = normalize(candidate)
            let isPrefix =
                min(target.count, normalized.count) >= 4
                && (normalized.hasPrefix(target) || target.hasPrefix(normalized))
            let score = isPrefix ? 1 : distance(target, normalized)
            guard score <= max(1, normalized.count / 3) else {
                continue
            }
            if score < bestScore {
                best = [candidate]
                bestScore = score
            } else if score == bestScore {
                best.append(candidate)
            }
        }
        return best.isEmpty ? nil : list(best)
    }

    static func normalize(_ word: String) -> String {
        word.lowercased().replacing("-", with: "_")
    }

    /// `"a"`, `"a" or "b"`, `"a", "b" or "c"`; unquoted when `quoted` is false.
    static func list(_ words: [String], quoted: Bool = true) -> String {
        let items = quoted ? words.map { "\"\($0)\"" } : words
        guard let last = items.last else {
            return ""
        }
        return items.count == 1 ? last : items.dropLast().joined(separator: ", ") + " or " + last
    }

    /// Optimal string alignment distance: insertions, deletions, substitutions and adjacent transpositions.
    static func distance(_ left: String, _ right: String) -> Int {
        let a = Array(left.unicodeScalars)
        let b = Array(right.unicodeScalars)
        guard !a.isEmpty else {
            return b.count
        }
        guard !b.isEmpty else {
            return a.count
        }
        var previousPrevious = [Int](repeating: 0, count: b.count + 1)
        var previous = Array(0...b.count)
        var current = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            current[0] = i
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                    current[j] = min(current[j], previousPrevious[j - 2] + 1)
                }
            }
            (previousPrevious, previous, current) = (previous, current, previousPrevious)
        }
        return previous[b.count]
    }
}
