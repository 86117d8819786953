/// A time zone read from a TZif file (RFC 8536), the format of the system's tzdata under `/usr/share/zoneinfo`.
///
/// Parsed by hand from bytes, with no Foundation and no `TZ`/`localtime_r`, so the scheduler gives the same answer
/// in every process whatever its environment. Versions 1 to 4 are read; from version 2 on the 64-bit block is used,
/// and instants after the last transition follow the file's footer (a POSIX `TZ` rule such as
/// `CET-1CEST,M3.5.0,M10.5.0/3`), which is how "slim" tzdata files describe every future year.
public struct TimeZoneInfo: Sendable, Equatable {
    /// One local time type: its offset east of UTC, whether it is daylight saving time, its abbreviation.
    public struct LocalTimeType: Sendable, Equatable {
        public var utcOffset: Int
        public var isDST: Bool
        public var abbreviation: String
    }

    /// The IANA name (`Europe/Berlin`), or `UTC`.
    public let name: String
    /// Transition instants, seconds since the epoch, ascending.
    let transitions: [Int64]
    /// For each transition, the index in ``types`` in effect from that instant.
    let transitionTypes: [Int]
    let types: [LocalTimeType]
    /// The footer rule for instants after the last transition, if the file has one.
    let rule: POSIXTimeZoneRule?

    /// Coordinated Universal Time, built in (no file needed).
    public static let utc = TimeZoneInfo(
        name: "UTC",
        transitions: [],
        transitionTypes: [],
        types: [LocalTimeType(utcOffset: 0, isDST: false, abbreviation: "UTC")],
        rule: nil
    )

    init(name: String, transitions: [Int64], transitionTypes: [Int], types: [LocalTimeType], rule: POSIXTimeZoneRule?) {
        self.name = name
        self.transitions = transitions
        self.transitionTypes = transitionTypes
        self.types = types
        self.rule = rule
    }

    /// The local time type in effect at `instant` (seconds since the epoch).
    public func localTimeType(at instant: Int64) -> LocalTimeType {
        guard let last = transitions.last else {
            return rule?.localTimeType(at: instant) ?? types[0]
        }
        if instant < transitions[0] {
            // RFC 8536: before the first transition, the first type (version 1 readers' convention).
            return types.first { !$0.isDST } ?? types[0]
        }
        if instant >= last, let rule {
            return rule.localTimeType(at: instant)
        }
        // The last transition at or before `instant`.
        var low = 0
        var high = transitions.count - 1
        while low < high {
            let middle = (low + high + 1) / 2
            if transitions[middle] <= instant { low = middle } else { high = middle - 1 }
        }
        return types[transitionTypes[low]]
    }

    /// The offset east of UTC at `instant`, in seconds.
    public func utcOffset(at instant: Int64) -> Int {
        localTimeType(at: instant).utcOffset
    }

    /// The wall-clock time at `instant`.
    public func civilTime(at instant: Int64) -> CivilTime {
        CivilTime(secondsSinceEpoch: instant + Int64(utcOffset(at: instant)))
    }

    /// How a wall-clock time maps to instants.
    public enum Resolution: Sendable, Equatable {
        /// It occurs once.
        case unique(Int64)
        /// It occurs twice (the clock was set back): the earlier and the later instant.
        case repeated(Int64, Int64)
        /// It does not occur (the clock skipped it): the instant the clock jumped, when the first wall time after
        /// the gap began.
        case skipped(transition: Int64)
    }

    /// Which instants show the wall-clock time `civil`.
    public func resolve(_ civil: CivilTime) -> Resolution {
        let wall = civil.secondsSinceEpoch
        // No zone changes its offset twice within two days: the offsets a day either side are the candidates.
        let before = utcOffset(at: wall - 86_400)
        let after = utcOffset(at: wall + 86_400)
        var valid: [Int64] = []
        for offset in Set([before, after]) where utcOffset(at: wall - Int64(offset)) == offset {
            valid.append(wall - Int64(offset))
        }
        // A change within the day that did not change the offset at its ends is not a gap or an overlap here.
        if valid.isEmpty, before == after {
            return .unique(wall - Int64(before))
        }
        valid.sort()
        switch valid.count {
        case 1: return .unique(valid[0])
        case 0:
            // A gap: between `wall - after` (still the old offset) and `wall - before` (already the new one).
            var low = wall - Int64(after)
            var high = wall - Int64(before)
            if low > high { swap(&low, &high) }
            while low < high {
                let middle = low + (high - low) / 2
                if utcOffset(at: middle) == after { high = middle } else { low = middle + 1 }
            }
            return .skipped(transition: low)
        default: return .repeated(valid[0], valid[valid.count - 1])
        }
    }
}

/// A problem reading a time zone: unknown name, unreadable file, malformed data.
public struct TimeZoneError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

extension TimeZoneInfo {
    /// Where the system's tzdata lives on Debian.
    public static let defaultDirectory = "/usr/share/zoneinfo"

    /// Loads the zone `name` (`Europe/Berlin`) from `directory`. `UTC` (and `Etc/UTC`, `Z`) work without a file.
    public static func load(named name: String, directory: String = defaultDirectory) throws(TimeZoneError)
        -> TimeZoneInfo
    {
        if name == "UTC" || name == "Etc/UTC" || name == "Z" { return .utc }
        let plausible =
            !name.isEmpty && !name.hasPrefix("/") && !name.split(separator: "/").contains("..")
            && name.allSatisfy { $0.isLetter || $0.isNumber || "/_+-".contains($0) }
        guard plausible else {
            throw TimeZoneError(message: "\(name.debugDescription) is not an IANA time zone name such as Europe/Berlin")
        }
        switch ConfigurationFile.contents(of: "\(directory)/\(name)") {
        case .failure(let error):
            throw TimeZoneError(
                message: "unknown time zone \(name.debugDescription) (\(directory)/\(name): \(error.message))"
            )
        case .success(let bytes):
            do {
                return try parse(bytes, name: name)
            } catch {
                throw TimeZoneError(message: "\(directory)/\(name): \(error.message)")
            }
        }
    }

    /// Parses TZif bytes (RFC 8536 versions 1 to 4).
    public static func parse(_ bytes: [UInt8], name: String) throws(TimeZoneError) -> TimeZoneInfo {
        var reader = TZifReader(bytes: bytes)
        let header = try reader.header()
        var block = header
        if header.version >= 2 {
            // Skip the 32-bit block, then read the 64-bit one.
            try reader.skip(header.dataLength(timeSize: 4))
            block = try reader.header()
        }
        let timeSize = header.version >= 2 ? 8 : 4
        var transitions: [Int64] = []
        for _ in 0..<block.timeCount {
            transitions.append(timeSize == 8 ? try reader.int64() : Int64(try reader.int32()))
        }
        var transitionTypes: [Int] = []
        for _ in 0..<block.timeCount {
            let index = Int(try reader.byte())
            guard index < block.typeCount else { throw TimeZoneError(message: "transition type out of range") }
            transitionTypes.append(index)
        }
        var rawTypes: [(offset: Int, isDST: Bool, abbreviationIndex: Int)] = []
        for _ in 0..<block.typeCount {
            let offset = Int(try reader.int32())
            let isDST = try reader.byte() != 0
            let index = Int(try reader.byte())
            rawTypes.append((offset, isDST, index))
        }
        let characters = try reader.bytes(block.charCount)
        try reader.skip(block.leapCount * (timeSize + 4) + block.isStdCount + block.isUTCount)
        let types = rawTypes.map { raw in
            var end = raw.abbreviationIndex
            while end < characters.count && characters[end] != 0 { end += 1 }
            let text = raw.abbreviationIndex < characters.count ? characters[raw.abbreviationIndex..<end] : []
            return LocalTimeType(
                utcOffset: raw.offset,
                isDST: raw.isDST,
                abbreviation: String(decoding: text, as: UTF8.self)
            )
        }
        guard !types.isEmpty else { throw TimeZoneError(message: "no local time types") }
        var rule: POSIXTimeZoneRule?
        if header.version >= 2, let footer = reader.footer(), !footer.isEmpty {
            rule = try POSIXTimeZoneRule(parsing: footer)
        }
        return TimeZoneInfo(
            name: name,
            transitions: transitions,
            transitionTypes: transitionTypes,
            types: types,
            rule: rule
        )
    }
}

/// Reads big-endian fields of a TZif file.
private struct TZifReader {
    struct Header {
        var version: Int
        var isUTCount: Int
        var isStdCount: Int
        var leapCount: Int
        var timeCount: Int
        var typeCount: Int
        var charCount: Int

        func dataLength(timeSize: Int) -> Int {
            timeCount * timeSize + timeCount + typeCount * 6 + charCount + leapCount * (timeSize + 4) + isStdCount
                + isUTCount
        }
    }

    let bytes: [UInt8]
    var position = 0

    mutating func header() throws(TimeZoneError) -> Header {
        let magic = try self.bytes(4)
        guard magic == Array("TZif".utf8) else { throw TimeZoneError(message: "not a TZif file") }
        let versionByte = try byte()
        let version = versionByte == 0 ? 1 : Int(versionByte) - Int(UInt8(ascii: "0"))
        guard (1...9).contains(version) else { throw TimeZoneError(message: "unknown TZif version") }
        try skip(15)
        var counts: [Int] = []
        for _ in 0..<6 { counts.append(Int(try uint32())) }
        return Header(
            version: version,
            isUTCount: counts[0],
            isStdCount: counts[1],
            leapCount: counts[2],
            timeCount: counts[3],
            typeCount: counts[4],
            charCount: counts[5]
        )
    }

    mutating func skip(_ count: Int) throws(TimeZoneError) {
        guard count >= 0, position + count <= bytes.count else { throw TimeZoneError(message: "truncated TZif file") }
        position += count
    }

    mutating func bytes(_ count: Int) throws(TimeZoneError) -> [UInt8] {
        let start = position
        try skip(count)
        return Array(bytes[start..<position])
    }

    mutating func byte() throws(TimeZoneError) -> UInt8 {
        try skip(1)
        return bytes[position - 1]
    }

    mutating func uint32() throws(TimeZoneError) -> UInt32 {
        var value: UInt32 = 0
        for byte in try bytes(4) { value = value << 8 | UInt32(byte) }
        return value
    }

    mutating func int32() throws(TimeZoneError) -> Int32 {
        Int32(bitPattern: try uint32())
    }

    mutating func int64() throws(TimeZoneError) -> Int64 {
        var value: UInt64 = 0
        for byte in try bytes(8) { value = value << 8 | UInt64(byte) }
        return Int64(bitPattern: value)
    }

    /// The footer between two newlines after the 64-bit block, if present.
    mutating func footer() -> String? {
        guard position < bytes.count, bytes[position] == UInt8(ascii: "\n") else { return nil }
        guard let end = bytes[(position + 1)...].firstIndex(of: UInt8(ascii: "\n")) else { return nil }
        return String(decoding: bytes[(position + 1)..<end], as: UTF8.self)
    }
}
