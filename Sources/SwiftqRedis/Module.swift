// SwiftqRedis: the kombu-compatible Redis transport and result backend (hiredis).
