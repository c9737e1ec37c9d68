"""Account rate limit, daily quota, per-recipient frequency limits and dedup windows, in Redis.

Each check is one atomic Lua call: the token bucket per request, and `batch_decide` for a whole
send request — it decides every entry's dedup and frequency outcome, then checks the daily quota
for the entries that will go out, and writes nothing at all when the quota refuses the batch.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass

from redis import Redis

_RATE_BUCKET_SCRIPT = """
local key = KEYS[1]
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local now_us = tonumber(ARGV[3])
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
return {allowed, wait_us}
"""

# ARGV: now_ms, quota_limit, quota_ttl_s, quota_count_extra, entries as one JSON array of
#   [dedup_key ('' = none), dedup_ttl_s, freq_key ('' = none), freq_limits ('win:max,win:max'), counts_quota (1/0), member]
# (one argument: packing thousands of separate arguments costs more than the script).
# KEYS[1]: quota counter.
# Returns {status, used, outcome per entry}: status 1 = ok, 0 = quota exceeded (nothing written);
# outcome 0 = ok, 1 = duplicate, 2 = frequency limited.
_BATCH_DECIDE = """
local now_ms = tonumber(ARGV[1])
local quota_limit = tonumber(ARGV[2])
local quota_ttl = tonumber(ARGV[3])
local extra = tonumber(ARGV[4])
local entries = cjson.decode(ARGV[5])
local outcomes = {}
local seen_dedup = {}
local pending = {}
local writes_dedup = {}
local writes_freq = {}
local to_count = extra
for i, entry in ipairs(entries) do
  local dedup_key = entry[1]
  local dedup_ttl = tonumber(entry[2])
  local freq_key = entry[3]
  local limits = entry[4]
  local counts = tonumber(entry[5])
  local member = entry[6]
  local outcome = 0
  if dedup_key ~= '' and (seen_dedup[dedup_key] or redis.call('EXISTS', dedup_key) == 1) then
    outcome = 1
  end
  if outcome == 0 and freq_key ~= '' then
    local longest = 0
    for win in string.gmatch(limits, '(%d+):%d+') do
      longest = math.max(longest, tonumber(win))
    end
    redis.call('ZREMRANGEBYSCORE', freq_key, '-inf', now_ms - longest * 1000)
    for win, max in string.gmatch(limits, '(%d+):(%d+)') do
      local since = now_ms - tonumber(win) * 1000
      local used = redis.call('ZCOUNT', freq_key, '(' .. since, '+inf')
      local mine = pending[freq_key]
      if mine then
        for _, t in ipairs(mine) do
          if t > since then used = used + 1 end
        end
      end
      if used >= tonumber(max) then outcome = 2; break end
    end
    if outcome == 0 then
      pending[freq_key] = pending[freq_key] or {}
      table.insert(pending[freq_key], now_ms)
      table.insert(writes_freq, {freq_key, member, longest})
    end
  end
  if outcome == 0 then
    if dedup_key ~= '' then
      seen_dedup[dedup_key] = true
      table.insert(writes_dedup, {dedup_key, dedup_ttl})
    end
    if counts == 1 then to_count = to_count + 1 end
  end
  outcomes[i] = outcome
end
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if to_count > 0 and used + to_count > quota_limit then
  return {0, used, outcomes}
end
for _, w in ipairs(writes_dedup) do
  redis.call('SET', w[1], '1', 'EX', w[2])
end
for _, w in ipairs(writes_freq) do
  redis.call('ZADD', w[1], now_ms, w[2])
  redis.call('PEXPIRE', w[1], w[3] * 1000 + 1000)
end
if to_count > 0 then
  used = redis.call('INCRBY', KEYS[1], to_count)
  redis.call('EXPIRE', KEYS[1], quota_ttl)
end
return {1, used, outcomes}
"""

OK, DUPLICATE, FREQUENCY_LIMITED = 0, 1, 2


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    retry_after_seconds: int


@dataclass(frozen=True)
class EntryLimits:
    """What one entry needs checked; empty keys skip a check."""

    dedup_key: str = ""
    dedup_ttl: int = 0
    frequency_key: str = ""
    frequency_limits: tuple[tuple[int, int], ...] = ()  # (window seconds, max)
    counts_quota: bool = True


@dataclass(frozen=True)
class BatchDecision:
    quota_ok: bool
    used_today: int
    outcomes: list[int]


class Limiter:
    def __init__(self, client: Redis) -> None:
        self.client = client
        self._bucket = client.register_script(_RATE_BUCKET_SCRIPT)
        self._decide = client.register_script(_BATCH_DECIDE)

    def take_request_token(self, *, account_id: object, per_second: int) -> RateDecision:
        allowed, wait_us = self._bucket(
            keys=[f"mc:rate:{account_id}"], args=[per_second, max(1, per_second), time.time_ns() // 1000]
        )
        return RateDecision(bool(allowed), max(1, -(-int(wait_us) // 1_000_000)) if not allowed else 0)

    def batch_decide(
        self, *, quota_key: str, quota_limit: int, quota_ttl: int, entries: list[EntryLimits], extra_quota: int = 0
    ) -> BatchDecision:
        """`extra_quota` counts entries that need no per-entry check but still use the quota."""
        stamp = time.time_ns()
        packed = [
            [
                entry.dedup_key,
                entry.dedup_ttl,
                entry.frequency_key,
                ",".join(f"{window}:{maximum}" for window, maximum in entry.frequency_limits),
                int(entry.counts_quota),
                f"{stamp}:{index}",
            ]
            for index, entry in enumerate(entries)
        ]
        args = [int(time.time() * 1000), quota_limit, quota_ttl, extra_quota, json.dumps(packed)]
        status, used, outcomes = self._decide(keys=[quota_key], args=args)
        return BatchDecision(bool(status), int(used), [int(o) for o in outcomes])


def dedup_key(*, account_id: object, template_id: object, address: str, content: str) -> str:
    digest = hashlib.blake2b(f"{address}\x00{content}".encode(), digest_size=16).hexdigest()
    return f"mc:dedup:{account_id}:{template_id}:{digest}"


def frequency_key(*, account_id: object, category: str, address: str) -> str:
    return f"mc:freq:{account_id}:{category}:{address}"


def parse_frequency_limits(raw: list[dict[str, int]]) -> tuple[tuple[int, int], ...]:
    """`[{"limit": 1, "window": 60}, …]` (a template's effective limits) → ((60, 1), …)."""
    return tuple(sorted((int(rule["window"]), int(rule["limit"])) for rule in raw))
