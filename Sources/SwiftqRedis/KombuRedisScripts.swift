/// The Lua scripts behind ``KombuRedisBroker``: each multi-step change to kombu's keys is one script, so a crash
/// of the worker at any point leaves every message either in its queue or recorded in `unacked`.
///
/// Envelopes are never re-encoded when that can be avoided. Redis' bundled cjson turns `[]` into `{}` and rounds
/// numbers to 14 significant digits, so a decode/encode round trip would change headers Python wrote. The scripts
/// decode with cjson only to read fields, and edit the JSON text directly: `unacked` values embed the payload
/// verbatim, and the redelivered marks are inserted into the original text. Only when the text cannot be edited
/// safely (a `redelivered` key already present with another value, escaped key names) is the envelope re-encoded,
/// as kombu itself does in Python.
enum KombuRedisScripts {
    /// Helpers shared by the scripts that move messages back from `unacked` to their queues. They read `ARGV[1]`
    /// (the global key prefix) and `ARGV[2]` (the separator).
    private static let restorePrelude = #"""
        local PREFIX, SEP = ARGV[1], ARGV[2]

        -- Index of the next character that is not JSON white space, from i on.
        local function ws(s, i)
          return string.find(s, '[^ \t\r\n]', i)
        end

        -- Index one past the end of the JSON value that starts at s[i]; nil when the text is not JSON there.
        local function skip(s, i)
          local c = string.byte(s, i)
          if c == nil then return nil end
          if c == 34 then
            local j = i + 1
            while true do
              local k = string.find(s, '["\\]', j)
              if k == nil then return nil end
              if string.byte(s, k) == 92 then j = k + 2 else return k + 1 end
            end
          elseif c == 123 or c == 91 then
            local depth, j = 0, i
            while true do
              local k = string.find(s, '[{}%[%]"]', j)
              if k == nil then return nil end
              local b = string.byte(s, k)
              if b == 34 then
                j = skip(s, k)
                if j == nil then return nil end
              else
                if b == 123 or b == 91 then depth = depth + 1 else depth = depth - 1 end
                j = k + 1
                if depth == 0 then return j end
              end
            end
          else
            local k = string.find(s, '[,}%] \t\r\n]', i)
            if k == nil then return #s + 1 end
            return k
          end
        end

        -- Index where the value of member `name` starts in the object whose '{' is at s[open]; the last one when
        -- the name repeats (Python's json keeps the last). nil when absent or the text cannot be followed.
        local function member(s, open, name)
          local want = '"' .. name .. '"'
          local found = nil
          local j = ws(s, open + 1)
          if j == nil or string.byte(s, j) == 125 then return nil end
          while true do
            if string.byte(s, j) ~= 34 then return nil end
            local key_end = skip(s, j)
            if key_end == nil then return nil end
            local colon = ws(s, key_end)
            if colon == nil or string.byte(s, colon) ~= 58 then return nil end
            local v = ws(s, colon + 1)
            if v == nil then return nil end
            if string.sub(s, j, key_end - 1) == want then found = v end
            local after = skip(s, v)
            if after == nil then return nil end
            local n = ws(s, after)
            if n == nil then return nil end
            if string.byte(s, n) == 125 then return found end
            if string.byte(s, n) ~= 44 then return nil end
            j = ws(s, n + 1)
            if j == nil then return nil end
          end
        end

        -- s with '"redelivered": true' inserted as the first member of the object whose '{' is at s[open].
        local function with_flag(s, open)
          local n = ws(s, open + 1)
          if n ~= nil and string.byte(s, n) == 125 then
            return string.sub(s, 1, open) .. '"redelivered": true' .. string.sub(s, open + 1)
          end
          return string.sub(s, 1, open) .. '"redelivered": true, ' .. string.sub(s, open + 1)
        end

        -- kombu's restore marks: headers.redelivered and properties.delivery_info.redelivered set to true, where
        -- those objects exist. d is the decoded envelope.
        local function mark_redelivered(env, d)
          local reencode = false
          local top = ws(env, 1)
          if top == nil or string.byte(env, top) ~= 123 then return env end
          if type(d.headers) == 'table' and d.headers.redelivered ~= true then
            local h = member(env, top, 'headers')
            if h == nil then
              reencode = true
            elseif string.byte(env, h) == 123 then
              if d.headers.redelivered == nil then env = with_flag(env, h) else reencode = true end
            end
          end
          local p = d.properties
          if type(p) == 'table' and type(p.delivery_info) == 'table' and p.delivery_info.redelivered ~= true then
            local po = member(env, top, 'properties')
            local di = nil
            if po ~= nil and string.byte(env, po) == 123 then di = member(env, po, 'delivery_info') end
            if di == nil then
              reencode = true
            elseif string.byte(env, di) == 123 then
              if p.delivery_info.redelivered == nil then env = with_flag(env, di) else reencode = true end
            end
          end
          if reencode then
            if type(d.headers) == 'table' then d.headers.redelivered = true end
            if type(p) == 'table' and type(p.delivery_info) == 'table' then p.delivery_info.redelivered = true end
            return cjson.encode(d)
          end
          return env
        end

        -- The parts of an unacked value '[envelope, exchange, routing_key]': the envelope's own text, and the
        -- two strings decoded. nil when the value does not have that shape.
        local function split_unacked(v)
          local open = ws(v, 1)
          if open == nil or string.byte(v, open) ~= 91 then return nil end
          local e1 = ws(v, open + 1)
          if e1 == nil then return nil end
          local e2 = skip(v, e1)
          if e2 == nil then return nil end
          local c1 = ws(v, e2)
          if c1 == nil or string.byte(v, c1) ~= 44 then return nil end
          local x1 = ws(v, c1 + 1)
          local x2 = x1 and skip(v, x1)
          if x2 == nil then return nil end
          local c2 = ws(v, x2)
          if c2 == nil or string.byte(v, c2) ~= 44 then return nil end
          local r1 = ws(v, c2 + 1)
          local r2 = r1 and skip(v, r1)
          if r2 == nil then return nil end
          local ok1, exchange = pcall(cjson.decode, string.sub(v, x1, x2 - 1))
          local ok2, routing_key = pcall(cjson.decode, string.sub(v, r1, r2 - 1))
          if not ok1 or type(exchange) ~= 'string' then exchange = '' end
          if not ok2 or type(routing_key) ~= 'string' then routing_key = '' end
          return string.sub(v, e1, e2 - 1), exchange, routing_key
        end

        -- kombu's topic matching (TopicExchange.key_to_pattern): '#' is '.*?', '*' is '.*?[^.]', words literal.
        local function topic_pattern(key)
          local words = {}
          for word in string.gmatch(key .. '.', '([^.]*)%.') do
            if word == '#' then
              table.insert(words, '.-')
            elseif word == '*' then
              table.insert(words, '.-[^%.]')
            else
              table.insert(words, (string.gsub(word, '[%^%$%(%)%%%.%[%]%*%+%-%?]', '%%%0')))
            end
          end
          return '^' .. table.concat(words, '%.') .. '$'
        end

        -- The queues a restored message goes to, as kombu's _lookup finds them: the routing key itself for the
        -- anonymous exchange, else the bindings in _kombu.binding.<exchange> (direct when the member's pattern is
        -- empty, topic otherwise). When no binding matches, the routing key is taken as the queue name (kombu
        -- would drop the message).
        local function route(exchange, routing_key)
          if exchange ~= '' then
            local queues, seen = {}, {}
            for _, m in ipairs(redis.call('SMEMBERS', PREFIX .. '_kombu.binding.' .. exchange)) do
              local a = string.find(m, SEP, 1, true)
              local b = a and string.find(m, SEP, a + #SEP, true)
              if b then
                local key = string.sub(m, 1, a - 1)
                local pattern = string.sub(m, a + #SEP, b - 1)
                local queue = string.sub(m, b + #SEP)
                local hit
                if pattern == '' then
                  hit = key == routing_key
                else
                  hit = string.find(routing_key, topic_pattern(key)) ~= nil
                end
                if hit and not seen[queue] then
                  seen[queue] = true
                  table.insert(queues, queue)
                end
              end
            end
            if #queues > 0 then return queues end
          end
          if routing_key == '' then return {} end
          return {routing_key}
        end

        -- kombu's _get_message_priority then priority(): properties.priority clamped to 0..9 (0 when absent or
        -- not a number), mapped to its bucket in [0, 3, 6, 9].
        local function bucket_of(d)
          local priority = 0
          if type(d.properties) == 'table' then
            local n = tonumber(d.properties.priority)
            if n ~= nil and n == n then
              if n >= 0 then n = math.floor(n) else n = math.ceil(n) end
              priority = math.max(0, math.min(9, n))
            end
          end
          if priority >= 9 then return 9 elseif priority >= 6 then return 6 elseif priority >= 3 then return 3 end
          return 0
        end

        local function queue_key(queue, bucket)
          if bucket == 0 then return PREFIX .. queue end
          return PREFIX .. queue .. SEP .. bucket
        end

        -- Moves one unacked entry back to its queue(s) with the redelivered marks: RPUSH (the head, next to be
        -- consumed) like kombu's restore, or LPUSH (the tail) like kombu's reject with requeue. Returns 1 when
        -- restored, 0 when the tag was not in unacked (already acked or restored), 2 when the entry could not be
        -- read or routed and was parked instead.
        local function restore(tag, leftmost, unacked, index, parked)
          local v = redis.call('HGET', unacked, tag)
          if not v then
            redis.call('ZREM', index, tag)
            return 0
          end
          local env, exchange, routing_key = split_unacked(v)
          local ok, d = false, nil
          if env ~= nil then ok, d = pcall(cjson.decode, env) end
          local queues = {}
          if ok and type(d) == 'table' then queues = route(exchange, routing_key) end
          if #queues == 0 then
            redis.call('HSET', parked, tag, v)
            redis.call('HDEL', unacked, tag)
            redis.call('ZREM', index, tag)
            return 2
          end
          local marked = mark_redelivered(env, d)
          local bucket = bucket_of(d)
          for _, queue in ipairs(queues) do
            if leftmost then
              redis.call('LPUSH', queue_key(queue, bucket), marked)
            else
              redis.call('RPUSH', queue_key(queue, bucket), marked)
            end
          end
          redis.call('HDEL', unacked, tag)
          redis.call('ZREM', index, tag)
          return 1
        end

        """#

    /// Takes up to `max` messages and records each in `unacked`, `unacked_index` and the owner's set (with the
    /// index's ``KombuRedisLayout/indexEncodingMember``).
    ///
    /// KEYS: unacked, unacked_index, owner set, then the queue keys in consume order. ARGV: max, then for each
    /// queue key the queue name (the routing key recorded when the envelope has no `delivery_info`).
    /// Returns a flat array of (key, payload, delivery tag or nil) triples; nil marks a malformed payload, which
    /// is returned but not recorded.
    static let reserve = RedisScript(
        name: "kombu.reserve",
        source: #"""
            -- The envelope's properties. kombu (and swiftq) write them last, `"properties": {...}}`: when the last
            -- such key's object closes the envelope, it is a member of the envelope itself (a key nested deeper
            -- would be followed by more than one brace), and only that object is decoded, a quarter of the envelope
            -- (~2 µs of the server's time per message). Any other layout decodes the whole envelope.
            -- Where the object of the last `"properties":` key opens (after one optional space), or nil. The plain
            -- search looks for `properties":` without its quote: memchr stops at each 'p' of the envelope (~20 in
            -- Celery's) instead of at each '"' (~100), and one search covers both spacings; in this server's Lua
            -- every call costs ~1k instructions, so fewer calls count as much as fewer bytes (a fifth of the
            -- script's cost per message went to the two searches this replaces, in callgrind).
            local function properties_open(payload)
              local last, from = nil, 1
              while true do
                local at, key_end = string.find(payload, 'properties":', from, true)
                if not at then break end
                -- The quote before must open the key; after a backslash it is inside a longer key, `"a\"properties"`.
                if string.byte(payload, at - 1) == 34 and string.byte(payload, at - 2) ~= 92 then last = key_end end
                from = key_end + 1
              end
              if not last then return nil end
              local open = last + 1
              if string.byte(payload, open) == 32 then open = open + 1 end
              if string.byte(payload, open) == 123 then return open end
              return nil
            end
            -- When the envelope's last byte is a brace (nothing after it, as kombu and swiftq write it), the object
            -- is what lies between its opening brace and that last one; cjson accepts that text only if it is one
            -- object, so when it decodes, the object is followed by nothing but the brace that closes the envelope.
            -- That spares the `%b{}` match (a third of what finding the properties cost the server, in callgrind).
            -- Otherwise the object is matched by its braces and must be followed by the envelope's last brace.
            local function properties_of(payload, open)
              if open then
                local last = #payload
                local object
                if string.byte(payload, last) == 125 then
                  object = string.sub(payload, open, last - 1)
                else
                  local matched, after = string.match(payload, '^(%b{})()', open)
                  if matched and string.find(payload, '^%s*}%s*$', after) then object = matched end
                end
                if object then
                  local ok, p = pcall(cjson.decode, object)
                  if ok and type(p) == 'table' then return p end
                end
              end
              local ok, d = pcall(cjson.decode, payload)
              if ok and type(d) == 'table' and type(d.properties) == 'table' then return d.properties end
              return nil
            end
            -- The tag, exchange and routing key of an envelope (false when it has no tag), mostly without cjson.
            -- Redis' Lua hashes every byte of every string it makes (~10 instructions a byte), and the decode makes a
            -- table and a string for each member. kombu and swiftq end the properties with
            -- `"delivery_info": {"exchange": "E", "routing_key": "R"}`, members without braces, and
            -- `"delivery_tag": "T"}}` closing the envelope: read with two anchored patterns and plain searches
            -- (Lua's matcher costs tens of instructions a byte; memchr does not), every string without escapes, so
            -- its text is its value. When no `}` lies between the properties' brace and delivery_info's, the next
            -- one after it is the properties' own, the first delivery_tag key after it is the last member, and no
            -- second delivery_info follows, a valid envelope has exactly these values: the object holding both keys
            -- closes just before the envelope does, so it is a member of the envelope, and the properties' object,
            -- still open where delivery_info is, can only be that object (were it an outer one, it would close after
            -- it, where the envelope closes). A quote after a backslash does not open a key. An envelope that is not
            -- valid JSON is the consumer's to reject, by the tag read here. Anything else is decoded.
            local INFO = '^"delivery_info": ?{"exchange": ?"([^"\\]*)", ?"routing_key": ?"([^"\\]*)"()}'
            local TAG = '^"delivery_tag": ?"([^"\\]*)"}}$'
            local function delivery_of(payload, queue)
              local open = properties_open(payload)
              local last = #payload
              if open and string.byte(payload, last) == 125 then
                local at = string.find(payload, '"delivery_info":', open, true)
                if at and string.byte(payload, at - 1) ~= 92 then
                  local exchange, routing_key, close = string.match(payload, INFO, at)
                  if close and string.find(payload, '}', open, true) == close
                    and string.find(payload, '}', close + 1, true) == last - 1
                  then
                    local key = string.find(payload, '"delivery_tag":', close, true)
                    if key and string.byte(payload, key - 1) ~= 92
                      and not string.find(payload, '"delivery_info":', close, true)
                    then
                      local tag = string.match(payload, TAG, key)
                      if tag == '' then return false end
                      if tag then return tag, exchange, routing_key end
                    end
                  end
                end
              end
              local p = properties_of(payload, open)
              if not p or type(p.delivery_tag) ~= 'string' or p.delivery_tag == '' then return false end
              local exchange, routing_key = '', queue
              local info = p.delivery_info
              if type(info) == 'table' then
                if type(info.exchange) == 'string' then exchange = info.exchange end
                if type(info.routing_key) == 'string' then routing_key = info.routing_key end
              end
              return p.delivery_tag, exchange, routing_key
            end
            -- A batch's messages share an exchange and routing key or two: each is encoded once.
            local encoded = {}
            local function encode(text)
              local e = encoded[text]
              if not e then
                e = cjson.encode(text)
                encoded[text] = e
              end
              return e
            end
            local max = tonumber(ARGV[1])
            local out = {}
            if max == nil or max <= 0 then return out end
            local t = redis.call('TIME')
            local now = t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
            local taken = 0
            -- What goes into unacked, unacked_index and the owner set: recorded with one call each per thousand
            -- messages, not three calls per message (about 1 µs of the server's time per message, of the ~12 this
            -- script costs, in a micro-benchmark); HSET and ZADD keep the last value of a repeated tag, as one call
            -- per message did.
            local tags, entries, recorded, n = {}, {}, 0, 0
            for i = 4, #KEYS do
              if taken >= max then break end
              local popped = redis.call('RPOP', KEYS[i], max - taken)
              if popped then
                for _, payload in ipairs(popped) do
                  taken = taken + 1
                  local tag, exchange, routing_key = delivery_of(payload, ARGV[i - 2])
                  if tag then
                    recorded = recorded + 1
                    tags[recorded] = tag
                    entries[recorded] =
                      '[' .. payload .. ', ' .. encode(exchange) .. ', ' .. encode(routing_key) .. ']'
                  end
                  out[n + 1], out[n + 2], out[n + 3] = KEYS[i], payload, tag
                  n = n + 3
                end
              end
            end
            for first = 1, recorded, 1000 do
              local last = math.min(first + 999, recorded)
              local fields, scored, k, z = {}, {}, 0, 0
              -- The index's skiplist keeper (KombuRedisLayout.indexEncodingMember) first: on a new or small index
              -- it makes the index a skiplist before the tags go in.
              if first == 1 then
                scored[1], scored[2], z = '+inf', '\#(KombuRedisLayout.indexEncodingMember)', 2
              end
              for j = first, last do
                local tag = tags[j]
                fields[k + 1], fields[k + 2] = tag, entries[j]
                scored[z + 1], scored[z + 2] = now, tag
                k, z = k + 2, z + 2
              end
              redis.call('HSET', KEYS[1], unpack(fields))
              redis.call('ZADD', KEYS[2], unpack(scored))
              redis.call('SADD', KEYS[3], unpack(tags, first, last))
            end
            return out
            """#
    )

    /// Forgets delivered messages: ZREM unacked_index, HDEL unacked, SREM owner set.
    ///
    /// KEYS: unacked, unacked_index, owner set. ARGV: delivery tags. Returns how many were still in `unacked`.
    static let ack = RedisScript(
        name: "kombu.ack",
        source: ackFunction + #"""
            return ack_tags(1)
            """#
    )

    /// The Lua function behind every ack (``ack``, and the script that stores results and then acks their
    /// messages): `ack_tags(first)` forgets the tags `ARGV[first]…` in KEYS[1] (unacked), KEYS[2] (unacked_index)
    /// and KEYS[3] (the owner set), a thousand per call, and returns how many were still in `unacked`.
    static let ackFunction = #"""
        local function ack_tags(first)
          local removed = 0
          for i = first, #ARGV, 1000 do
            local last = math.min(i + 999, #ARGV)
            redis.call('ZREM', KEYS[2], unpack(ARGV, i, last))
            removed = removed + redis.call('HDEL', KEYS[1], unpack(ARGV, i, last))
            redis.call('SREM', KEYS[3], unpack(ARGV, i, last))
          end
          return removed
        end

        """#

    /// kombu's reject with requeue: the stored envelope, with the redelivered marks, LPUSHed to the tail of its
    /// queue; then forgotten in unacked, unacked_index and the owner set.
    ///
    /// KEYS: unacked, unacked_index, owner set, parked hash. ARGV: prefix, separator, tag.
    /// Returns 1 (requeued), 0 (not in unacked) or 2 (parked).
    static let requeue = RedisScript(
        name: "kombu.requeue",
        source: restorePrelude + #"""
            local result = restore(ARGV[3], true, KEYS[1], KEYS[2], KEYS[4])
            redis.call('SREM', KEYS[3], ARGV[3])
            return result
            """#
    )

    /// Gives back some of what one consumer holds, as kombu's restore does: each tag still in unacked is RPUSHed to
    /// the head of its queue with the redelivered marks, in the order given (the latest delivery first, so that the
    /// earliest ends up next in line), and leaves the owner set.
    ///
    /// KEYS: unacked, unacked_index, owner set, parked hash. ARGV: prefix, separator, tags….
    /// Returns how many were restored (parked and unknown tags excluded).
    static let restore = RedisScript(
        name: "kombu.restore",
        source: restorePrelude + #"""
            local restored = 0
            for i = 3, #ARGV do
              if restore(ARGV[i], false, KEYS[1], KEYS[2], KEYS[4]) == 1 then restored = restored + 1 end
              redis.call('SREM', KEYS[3], ARGV[i])
            end
            return restored
            """#
    )

    /// Gives back everything one consumer holds: each tag of the owner set still in unacked is RPUSHed to the head
    /// of its queue with the redelivered marks (latest delivery first, so the earliest ends up next in line);
    /// then the owner set is deleted.
    ///
    /// KEYS: unacked, unacked_index, owner set, parked hash. ARGV: prefix, separator.
    /// Returns {restored, parked}.
    static let restoreOwned = RedisScript(
        name: "kombu.restoreOwned",
        source: restorePrelude + #"""
            local tags = redis.call('SMEMBERS', KEYS[3])
            local scores = {}
            for _, tag in ipairs(tags) do
              scores[tag] = tonumber(redis.call('ZSCORE', KEYS[2], tag)) or 0
            end
            table.sort(tags, function(a, b) return scores[a] > scores[b] end)
            local restored, parked = 0, 0
            for _, tag in ipairs(tags) do
              local result = restore(tag, false, KEYS[1], KEYS[2], KEYS[4])
              if result == 1 then restored = restored + 1 elseif result == 2 then parked = parked + 1 end
            end
            redis.call('DEL', KEYS[3])
            return {restored, parked}
            """#
    )

    /// One chunk of a visibility-timeout sweep, run while holding `unacked_mutex`: the entries delivered before
    /// `ceiling`, newest first (kombu's `ZRANGE … BYSCORE REV`), RPUSHed back with the redelivered marks.
    ///
    /// KEYS: unacked, unacked_index, unacked_mutex, parked hash. ARGV: prefix, separator, mutex token,
    /// ceiling (float seconds), chunk size. Returns {restored, parked, examined}, or {-1, 0, 0} when the mutex is no
    /// longer ours (it expired and someone else took it).
    static let restoreVisibleChunk = RedisScript(
        name: "kombu.restoreVisible",
        source: restorePrelude + #"""
            if redis.call('GET', KEYS[3]) ~= ARGV[3] then return {-1, 0, 0} end
            local tags = redis.call('ZRANGE', KEYS[2], ARGV[4], 0, 'BYSCORE', 'REV', 'LIMIT', 0, ARGV[5])
            local restored, parked = 0, 0
            for _, tag in ipairs(tags) do
              local result = restore(tag, false, KEYS[1], KEYS[2], KEYS[4])
              if result == 1 then restored = restored + 1 elseif result == 2 then parked = parked + 1 end
            end
            return {restored, parked, #tags}
            """#
    )

    /// Releases `unacked_mutex` only if it still holds our token (redis-py's `Lock.release`).
    ///
    /// KEYS: unacked_mutex. ARGV: token. Returns 1 when released.
    static let releaseMutex = RedisScript(
        name: "kombu.releaseMutex",
        source: #"""
            if redis.call('GET', KEYS[1]) == ARGV[1] then
              return redis.call('DEL', KEYS[1])
            end
            return 0
            """#
    )

    /// Moves the delivery time of held messages to now, for entries still in unacked_index (`ZADD XX`), so that no
    /// visibility sweep restores a long-running task.
    ///
    /// KEYS: unacked_index. ARGV: tags. Returns how many were still indexed.
    static let refresh = RedisScript(
        name: "kombu.refresh",
        source: #"""
            local t = redis.call('TIME')
            local now = t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
            local present = 0
            for _, tag in ipairs(ARGV) do
              if redis.call('ZSCORE', KEYS[1], tag) then
                redis.call('ZADD', KEYS[1], 'XX', now, tag)
                present = present + 1
              end
            end
            return present
            """#
    )
}
