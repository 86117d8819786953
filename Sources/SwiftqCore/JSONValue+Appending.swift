extension JSONValue {
    /// Appends `string` as a JSON string exactly as ``serialized()`` writes it, for encoders that build a message's
    /// bytes directly (Celery's events, kombu envelopes) without a ``JSONValue`` tree per message.
    public static func appendJSON(_ string: String, to buffer: inout [UInt8]) {
        appendString(string, to: &buffer)
    }

    /// Appends `value` as ``serialized()`` writes a ``double(_:)``.
    public static func appendJSON(_ value: Double, to buffer: inout [UInt8]) {
        appendDouble(value, to: &buffer)
    }

    /// Appends `value` as ``serialized()`` writes an ``int(_:)``.
    public static func appendJSON(_ value: Int64, to buffer: inout [UInt8]) {
        appendInteger(value, to: &buffer)
    }
}
