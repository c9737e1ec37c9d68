"""Delivery quality per provider and destination segment, from the rollups, and the demotion state
routing reads (docs/quality.md, "Routing on delivery data").

A beat job (`quality_update`, every 15 s on mc.maintenance) reads the rollups' minute rows of the
last ROUTING_QUALITY_LOOKBACK_MINUTES of every account (one index range scan, `rollup_time`)
and judges each provider times segment on three figures, each over the newest minutes that together hold
at least ROUTING_QUALITY_MIN_MESSAGES messages (the current minute included: a receipt is evidence the moment it lands,
and at steady traffic the newest minute alone is enough, so that a fault shows within seconds of its
receipts rather than after a window of good minutes):

- delivery rate = delivered / (delivered + undelivered), among the messages with a receipt;
- silence = sent with no receipt / sent, among the minutes that ended ROUTING_SILENCE_AFTER_SECONDS
  ago or earlier (rollup buckets are by creation minute: a younger minute's receipts may be on their
  way), only for providers whose API reports delivery;
- slow share = delivered later than SLOW_RECEIPT_MS after sending / delivered.

A provider is demoted for a segment when its delivery rate falls below DEMOTE_BELOW, its silence
reaches SILENCE_DEMOTE or its slow share SLOW_DEMOTE; it comes back only when the delivery rate is at
RECOVER_AT or above again and its silence and slow share (where measured) are under SILENCE_RECOVER and
SLOW_RECOVER — between the two thresholds it stays as it was (hysteresis). Without a receipt it cannot
recover (a provider demoted for silence stays so until receipts come again); a pair with no messages
in the lookback is forgotten.

The state lives in Redis: `DEMOTED` (provider|segment → why, read by routing once per chunk) and
`FIGURES` (every pair judged → its state and figures, for the metrics and admin), both replaced by
each run and expiring after STATE_TTL_SECONDS, so that a stopped job leaves no provider demoted."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace

from django.conf import settings
from django.db import connection
from django.utils import timezone
from redis.exceptions import RedisError
from redis.typing import EncodableT

from apps.dispatch.models import LATENCY_BOUNDS_MS, Provider
from apps.dispatch.providers import ADAPTERS, adapter_class
from messaging_center.broker import redis_client

logger = logging.getLogger(__name__)

DEMOTED = "mc:routing:demoted"
FIGURES = "mc:routing:quality"
STATE_TTL_SECONDS = 600
DEMOTE_BELOW, RECOVER_AT = 0.80, 0.90
SILENCE_DEMOTE, SILENCE_RECOVER = 0.50, 0.20
SLOW_RECEIPT_MS = 300_000  # a bound of LATENCY_BOUNDS_MS
SLOW_DEMOTE, SLOW_RECOVER = 0.30, 0.10
_SLOW_FROM = LATENCY_BOUNDS_MS.index(SLOW_RECEIPT_MS) + 1  # 1-based, as SQL arrays

# Raw SQL, not the ORM: the latency histogram's slow tail summed by array slice. Every account's minute
# rows of the lookback through the partial index on bucket; settled outcomes only (pending is provider '').
RECENT_MINUTES = f"""
SELECT r.provider, r.segment, r.bucket,
       coalesce(sum(r.messages) FILTER (WHERE r.outcome = 'delivered'), 0) AS delivered,
       coalesce(sum(r.messages) FILTER (WHERE r.outcome = 'undelivered'), 0) AS undelivered,
       coalesce(sum(r.messages) FILTER (WHERE r.outcome = 'sent'), 0) AS awaiting,
       coalesce(sum((SELECT sum(n) FROM unnest(r.latency_ms[{_SLOW_FROM}:]) AS n)) FILTER (WHERE r.outcome = 'delivered'), 0)
           AS slow
FROM dispatch_rollup r
WHERE r.grain = 'minute' AND r.bucket >= %(since)s AND r.outcome IN ('sent', 'delivered', 'undelivered')
GROUP BY r.provider, r.segment, r.bucket
"""  # noqa: S608 - our own constants


@dataclass(frozen=True)
class Minute:
    bucket: dt.datetime
    delivered: int
    undelivered: int
    awaiting: int
    slow: int


@dataclass(frozen=True)
class Judgement:
    state: str  # ok | demoted
    reason: str
    delivery_rate: float | None
    silence: float | None
    slow_share: float | None
    messages: int
    since: float = 0.0  # when it entered this state (epoch seconds)


def _decided(minute: Minute) -> int:
    return minute.delivered + minute.undelivered


def _sent(minute: Minute) -> int:
    return minute.delivered + minute.undelivered + minute.awaiting


def _newest(minutes: Iterable[Minute], size: Callable[[Minute], int]) -> list[Minute]:
    """The newest minutes that together hold ROUTING_QUALITY_MIN_MESSAGES (by `size`), or all of them."""
    taken, total = [], 0
    for minute in sorted(minutes, key=lambda m: m.bucket, reverse=True):
        taken.append(minute)
        total += size(minute)
        if total >= settings.ROUTING_QUALITY_MIN_MESSAGES:
            break
    return taken


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole >= settings.ROUTING_QUALITY_MIN_MESSAGES else None


def judge(minutes: Sequence[Minute], *, previous: str, reports_delivery: bool, now: dt.datetime) -> Judgement:
    """One provider times segment: its figures and state, given its state before (`previous`)."""
    decided = _newest(minutes, _decided)
    delivered = sum(m.delivered for m in decided)
    rate = _share(delivered, sum(_decided(m) for m in decided))
    slow_share = _share(sum(m.slow for m in decided), delivered) if delivered else None
    silence = None
    if reports_delivery:
        settled_before = now - dt.timedelta(seconds=settings.ROUTING_SILENCE_AFTER_SECONDS, minutes=1)
        judged = _newest([m for m in minutes if m.bucket <= settled_before], _sent)
        silence = _share(sum(m.awaiting for m in judged), sum(_sent(m) for m in judged))
    messages = sum(_sent(m) for m in minutes)
    faults = [
        text
        for fault, text in (
            (rate is not None and rate < DEMOTE_BELOW, f"delivery rate {rate or 0:.0%} < {DEMOTE_BELOW:.0%}"),
            (silence is not None and silence >= SILENCE_DEMOTE, f"no receipt for {silence or 0:.0%} of sent"),
            (slow_share is not None and slow_share >= SLOW_DEMOTE, f"{slow_share or 0:.0%} delivered after 5 min"),
        )
        if fault
    ]
    if previous == "demoted":
        recovered = (
            rate is not None
            and rate >= RECOVER_AT
            and (silence is None or silence < SILENCE_RECOVER)
            and (slow_share is None or slow_share < SLOW_RECOVER)
        )
        state = "ok" if recovered else "demoted"
    else:
        state = "demoted" if faults else "ok"
    reason = "; ".join(faults) if faults else ("recovering" if state == "demoted" else "")
    return Judgement(state, reason, rate, silence, slow_share, messages)


def quality_update(*, now: dt.datetime | None = None) -> dict[str, int]:
    """The beat job: judges every provider times segment with messages in the lookback and replaces the
    state in Redis. Returns how many pairs are ok and demoted."""
    now = now or timezone.now()
    since = now - dt.timedelta(minutes=settings.ROUTING_QUALITY_LOOKBACK_MINUTES)
    with connection.cursor() as cursor:
        cursor.execute(RECENT_MINUTES, {"since": since})
        rows = cursor.fetchall()
    pairs: dict[tuple[str, str], list[Minute]] = {}
    for provider, segment, bucket, *counts in rows:
        pairs.setdefault((provider, segment), []).append(Minute(bucket, *map(int, counts)))
    kinds = dict(Provider.objects.values_list("name", "kind"))
    started = time.time()
    client = redis_client()
    try:
        before = {_text(k): json.loads(v) for k, v in client.hgetall(FIGURES).items()}
    except RedisError:
        logger.warning("routing quality not judged: Redis unavailable")
        return {}
    judged: dict[str, Judgement] = {}
    for (provider, segment), minutes in pairs.items():
        field = f"{provider}|{segment}"
        previous = before.get(field, {})
        kind = kinds.get(provider, "")
        state = previous.get("state", "ok")
        verdict = judge(
            minutes, previous=state, reports_delivery=kind in ADAPTERS and adapter_class(kind).reports_delivery, now=now
        )
        if verdict.state != state:
            logger.warning("provider %s %s for segment %s: %s", provider, verdict.state, segment, verdict.reason or "recovered")
        judged[field] = replace(verdict, since=previous.get("since", started) if verdict.state == state else started)
    _store(judged)
    demoted = sum(1 for v in judged.values() if v.state == "demoted")
    return {"ok": len(judged) - demoted, "demoted": demoted}


def _store(judged: Mapping[str, Judgement]) -> None:
    try:
        with redis_client().pipeline(transaction=True) as pipe:
            pipe.delete(DEMOTED, FIGURES)
            if judged:
                stored: dict[EncodableT, EncodableT] = {k: json.dumps(asdict(v)) for k, v in judged.items()}
                pipe.hset(FIGURES, mapping=stored)
                pipe.expire(FIGURES, STATE_TTL_SECONDS)
            demoted: dict[EncodableT, EncodableT] = {k: v.reason for k, v in judged.items() if v.state == "demoted"}
            if demoted:
                pipe.hset(DEMOTED, mapping=demoted)
                pipe.expire(DEMOTED, STATE_TTL_SECONDS)
            pipe.execute()
    except RedisError:
        logger.warning("routing quality not stored: Redis unavailable")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def demoted() -> set[tuple[str, str]]:
    """(provider, segment) pairs demoted now: one HKEYS, once per chunk. Redis down: none."""
    try:
        fields = redis_client().hkeys(DEMOTED)
    except RedisError:
        return set()
    pairs = set()
    for field in fields:
        provider, _, segment = _text(field).partition("|")
        pairs.add((provider, segment))
    return pairs


def figures() -> dict[tuple[str, str], Judgement]:
    """Every pair the last run judged, with its figures (metrics, admin). Redis down: none."""
    try:
        stored = redis_client().hgetall(FIGURES)
    except RedisError:
        return {}
    judged = {}
    for field, value in stored.items():
        provider, _, segment = _text(field).partition("|")
        judged[(provider, segment)] = Judgement(**json.loads(value))
    return judged
