extension String {
    /// The UTF-8 text in `bytes`, or nil when it is not valid UTF-8. Plain ASCII (nearly every header value) is
    /// recognised eight bytes at a time and decoded without the generic validation, which looked up type metadata
    /// at run time on every call.
    package init?(validatingUTF8Bytes bytes: UnsafeBufferPointer<UInt8>) {
        if JSONByteScan.isASCII(bytes) {
            self.init(decoding: bytes, as: UTF8.self)
        } else if let text = String(validating: bytes, as: UTF8.self) {
            self = text
        } else {
            return nil
        }
    }
}
