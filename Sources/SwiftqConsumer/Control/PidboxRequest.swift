import OrderedCollections
import SwiftqCore

/// A request read from Celery's pidbox (kombu's `Mailbox`, celery-wire-protocol.md §5.2): the command, who it is
/// for, and where the reply goes.
package struct PidboxRequest: Equatable, Sendable {
    package var method: String
    package var arguments: JSONValue?
    /// Node names the request is for; empty: everyone (unless a pattern says otherwise).
    package var destination: [String]
    package var pattern: String?
    /// `glob` (fnmatch) or `pcre` (Python's `re.match`).
    package var matcher: String?
    /// Set when a reply is wanted (with ``replyTo``); casts carry neither.
    package var ticket: String?
    package var replyTo: (exchange: String, routingKey: String)?

    package static func == (lhs: PidboxRequest, rhs: PidboxRequest) -> Bool {
        lhs.method == rhs.method && lhs.arguments == rhs.arguments && lhs.destination == rhs.destination
            && lhs.pattern == rhs.pattern && lhs.matcher == rhs.matcher && lhs.ticket == rhs.ticket
            && lhs.replyTo?.exchange == rhs.replyTo?.exchange && lhs.replyTo?.routingKey == rhs.replyTo?.routingKey
    }

    /// Why a body is not a pidbox request.
    package struct Malformed: Error, Equatable, Sendable, CustomStringConvertible {
        package var description: String
    }

    /// Reads a request body; anything that is not kombu's shape is refused with the reason.
    package init(body: JSONValue) throws(Malformed) {
        guard case .object(let object) = body else { throw Malformed(description: "not a JSON object") }
        guard let method = object["method"]?.stringValue, !method.isEmpty else {
            throw Malformed(description: "no method")
        }
        self.method = method
        let arguments = object["arguments"]
        switch arguments {
        case nil, .null?, .object?: self.arguments = arguments
        default: throw Malformed(description: "arguments is not an object")
        }
        switch object["destination"] {
        case nil, .null?: destination = []
        case .string(let node)?: destination = [node]
        case .array(let nodes)?:
            destination = try nodes.map { node throws(Malformed) in
                guard let name = node.stringValue else { throw Malformed(description: "destination is not strings") }
                return name
            }
        default: throw Malformed(description: "destination is not a list")
        }
        pattern = object["pattern"]?.stringValue
        matcher = object["matcher"]?.stringValue
        ticket = object["ticket"]?.stringValue
        if let reply = object["reply_to"], !reply.isNull {
            guard let exchange = reply["exchange"]?.stringValue, let key = reply["routing_key"]?.stringValue else {
                throw Malformed(description: "reply_to has no exchange and routing_key")
            }
            replyTo = (exchange, key)
        }
    }

    /// Whether node `name` handles this request (kombu's `Node.handle_message`): a non-empty destination must list it;
    /// otherwise a pattern with a matcher must match it; otherwise every node handles it.
    package func isAddressed(to name: String) -> Bool {
        if !destination.isEmpty { return destination.contains(name) }
        if let pattern, !pattern.isEmpty, let matcher, !matcher.isEmpty {
            switch matcher {
            case "glob": return Glob.matches(pattern: pattern, name)
            case "pcre":
                // Python's re.match: anchored at the start only. A pattern Swift cannot compile matches nothing.
                guard let regex = try? Regex(pattern) else { return false }
                return (try? regex.prefixMatch(in: name)) != nil
            default: return false
            }
        }
        return true
    }

    /// The reply message (kombu's `Mailbox._publish_reply`): `{node: reply}` to the client's reply exchange and routing
    /// key, headers `ticket` and `clock`, not persistent. Nil for a cast (no reply wanted).
    package func reply(from node: String, _ value: JSONValue, clock: Int64) -> OutboundMessage? {
        guard let replyTo, let ticket else { return nil }
        let body: JSONValue = .object([node: value])
        return OutboundMessage(
            exchange: replyTo.exchange,
            exchangeType: .direct,
            routingKey: replyTo.routingKey,
            body: body.serialized(),
            headers: ["ticket": .string(ticket), "clock": .int(clock)],
            persistent: false
        )
    }
}

/// Python's `fnmatch.fnmatchcase` for node names: `*`, `?`, `[seq]` and `[!seq]`.
package enum Glob {
    package static func matches(pattern: String, _ name: String) -> Bool {
        match(Array(pattern), 0, Array(name), 0)
    }

    private static func match(_ pattern: [Character], _ p: Int, _ name: [Character], _ n: Int) -> Bool {
        var p = p
        var n = n
        while p < pattern.count {
            switch pattern[p] {
            case "*":
                // Collapse runs of stars, then try every split.
                while p < pattern.count && pattern[p] == "*" { p += 1 }
                if p == pattern.count { return true }
                var start = n
                while start <= name.count {
                    if match(pattern, p, name, start) { return true }
                    start += 1
                }
                return false
            case "?":
                guard n < name.count else { return false }
                p += 1
                n += 1
            case "[":
                guard n < name.count, let (matched, next) = set(pattern, p, name[n]) else {
                    // An unclosed `[` is a literal, as in fnmatch.
                    guard n < name.count, name[n] == "[" else { return false }
                    p += 1
                    n += 1
                    continue
                }
                guard matched else { return false }
                p = next
                n += 1
            default:
                guard n < name.count, name[n] == pattern[p] else { return false }
                p += 1
                n += 1
            }
        }
        return n == name.count
    }

    /// Whether `character` is in the set starting at `pattern[start] == "["`, and the index after the set; nil for an
    /// unclosed set.
    private static func set(_ pattern: [Character], _ start: Int, _ character: Character) -> (Bool, Int)? {
        var index = start + 1
        var negated = false
        if index < pattern.count && pattern[index] == "!" {
            negated = true
            index += 1
        }
        var matched = false
        var first = true
        while index < pattern.count && (first || pattern[index] != "]") {
            first = false
            if index + 2 < pattern.count && pattern[index + 1] == "-" && pattern[index + 2] != "]" {
                if pattern[index] <= character && character <= pattern[index + 2] { matched = true }
                index += 3
            } else {
                if pattern[index] == character { matched = true }
                index += 1
            }
        }
        guard index < pattern.count else { return nil }
        return (matched != negated, index + 1)
    }
}
