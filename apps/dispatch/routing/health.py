"""Provider health in Redis, shared by every worker: a rolling success rate and a circuit breaker.

Each outcome lands in a per-10-second bucket; the rate over the last minute drives demotion. The
breaker opens after a burst of failures (≥ FAILURE_MIN attempts with a failure share ≥
FAILURE_RATIO in the window), stays open for OPEN_SECONDS, then lets one probe through at a time
(half-open); a successful probe closes it, a failed one re-opens it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from redis import Redis
from redis.exceptions import RedisError
from redis.typing import EncodableT

logger = logging.getLogger(__name__)

BUCKET_SECONDS = 10
WINDOW_BUCKETS = 6
FAILURE_MIN = 10
FAILURE_RATIO = 0.5
OPEN_SECONDS = 30
PROBE_LEASE_SECONDS = 10
# A provider slow past a lane's call deadline is avoided by those lanes this long; then one more
# call tells whether it still is (each miss marks it again).
SLOW_SECONDS = 10

_RECORD = """
local bucket = KEYS[1]
local breaker = KEYS[2]
local successes = tonumber(ARGV[1])
local failures = tonumber(ARGV[7])
local now = tonumber(ARGV[2])
if successes > 0 then redis.call('HINCRBY', bucket, 'ok', successes) end
if failures > 0 then redis.call('HINCRBY', bucket, 'fail', failures) end
redis.call('EXPIRE', bucket, tonumber(ARGV[3]))
local ok = failures == 0 and 1 or 0
local state = redis.call('HGET', breaker, 'state')
if state == 'half_open' or state == 'open' then
  if ok == 1 then
    redis.call('DEL', breaker)
    return 'closed'
  end
  if state == 'half_open' then
    redis.call('HSET', breaker, 'state', 'open', 'until', now + tonumber(ARGV[6]))
    return 'open'
  end
  return state
end
if ok == 1 then return 'closed' end
local total_ok, total_fail = 0, 0
for i = 8, #ARGV do
  local counts = redis.call('HMGET', ARGV[i], 'ok', 'fail')
  total_ok = total_ok + tonumber(counts[1] or '0')
  total_fail = total_fail + tonumber(counts[2] or '0')
end
local total = total_ok + total_fail
if total >= tonumber(ARGV[4]) and total_fail / total >= tonumber(ARGV[5]) then
  redis.call('HSET', breaker, 'state', 'open', 'until', now + tonumber(ARGV[6]))
  return 'open'
end
return 'closed'
"""

_ALLOW = """
local breaker = KEYS[1]
local now = tonumber(ARGV[1])
local state = redis.call('HGET', breaker, 'state')
if not state then return 1 end
if state == 'open' then
  if now < tonumber(redis.call('HGET', breaker, 'until')) then return 0 end
  redis.call('HSET', breaker, 'state', 'half_open', 'probe_until', now + tonumber(ARGV[2]))
  return 1
end
if now < tonumber(redis.call('HGET', breaker, 'probe_until') or '0') then return 0 end
redis.call('HSET', breaker, 'probe_until', now + tonumber(ARGV[2]))
return 1
"""


@dataclass(frozen=True)
class ProviderHealth:
    state: str
    attempts: int
    success_rate: float | None


class Health:
    def __init__(self, client: Redis) -> None:
        self.client = client
        self._record = client.register_script(_RECORD)
        self._allow = client.register_script(_ALLOW)

    @staticmethod
    def _bucket_keys(provider: str, now: float) -> list[str]:
        current = int(now) // BUCKET_SECONDS
        return [f"mc:health:{provider}:{current - i}" for i in range(WINDOW_BUCKETS)]

    def record(self, tally: Mapping[str, Sequence[int]]) -> None:
        """A chunk's outcomes, provider → (successes, failures), in one round trip; any failure counts
        as a failed probe for a half-open circuit."""
        now = time.time()
        try:
            with self.client.pipeline(transaction=False) as pipe:
                for provider, (successes, failures) in tally.items():
                    buckets = self._bucket_keys(provider, now)
                    args: list[EncodableT] = [
                        successes,
                        now,
                        BUCKET_SECONDS * (WINDOW_BUCKETS + 1),
                        FAILURE_MIN,
                        FAILURE_RATIO,
                        OPEN_SECONDS,
                        failures,
                        *buckets,
                    ]
                    self._record(keys=[buckets[0], f"mc:breaker:{provider}"], args=args, client=pipe)
                pipe.execute()
        except RedisError:
            logger.warning("provider health not recorded: Redis unavailable")

    def allowed(self, providers: list[str]) -> set[str]:
        """The providers whose circuit lets a message through, asked in one round trip: closed → yes;
        open → no until it cools down; half-open → one probe at a time. Redis down: all of them."""
        try:
            with self.client.pipeline(transaction=False) as pipe:
                for provider in providers:
                    self._allow(keys=[f"mc:breaker:{provider}"], args=[time.time(), PROBE_LEASE_SECONDS], client=pipe)
                answers = pipe.execute()
        except RedisError:
            return set(providers)
        return {provider for provider, answer in zip(providers, answers, strict=True) if answer}

    def snapshot(self, provider: str) -> ProviderHealth:
        now = time.time()
        with self.client.pipeline(transaction=False) as pipe:
            pipe.hget(f"mc:breaker:{provider}", "state")
            for key in self._bucket_keys(provider, now):
                pipe.hmget(key, "ok", "fail")
            state, *counts = pipe.execute()
        ok = sum(int(c[0] or 0) for c in counts)
        fail = sum(int(c[1] or 0) for c in counts)
        total = ok + fail
        return ProviderHealth((state or b"closed").decode(), total, ok / total if total else None)

    def circuits(self, providers: Sequence[str]) -> dict[str, str]:
        """Each provider's circuit: closed, open or half_open (one round trip). Raises RedisError."""
        with self.client.pipeline(transaction=False) as pipe:
            for provider in providers:
                pipe.hget(f"mc:breaker:{provider}", "state")
            states = pipe.execute()
        return {provider: (state or b"closed").decode() for provider, state in zip(providers, states, strict=True)}

    def mark_slow(self, providers: Sequence[str]) -> None:
        """Providers that let a call pass a lane's deadline: lanes with a deadline avoid them for
        SLOW_SECONDS (a slow provider is not failing, so the breaker is not told)."""
        try:
            with self.client.pipeline(transaction=False) as pipe:
                for provider in providers:
                    pipe.set(f"mc:slow:{provider}", 1, ex=SLOW_SECONDS)
                pipe.execute()
        except RedisError:
            logger.warning("slow providers not marked: Redis unavailable")

    def slow(self, providers: Sequence[str]) -> set[str]:
        """Which of the providers were marked slow within SLOW_SECONDS. Redis down: none."""
        if not providers:
            return set()
        try:
            marks = self.client.mget([f"mc:slow:{provider}" for provider in providers])
        except RedisError:
            return set()
        return {provider for provider, mark in zip(providers, marks, strict=True) if mark}

    def reset(self, provider: str) -> None:
        self.client.delete(f"mc:breaker:{provider}")
