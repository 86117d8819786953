extension AMQPURL {
    /// kombu's failover list: `amqp://h1:5672//;amqp://h2:5672//;…`, the hosts tried in turn (kombu's default
    /// `round-robin` failover strategy). A single URL is a list of one. Each element is parsed as
    /// ``init(parsing:)`` does; an empty element, or one of another scheme than the first, is refused.
    ///
    /// - Throws: ``AMQPError`` of kind ``AMQPError/Kind-swift.enum/invalidURL(_:)`` naming the element.
    public static func failoverList(parsing text: String) throws(AMQPError) -> [AMQPURL] {
        let elements = text.split(separator: ";", omittingEmptySubsequences: false).map {
            String($0.drop(while: { $0 == " " }).reversed().drop(while: { $0 == " " }).reversed())
        }
        guard elements.count > 1 else { return [try AMQPURL(parsing: text)] }
        var urls: [AMQPURL] = []
        for (index, element) in elements.enumerated() {
            guard !element.isEmpty else {
                throw AMQPError.invalidURL(
                    "host \(index + 1) of the failover list",
                    "it is empty; separate URLs with one ';', as in amqp://h1//;amqp://h2//"
                )
            }
            let url = try AMQPURL(parsing: element)
            if let first = urls.first, first.usesTLS != url.usesTLS {
                throw AMQPError.invalidURL(
                    maskPassword(element),
                    "host \(index + 1) of the failover list uses another scheme than the first (amqp:// and amqps:// "
                        + "cannot be mixed: the TLS settings are the broker's)"
                )
            }
            urls.append(url)
        }
        return urls
    }
}
