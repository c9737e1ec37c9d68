"""The ten provider-quality metrics (#23), read from the rollups only: formulas in docs/quality.md.

Over a window ending now (5 minutes, an hour, a day), per provider, destination segment, template or
account, across accounts or for one. Calls are counted by when they were made (dispatch_attempt_rollup);
messages by when they were made (dispatch_rollup), with their outcome now — so the receipts of the
window's last minutes may still be on their way. Rows of the two rollups are read by the time index of
each (migration 0016), never the messages."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.utils import timezone
from redis.exceptions import RedisError

from apps.dispatch.delivery.finishing import FAILOVER_FROM
from apps.dispatch.models import MICRO
from apps.dispatch.providers.errors import ACCEPTED
from apps.dispatch.stats import GRAINS, percentile, rate, rollup_spans
from messaging_center import availability

WINDOWS = {"5m": dt.timedelta(minutes=5), "1h": dt.timedelta(hours=1), "1d": dt.timedelta(days=1)}
# What a row is grouped by, in each rollup (the same column names in both).
BY = {"provider": "r.provider", "segment": "r.segment", "template": "r.template_code", "account": "r.account_id::text"}

_HISTOGRAM = ", ".join(f"sum(r.latency_ms[{i}])" for i in range(1, 33))
# Raw SQL, not the ORM: ranges from unnest joined to the rollups, histograms summed bucket by bucket.
_CALLS = f"""
SELECT {{key}} AS key, sum(r.calls), coalesce(sum(r.calls) FILTER (WHERE r.outcome = '{ACCEPTED}'), 0),
       ARRAY[{_HISTOGRAM}]
FROM unnest(%(grains)s::text[], %(starts)s::timestamptz[], %(ends)s::timestamptz[]) AS q(grain, lo, hi)
JOIN dispatch_attempt_rollup r ON r.grain = q.grain AND r.bucket >= q.lo AND r.bucket < q.hi
WHERE %(account)s::uuid IS NULL OR r.account_id = %(account)s
GROUP BY 1
"""  # noqa: S608 - our own constants
# Failovers away from a provider: accepted calls elsewhere whose message's previous attempt was its.
_FAILOVERS = f"""
SELECT CASE WHEN %(by)s = 'provider' THEN substr(r.code, {len(FAILOVER_FROM) + 1}) ELSE {{key}} END AS key, sum(r.calls)
FROM unnest(%(grains)s::text[], %(starts)s::timestamptz[], %(ends)s::timestamptz[]) AS q(grain, lo, hi)
JOIN dispatch_attempt_rollup r ON r.grain = q.grain AND r.bucket >= q.lo AND r.bucket < q.hi
WHERE (%(account)s::uuid IS NULL OR r.account_id = %(account)s) AND r.outcome = '{ACCEPTED}'
  AND r.code LIKE '{FAILOVER_FROM}%%'
GROUP BY 1
"""  # noqa: S608 - our own constants
_MESSAGES = f"""
SELECT {{key}} AS key, sum(r.messages),
       coalesce(sum(r.messages) FILTER (WHERE r.outcome IN ('sent', 'delivered', 'undelivered')), 0),
       coalesce(sum(r.messages) FILTER (WHERE r.outcome = 'delivered'), 0),
       coalesce(sum(r.messages) FILTER (WHERE r.outcome = 'undelivered'), 0),
       coalesce(sum(r.messages) FILTER (WHERE r.outcome = 'expired'), 0),
       sum(r.codes), sum(r.filled), ARRAY[{_HISTOGRAM}], sum(r.cost)
FROM unnest(%(grains)s::text[], %(starts)s::timestamptz[], %(ends)s::timestamptz[]) AS q(grain, lo, hi)
JOIN dispatch_rollup r ON r.grain = q.grain AND r.bucket >= q.lo AND r.bucket < q.hi
WHERE %(account)s::uuid IS NULL OR r.account_id = %(account)s
GROUP BY 1
"""  # noqa: S608 - our own constants


@dataclass(frozen=True)
class Quality:
    """One group's metrics over the window; a rate is None without its denominator."""

    key: str
    calls: int
    submit_success_rate: float | None  # 1
    submit_latency_p50_ms: float | None  # 2
    submit_latency_p95_ms: float | None
    sent: int
    receipt_rate: float | None  # 3
    delivery_rate: float | None  # 4
    receipt_latency_p50_ms: float | None  # 5
    receipt_latency_p95_ms: float | None
    codes: int
    fill_rate: float | None  # 6
    failovers: int
    failover_rate: float | None  # 7
    messages: int
    expiry_rate: float | None  # 8
    cost: float  # in COST_CURRENCY
    cost_per_delivered: float | None  # 10


def _window(window: str, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    end = now.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)  # the minute under way counts
    return end - WINDOWS[window], end


def quality_get(*, by: str, window: str, account: uuid.UUID | None = None, now: dt.datetime | None = None) -> list[Quality]:
    """Metrics 1-8 and 10 per group (9, API availability, is the platform's: `api_availability`)."""
    if by not in BY or window not in WINDOWS:
        raise ValueError(f"by one of {sorted(BY)}, window one of {sorted(WINDOWS)}")
    start, end = _window(window, now or timezone.now())
    spans = rollup_spans(start, end, GRAINS)
    params: dict[str, Any] = {
        "by": by,
        "account": account,
        "grains": [grain for grain, _, _ in spans],
        "starts": [lo for _, lo, _ in spans],
        "ends": [hi for _, _, hi in spans],
    }
    with connection.cursor() as cursor:
        cursor.execute(_CALLS.format(key=BY[by]), params)
        calls = {row[0]: row for row in cursor.fetchall()}
        cursor.execute(_FAILOVERS.format(key=BY[by]), params)
        failovers = {key: int(n) for key, n in cursor.fetchall()}
        cursor.execute(_MESSAGES.format(key=BY[by]), params)
        messages = {row[0]: row for row in cursor.fetchall()}
    return [_quality(key, calls.get(key), messages.get(key), failovers.get(key, 0)) for key in sorted({*calls, *messages})]


def _quality(key: str, calls: tuple[Any, ...] | None, messages: tuple[Any, ...] | None, failovers: int) -> Quality:
    made, accepted, submit = (int(calls[1]), int(calls[2]), calls[3]) if calls else (0, 0, None)
    total, sent, delivered, undelivered, expired, codes, filled, receipt, cost = (
        (*map(int, messages[1:8]), messages[8], int(messages[9])) if messages else (0, 0, 0, 0, 0, 0, 0, None, 0)
    )
    return Quality(
        key=key,
        calls=made,
        submit_success_rate=rate(accepted, made),
        submit_latency_p50_ms=percentile(submit, 0.5),
        submit_latency_p95_ms=percentile(submit, 0.95),
        sent=sent,
        receipt_rate=rate(delivered + undelivered, sent),
        delivery_rate=rate(delivered, sent),
        receipt_latency_p50_ms=percentile(receipt, 0.5),
        receipt_latency_p95_ms=percentile(receipt, 0.95),
        codes=codes,
        fill_rate=rate(filled, codes),
        failovers=failovers,
        failover_rate=rate(failovers, made),
        messages=total,
        expiry_rate=rate(expired, total),
        cost=cost / MICRO,
        cost_per_delivered=round(cost / MICRO / delivered, 6) if delivered else None,
    )


def api_availability(*, window: str, now: dt.datetime | None = None) -> float | None:
    """Metric 9: API answers other than 5xx / API requests over the window, every web process's (None
    without requests, or when Redis cannot tell)."""
    start, end = _window(window, now or timezone.now())
    try:
        total, failed = availability.answers(since=start.timestamp(), until=end.timestamp() - 1)
    except RedisError:
        return None
    return rate(total - failed, total)
