"""The Lua scripts of `limits.Limiter`: the account's request-rate token bucket, and `BATCH_DECIDE`,
which decides a whole send request's rate token, dedup, frequency limits (the account's and the
platform's) and daily quota in one atomic call."""

from __future__ import annotations

# The account's request rate: a token bucket (burst = one second's worth), shared by the plain
# throttle script and the send requests' batch script.
_RATE_BUCKET_LUA = """
local function take_token(key, rate, now_us)
  local capacity = math.max(1, rate)
  local state = redis.call('HMGET', key, 'tokens', 'at')
  local tokens = tonumber(state[1])
  local at = tonumber(state[2])
  if tokens == nil then tokens = capacity; at = now_us end
  tokens = math.min(capacity, tokens + (now_us - at) * rate / 1e6)
  local allowed = 0
  local wait_us = 0
  if tokens >= 1 then
    tokens = tokens - 1
    allowed = 1
  else
    wait_us = math.ceil((1 - tokens) * 1e6 / rate)
  end
  redis.call('HSET', key, 'tokens', tostring(tokens), 'at', tostring(now_us))
  redis.call('PEXPIRE', key, math.ceil(capacity / rate * 1000) + 1000)
  return allowed, wait_us
end
"""
RATE_BUCKET_SCRIPT = (
    _RATE_BUCKET_LUA
    + """
local allowed, wait_us = take_token(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))
return {allowed, wait_us}
"""
)

# Dedup and frequency history live in time-bucketed hashes, so that a whole batch is a handful of Redis
# commands (HMGET/HSET of up to 1,000 fields each), not several per entry (docs/performance.md, Accept path).
#   dedup:     hash per (account, template, window W, bucket ⌊now / W⌋): field = digest of address +
#              content, value = send time (ms). A digest is a duplicate when the current or the
#              previous bucket holds it with a time within W. A bucket expires after two windows.
#   frequency: hash per (account, category, UTC day): field = address, value = the send times (ms,
#              comma-separated) of that day. A check reads every day bucket its longest window
#              overlaps; the written bucket lives until the writing template's longest window has
#              passed over its end.
#   platform:  the same day buckets per (category, UTC day), not per account: every account's
#              accepted sends to an address, for the platform-wide cap (sliding windows, like the
#              account's limits, so that a cap above an account's limit never binds before it).
# KEYS: quota counter, dedup bucket now, dedup bucket before, the account's token bucket, the
#   account's frequency buckets newest first (ARGV[12] of them), the platform buckets newest first.
# ARGV: now_ms, quota_limit, quota_ttl_s, extra (entries that count without checks), dedup window
#   (ms, 0 = off), dedup bucket expiry (ms epoch), the account's frequency limits as JSON
#   [[window_ms, max], …] longest first, frequency bucket expiry (ms epoch), entries as JSON
#   [[digest, …], [address, …]] (digests empty when dedup is off, addresses when both frequency
#   checks are), the account's request rate (per second; 0 = the request's token is not taken here),
#   now_us, the number of account frequency buckets, the platform limits as JSON (like the account's),
#   platform bucket expiry (ms epoch).
# Returns {status, used, outcomes}: status 1 = ok, 0 = quota exceeded (nothing written), 2 = the
# request rate is exceeded (nothing counted; `used` is the wait in µs); outcomes one digit per
# entry: 0 = ok, 1 = duplicate, 2 = over the account's frequency limits, 3 + k = over the platform
# limit k (0-based, longest window first). The account's limits are checked first: an entry over
# both is reported as over the account's own.
BATCH_DECIDE_SCRIPT = (
    _RATE_BUCKET_LUA
    + """
local rate = tonumber(ARGV[10])
if rate > 0 then
  local allowed, wait_us = take_token(KEYS[4], rate, tonumber(ARGV[11]))
  if allowed == 0 then return {2, wait_us, ''} end
end
local now = tonumber(ARGV[1])
local quota_limit = tonumber(ARGV[2])
local quota_ttl = tonumber(ARGV[3])
local to_count = tonumber(ARGV[4])
local dedup_window = tonumber(ARGV[5])
local dedup_expire_at = tonumber(ARGV[6])
local freq_limits = cjson.decode(ARGV[7])
local freq_expire_at = tonumber(ARGV[8])
local entries = cjson.decode(ARGV[9])
local digests, addresses = entries[1], entries[2]
local n = math.max(#digests, #addresses)
local cap_first = 5 + tonumber(ARGV[12])
local cap_limits = cjson.decode(ARGV[13])
local cap_expire_at = tonumber(ARGV[14])

local function hmget(key, fields)
  local out = {}
  for first = 1, #fields, 500 do
    local last = math.min(first + 499, #fields)
    local part = redis.call('HMGET', key, unpack(fields, first, last))
    for k = 1, #part do out[first + k - 1] = part[k] end
  end
  return out
end

local function hset(key, pairs_list)
  for first = 1, #pairs_list, 1000 do
    local last = math.min(first + 999, #pairs_list)
    redis.call('HSET', key, unpack(pairs_list, first, last))
  end
end

local duplicate = {}
if #digests > 0 then
  local since = now - dedup_window
  local current, previous = hmget(KEYS[2], digests), hmget(KEYS[3], digests)
  for i = 1, n do
    local a, b = tonumber(current[i]), tonumber(previous[i])
    if (a and a > since) or (b and b > since) then duplicate[i] = true end
  end
end

-- Each distinct address's history in the day buckets KEYS[first..last] (newest first) is read and
-- counted once per limit (not once per entry: 1,000 entries to one address with thousands of sends
-- today would be quadratic). Returns the counts per address and the newest bucket's values.
local function history(first, last, limits, fields)
  local used, newest = {}, {}
  for k = first, last do
    local values = hmget(KEYS[k], fields)
    for j = 1, #fields do
      local v = values[j]
      if v then
        local address = fields[j]
        if k == first then newest[address] = v end
        local counts = used[address]
        if not counts then
          counts = {}
          for l = 1, #limits do counts[l] = 0 end
          used[address] = counts
        end
        for t in string.gmatch(v, '%d+') do
          local at = tonumber(t)
          for l = 1, #limits do
            if at > now - limits[l][1] then counts[l] = counts[l] + 1 end
          end
        end
      end
    end
  end
  return used, newest
end

local used_before, written, capped_before, cap_written = {}, {}, {}, {}
if #addresses > 0 then
  local fields, known = {}, {}
  for i = 1, n do
    local address = addresses[i]
    if not known[address] then known[address] = true; fields[#fields + 1] = address end
  end
  used_before, written = history(5, cap_first - 1, freq_limits, fields)
  capped_before, cap_written = history(cap_first, #KEYS, cap_limits, fields)
end

-- The first limit (longest window first) that `mine` more sends would break, or nil.
local function over(limits, counts, mine)
  for l, limit in ipairs(limits) do
    if mine + (counts and counts[l] or 0) >= limit[2] then return l end
  end
  return nil
end

local outcomes, seen, pending, accepted_digests = {}, {}, {}, {}
for i = 1, n do
  local outcome = 0
  local digest = digests[i]
  if digest and (duplicate[i] or seen[digest]) then outcome = 1 end
  if outcome == 0 and #addresses > 0 then
    local address = addresses[i]
    local mine = pending[address] or 0
    if over(freq_limits, used_before[address], mine) then
      outcome = 2
    else
      local capped = over(cap_limits, capped_before[address], mine)
      if capped then outcome = 2 + capped else pending[address] = mine + 1 end
    end
  end
  if outcome == 0 then
    if digest then
      seen[digest] = true
      accepted_digests[#accepted_digests + 1] = digest
      accepted_digests[#accepted_digests + 1] = now
    end
    to_count = to_count + 1
  end
  outcomes[i] = outcome
end
local result = table.concat(outcomes)

local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if to_count > 0 and used + to_count > quota_limit then
  return {0, used, result}
end
if #accepted_digests > 0 then
  hset(KEYS[2], accepted_digests)
  redis.call('PEXPIREAT', KEYS[2], dedup_expire_at)
end

-- Today's times are all kept (a day at most): another template of the category may have a longer
-- window than this one.
local function append_sends(key, before_by_address, expire_at)
  local writes = {}
  for address, count in pairs(pending) do
    local times = {}
    for _ = 1, count do times[#times + 1] = now end
    local before = before_by_address[address]
    writes[#writes + 1] = address
    writes[#writes + 1] = (before and (before .. ',') or '') .. table.concat(times, ',')
  end
  hset(key, writes)
  local ttl = redis.call('PTTL', key)
  if ttl < 0 or now + ttl < expire_at then redis.call('PEXPIREAT', key, expire_at) end
end
if next(pending) then
  if cap_first > 5 then append_sends(KEYS[5], written, freq_expire_at) end
  if #KEYS >= cap_first then append_sends(KEYS[cap_first], cap_written, cap_expire_at) end
end
if to_count > 0 then
  used = redis.call('INCRBY', KEYS[1], to_count)
  redis.call('EXPIRE', KEYS[1], quota_ttl)
end
return {1, used, result}
"""
)
