"""Account rate limit, daily quota, per-recipient frequency limits, the platform-wide cap per
address and dedup windows, in Redis.

Each check is one atomic Lua call (`limits_script`): the token bucket per request, and
`batch_decide` for a whole send request — it decides every entry's dedup, frequency and platform-cap
outcome, then checks the daily quota for the entries that will go out, and writes nothing at all
when the quota refuses the batch.
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

from apps.dispatch.policy.limits_script import BATCH_DECIDE_SCRIPT, RATE_BUCKET_SCRIPT

OK, DUPLICATE, FREQUENCY_LIMITED = 0, 1, 2
# PLATFORM_CAPPED + k: over the k-th platform limit, longest window first (`BatchChecks.platform_limit`).
PLATFORM_CAPPED = 3
FREQUENCY_BUCKET_MS = 86_400_000  # one UTC day


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    retry_after_seconds: int


@dataclass(frozen=True)
class BatchChecks:
    """The per-entry checks of one send request (one template): dedup of the same content to the same
    address within `dedup_window` seconds (0 = off), the account's frequency limits per address and
    category (`frequency_limits`: ((window seconds, max), …), empty = off) and the platform's, across
    all accounts (`platform_limits`, alike). `addresses` and `contents` are the entries', in order."""

    account_id: str
    template_id: str
    category: str
    dedup_window: int
    frequency_limits: tuple[tuple[int, int], ...]
    addresses: list[str]
    contents: list[str]
    platform_limits: tuple[tuple[int, int], ...] = ()

    def platform_limit(self, outcome: int) -> tuple[int, int]:
        """The (window seconds, max) of the platform limit an outcome ≥ PLATFORM_CAPPED names."""
        return sorted(self.platform_limits, reverse=True)[outcome - PLATFORM_CAPPED]


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
        self._bucket = client.register_script(RATE_BUCKET_SCRIPT)
        self._decide = client.register_script(BATCH_DECIDE_SCRIPT)

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
        """Decides every entry of `checks` (dedup, then frequency, then the platform cap), then checks the daily quota for the
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


def _day_buckets(limits: tuple[tuple[int, int], ...], now: int) -> tuple[list[list[int]], range, int]:
    """The limits in ms, longest first; the UTC days their longest window overlaps, newest first; and
    when the newest day's bucket may expire (its end plus the longest window)."""
    in_ms = sorted(([window * 1000, maximum] for window, maximum in limits), reverse=True)
    longest = in_ms[0][0]
    newest, oldest = now // FREQUENCY_BUCKET_MS, (now - longest) // FREQUENCY_BUCKET_MS
    return in_ms, range(newest, oldest - 1, -1), (newest + 1) * FREQUENCY_BUCKET_MS + longest + 1000


def _decide_call(request: Decide, now: int) -> tuple[list[str], list[EncodableT]]:
    checks = request.checks
    keys = [request.quota_key, "", "", rate_key(request.rate[0]) if request.rate else ""]
    digests: list[str] = []
    addresses: list[str] = []
    dedup_ms = dedup_expire_at = freq_expire_at = cap_expire_at = freq_keys = 0
    freq_limits: list[list[int]] = []
    cap_limits: list[list[int]] = []
    if checks is not None and checks.dedup_window:
        dedup_ms = checks.dedup_window * 1000
        bucket = now // dedup_ms
        scope = f"mc:dd:{checks.account_id}:{checks.template_id}:{checks.dedup_window}"
        keys[1:3] = [f"{scope}:{bucket}", f"{scope}:{bucket - 1}"]
        dedup_expire_at = (bucket + 2) * dedup_ms + 1000
        digests = [_digest(address, content) for address, content in zip(checks.addresses, checks.contents, strict=True)]
    if checks is not None and checks.frequency_limits:
        freq_limits, days, freq_expire_at = _day_buckets(checks.frequency_limits, now)
        keys += [f"mc:fq:{checks.account_id}:{checks.category}:{day}" for day in days]
        freq_keys = len(days)
    if checks is not None and checks.platform_limits:
        cap_limits, days, cap_expire_at = _day_buckets(checks.platform_limits, now)
        keys += [platform_key(checks.category, day) for day in days]
    if checks is not None and (freq_limits or cap_limits):
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
        freq_keys,
        json.dumps(cap_limits),
        cap_expire_at,
    ]
    return keys, args


def platform_key(category: str, day: int) -> str:
    """Every account's accepted sends of a category to each address on one UTC day (day = ms epoch ⌊/ day⌋)."""
    return f"mc:cap:{category}:{day}"


def _digest(address: str, content: str) -> str:
    return hashlib.blake2b(f"{address}\x00{content}".encode(), digest_size=12).hexdigest()


def parse_frequency_limits(raw: list[dict[str, int]]) -> tuple[tuple[int, int], ...]:
    """`[{"limit": 1, "window": 60}, …]` (a template's effective limits) → ((60, 1), …)."""
    return tuple(sorted((int(rule["window"]), int(rule["limit"])) for rule in raw))
