"""Account rate limit, daily quota, per-recipient frequency limits and dedup windows, in Redis.

Each check is one atomic Lua call: the token bucket per request, and `batch_decide` for a whole
send request — it decides every entry's dedup and frequency outcome, then checks the daily quota
for the entries that will go out, and writes nothing at all when the quota refuses the batch.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.exceptions import NoScriptError
from redis.typing import EncodableT

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
_RATE_BUCKET_SCRIPT = (
    _RATE_BUCKET_LUA
    + """
local allowed, wait_us = take_token(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))
return {allowed, wait_us}
"""
)

# Dedup and frequency history live in time-bucketed hashes, so that a whole batch is a handful of
# Redis commands (HMGET/HSET of up to 1,000 fields each) instead of several commands per entry: the
# per-command overhead of redis.call, not the commands' work, was 3/4 of the script's time.
#   dedup:     hash per (account, template, window W, bucket ⌊now / W⌋): field = digest of address +
#              content, value = send time (ms). A digest is a duplicate when the current or the
#              previous bucket holds it with a time within W. A bucket expires after two windows.
#   frequency: hash per (account, category, UTC day): field = address, value = the send times (ms,
#              comma-separated) of that day. A check reads every day bucket its longest window
#              overlaps; the written bucket lives until the writing template's longest window has
#              passed over its end.
# KEYS: quota counter, dedup bucket now, dedup bucket before, the account's token bucket, frequency
#   buckets newest first.
# ARGV: now_ms, quota_limit, quota_ttl_s, extra (entries that count without checks), dedup window
#   (ms, 0 = off), dedup bucket expiry (ms epoch), frequency limits as JSON [[window_ms, max], …]
#   longest first, frequency bucket expiry (ms epoch), entries as JSON [[digest, …], [address, …]]
#   (either list empty when its check is off), the account's request rate (per second; 0 = the
#   request's token is not taken here), now_us.
# Returns {status, used, outcomes}: status 1 = ok, 0 = quota exceeded (nothing written), 2 = the
# request rate is exceeded (nothing counted; `used` is the wait in µs); outcomes one digit per
# entry: 0 = ok, 1 = duplicate, 2 = frequency limited.
_BATCH_DECIDE = (
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

-- Each distinct address's history is read and counted once per limit (not once per entry: 1,000
-- entries to one address with thousands of sends today would be quadratic).
local used_before, written = {}, {}
if #addresses > 0 then
  local fields, known = {}, {}
  for i = 1, n do
    local address = addresses[i]
    if not known[address] then known[address] = true; fields[#fields + 1] = address end
  end
  for k = 5, #KEYS do
    local values = hmget(KEYS[k], fields)
    for j = 1, #fields do
      local v = values[j]
      if v then
        local address = fields[j]
        if k == 5 then written[address] = v end
        local counts = used_before[address]
        if not counts then
          counts = {}
          for l = 1, #freq_limits do counts[l] = 0 end
          used_before[address] = counts
        end
        for t in string.gmatch(v, '%d+') do
          local at = tonumber(t)
          for l = 1, #freq_limits do
            if at > now - freq_limits[l][1] then counts[l] = counts[l] + 1 end
          end
        end
      end
    end
  end
end

local outcomes, seen, pending, accepted_digests = {}, {}, {}, {}
for i = 1, n do
  local outcome = 0
  local digest = digests[i]
  if digest and (duplicate[i] or seen[digest]) then outcome = 1 end
  if outcome == 0 and #addresses > 0 then
    local address = addresses[i]
    local mine = pending[address] or 0
    local counts = used_before[address]
    for l, limit in ipairs(freq_limits) do
      if mine + (counts and counts[l] or 0) >= limit[2] then outcome = 2; break end
    end
    if outcome == 0 then pending[address] = mine + 1 end
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
if next(pending) then
  -- Today's times are all kept (a day at most): another template of the category may have a longer
  -- window than this one.
  local writes = {}
  for address, count in pairs(pending) do
    local times = {}
    for _ = 1, count do times[#times + 1] = now end
    local before = written[address]
    writes[#writes + 1] = address
    writes[#writes + 1] = (before and (before .. ',') or '') .. table.concat(times, ',')
  end
  hset(KEYS[5], writes)
  local ttl = redis.call('PTTL', KEYS[5])
  if ttl < 0 or now + ttl < freq_expire_at then redis.call('PEXPIREAT', KEYS[5], freq_expire_at) end
end
if to_count > 0 then
  used = redis.call('INCRBY', KEYS[1], to_count)
  redis.call('EXPIRE', KEYS[1], quota_ttl)
end
return {1, used, result}
"""
)

OK, DUPLICATE, FREQUENCY_LIMITED = 0, 1, 2
FREQUENCY_BUCKET_MS = 86_400_000  # one UTC day


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    retry_after_seconds: int


@dataclass(frozen=True)
class BatchChecks:
    """The per-entry checks of one send request (one template): dedup of the same content to the same
    address within `dedup_window` seconds (0 = off) and frequency limits per address and category
    (`frequency_limits`: ((window seconds, max), …), empty = off). `addresses` and `contents` are
    the entries', in order."""

    account_id: str
    template_id: str
    category: str
    dedup_window: int
    frequency_limits: tuple[tuple[int, int], ...]
    addresses: list[str]
    contents: list[str]


@dataclass(frozen=True)
class BatchDecision:
    quota_ok: bool
    used_today: int
    outcomes: list[int]
    throttled_seconds: int = 0  # > 0: the request rate refused the request (nothing counted); retry after


def rate_key(account_id: object) -> str:
    return f"mc:rate:{account_id}"


def _retry_after(wait_us: int) -> int:
    return max(1, -(-int(wait_us) // 1_000_000))


class Limiter:
    def __init__(self, client: Redis) -> None:
        self.client = client
        self._bucket = client.register_script(_RATE_BUCKET_SCRIPT)
        self._decide = client.register_script(_BATCH_DECIDE)

    def take_request_token(self, *, account_id: object, per_second: int) -> RateDecision:
        allowed, wait_us = self._bucket(keys=[rate_key(account_id)], args=[per_second, time.time_ns() // 1000])
        return RateDecision(bool(allowed), _retry_after(wait_us) if not allowed else 0)

    def batch_decide(
        self,
        *,
        quota_key: str,
        quota_limit: int,
        quota_ttl: int,
        checks: BatchChecks | None,
        extra_quota: int = 0,
        now_ms: int | None = None,
    ) -> BatchDecision:
        """Decides every entry of `checks` (dedup, then frequency), then checks the daily quota for the
        entries that will go out plus `extra_quota` entries that need no check; when the quota refuses,
        nothing at all is written. One atomic script call."""
        decision = self.decide_many([Decide(quota_key, quota_limit, quota_ttl, checks, extra_quota)], now_ms=now_ms)[0]
        if isinstance(decision, Exception):
            raise decision
        return decision

    def decide_many(self, requests: Sequence[Decide], *, now_ms: int | None = None) -> list[BatchDecision | Exception]:
        """`batch_decide` for several send requests in one round trip: one script call each (each
        atomic on its own), pipelined. A script error is that request's result; a connection error
        raises."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        calls = [_decide_call(request, now) for request in requests]
        replies = self._evalsha_all(calls)
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:  # Redis restarted or flushed its scripts: load, and run only the calls that did not run
            self._decide.sha = self.client.script_load(self._decide.script)
            for i, reply in zip(missing, self._evalsha_all([calls[i] for i in missing]), strict=True):
                replies[i] = reply
        return [
            reply
            if isinstance(reply, Exception)
            else BatchDecision(True, 0, [], throttled_seconds=_retry_after(reply[1]))
            if reply[0] == 2
            else BatchDecision(bool(reply[0]), int(reply[1]), [int(o) for o in reply[2].decode()] if reply[2] else [])
            for reply in replies
        ]

    def _evalsha_all(self, calls: list[tuple[list[str], list[EncodableT]]]) -> list[Any]:
        with self.client.pipeline(transaction=False) as pipe:
            for keys, args in calls:
                pipe.evalsha(self._decide.sha, len(keys), *keys, *args)
            return pipe.execute(raise_on_error=False)


@dataclass(frozen=True)
class Decide:
    """One send request's limits call (see `Limiter.batch_decide`)."""

    quota_key: str
    quota_limit: int
    quota_ttl: int
    checks: BatchChecks | None
    extra_quota: int = 0
    # The request's token of the account's request rate, taken first (account id, per second).
    rate: tuple[object, int] | None = None


def _decide_call(request: Decide, now: int) -> tuple[list[str], list[EncodableT]]:
    checks = request.checks
    keys = [request.quota_key, "", "", rate_key(request.rate[0]) if request.rate else ""]
    digests: list[str] = []
    addresses: list[str] = []
    dedup_ms = dedup_expire_at = freq_expire_at = 0
    freq_limits: list[list[int]] = []
    if checks is not None and checks.dedup_window:
        dedup_ms = checks.dedup_window * 1000
        bucket = now // dedup_ms
        scope = f"mc:dd:{checks.account_id}:{checks.template_id}:{checks.dedup_window}"
        keys[1:3] = [f"{scope}:{bucket}", f"{scope}:{bucket - 1}"]
        dedup_expire_at = (bucket + 2) * dedup_ms + 1000
        digests = [_digest(address, content) for address, content in zip(checks.addresses, checks.contents, strict=True)]
    if checks is not None and checks.frequency_limits:
        freq_limits = sorted(([window * 1000, maximum] for window, maximum in checks.frequency_limits), reverse=True)
        longest = freq_limits[0][0]
        newest, oldest = now // FREQUENCY_BUCKET_MS, (now - longest) // FREQUENCY_BUCKET_MS
        keys += [f"mc:fq:{checks.account_id}:{checks.category}:{day}" for day in range(newest, oldest - 1, -1)]
        freq_expire_at = (newest + 1) * FREQUENCY_BUCKET_MS + longest + 1000
        addresses = checks.addresses
    args: list[EncodableT] = [
        now,
        request.quota_limit,
        request.quota_ttl,
        request.extra_quota,
        dedup_ms,
        dedup_expire_at,
        json.dumps(freq_limits),
        freq_expire_at,
        json.dumps([digests, addresses]),
        request.rate[1] if request.rate else 0,
        time.time_ns() // 1000,
    ]
    return keys, args


def _digest(address: str, content: str) -> str:
    return hashlib.blake2b(f"{address}\x00{content}".encode(), digest_size=12).hexdigest()


def parse_frequency_limits(raw: list[dict[str, int]]) -> tuple[tuple[int, int], ...]:
    """`[{"limit": 1, "window": 60}, …]` (a template's effective limits) → ((60, 1), …)."""
    return tuple(sorted((int(rule["window"]), int(rule["limit"])) for rule in raw))
