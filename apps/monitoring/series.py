"""The staff dashboard's figures over time, across accounts, read from the rollups only
(docs/architecture.md, "Rollups"): `dispatch_rollup` for messages (volume, delivery rate, receipt
latency) and `dispatch_attempt_rollup` for provider calls (submit success rate, call latency, error
codes). Never the messages: the cost depends on the range and the groups, not on the history.

Each account's rows are read by an index range scan on the primary key `(account_id, grain, bucket, …)`
(a LATERAL join per account: PostgreSQL 16 cannot skip-scan the leading column). The quality metrics
module (apps/dispatch/quality.py, #23) computes the same figures per window; once it is in, these
readings can be served by it: the views and the page only know the functions here."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import connection

from apps.dispatch.models import LATENCY_BOUNDS_MS, Grain
from apps.dispatch.providers.errors import ACCEPTED
from apps.dispatch.stats import percentile, rate

MINUTE, HOUR = dt.timedelta(minutes=1), dt.timedelta(hours=1)
# The ranges the page offers: how far back, and the grain of its points (minute rows are kept 3 days).
RANGES: dict[str, tuple[dt.timedelta, str, dt.timedelta]] = {
    "1h": (dt.timedelta(hours=1), Grain.MINUTE, MINUTE),
    "6h": (dt.timedelta(hours=6), Grain.MINUTE, MINUTE),
    "24h": (dt.timedelta(hours=24), Grain.HOUR, HOUR),
    "7d": (dt.timedelta(days=7), Grain.HOUR, HOUR),
}
DEFAULT_RANGE = "1h"


def _histogram_sum(column: str, where: str) -> str:
    """A histogram column summed bucket by bucket over the rows matching `where` (one aggregate per bucket)."""
    return ", ".join(f"coalesce(sum(r.{column}[{i}]) FILTER (WHERE {where}), 0)" for i in range(1, len(LATENCY_BOUNDS_MS) + 1))


_ACCOUNTS_ROLLUP = """
FROM accounts_account a CROSS JOIN LATERAL (
    SELECT * FROM {table}
    WHERE account_id = a.id AND grain = %(grain)s AND bucket >= %(since)s AND bucket < %(until)s
) r
"""
_SENT = "r.outcome IN ('sent', 'delivered', 'undelivered')"
# Raw SQL, not the ORM: a LATERAL join per account over the primary key, histograms summed by bucket.
VOLUME = f"""
SELECT r.bucket, r.channel, r.priority, sum(r.messages)::bigint
{_ACCOUNTS_ROLLUP.format(table="dispatch_rollup")}
GROUP BY 1, 2, 3 HAVING sum(r.messages) > 0
"""
DELIVERY = f"""
SELECT r.bucket, r.provider,
       coalesce(sum(r.messages) FILTER (WHERE {_SENT}), 0)::bigint AS sent,
       coalesce(sum(r.messages) FILTER (WHERE r.outcome = 'delivered'), 0)::bigint AS delivered,
       ARRAY[{_histogram_sum("latency_ms", "r.outcome = 'delivered'")}] AS latency
{_ACCOUNTS_ROLLUP.format(table="dispatch_rollup")}
WHERE r.provider <> ''
GROUP BY 1, 2
"""
CALLS = f"""
SELECT r.bucket, r.provider, sum(r.calls)::bigint AS calls,
       coalesce(sum(r.calls) FILTER (WHERE r.outcome = '{ACCEPTED}'), 0)::bigint AS accepted,
       ARRAY[{_histogram_sum("latency_ms", "TRUE")}] AS latency
{_ACCOUNTS_ROLLUP.format(table="dispatch_attempt_rollup")}
GROUP BY 1, 2 HAVING sum(r.calls) > 0
"""
ERRORS = f"""
SELECT r.provider, r.outcome, r.code, sum(r.calls)::bigint
{_ACCOUNTS_ROLLUP.format(table="dispatch_attempt_rollup")}
WHERE r.outcome <> '{ACCEPTED}'
GROUP BY 1, 2, 3 HAVING sum(r.calls) > 0
ORDER BY 4 DESC, 1, 2, 3 LIMIT %(limit)s
"""
_COST = "coalesce(sum(r.cost), 0)::bigint"
ACCOUNTS = f"""
SELECT a.id, sum(r.messages)::bigint,
       coalesce(sum(r.messages) FILTER (WHERE {_SENT}), 0)::bigint,
       coalesce(sum(r.messages) FILTER (WHERE r.outcome = 'delivered'), 0)::bigint,
       {_COST}
{_ACCOUNTS_ROLLUP.format(table="dispatch_rollup")}
GROUP BY 1
"""


@dataclass(frozen=True)
class Window:
    """[since, until) in rollup buckets of `grain`, `step` apart."""

    name: str
    grain: str
    step: dt.timedelta
    since: dt.datetime
    until: dt.datetime

    def params(self, **extra: Any) -> dict[str, Any]:
        return {"grain": self.grain, "since": self.since, "until": self.until, **extra}


def window_for(name: str, now: dt.datetime) -> Window:
    """The named range ending with the current bucket (included: its counts are still growing)."""
    span, grain, step = RANGES[name]
    origin = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)  # the triggers' date_bin origin
    current = now - (now - origin) % step
    return Window(name, grain, step, current + step - span, current + step)


Point = tuple[int, float]  # (epoch milliseconds of the bucket, value): what the charts take


def _ms(bucket: dt.datetime) -> int:
    return int(bucket.timestamp() * 1000)


@dataclass
class Series:
    """Named lines of points, each in time order."""

    lines: dict[str, list[Point]] = field(default_factory=dict)

    def add(self, name: str, bucket: dt.datetime, value: float | None) -> None:
        if value is not None:
            self.lines.setdefault(name, []).append((_ms(bucket), value))

    def as_json(self) -> dict[str, list[Point]]:
        return {name: sorted(points) for name, points in sorted(self.lines.items())}


def _rows(sql: str, params: dict[str, Any]) -> Sequence[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def volume(window: Window) -> dict[str, dict[str, list[Point]]]:
    """Messages by the bucket they were created in, per channel and per lane (priority)."""
    channels: dict[tuple[str, dt.datetime], int] = {}
    lanes: dict[tuple[str, dt.datetime], int] = {}
    for bucket, channel, lane, messages in _rows(VOLUME, window.params()):
        channels[channel, bucket] = channels.get((channel, bucket), 0) + messages
        lanes[lane, bucket] = lanes.get((lane, bucket), 0) + messages
    by_channel, by_lane = Series(), Series()
    for (channel, bucket), n in channels.items():
        by_channel.add(channel, bucket, n)
    for (lane, bucket), n in lanes.items():
        by_lane.add(lane, bucket, n)
    return {"by_channel": by_channel.as_json(), "by_lane": by_lane.as_json()}


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value)


def provider_quality(window: Window) -> dict[str, dict[str, list[Point]]]:
    """Per provider and bucket: submit success rate and call latency p50/p95 (calls, by when they
    were made), delivery rate and receipt latency p50/p95 (messages, by when they were created),
    with the formulas of `GET /api/v1/stats`."""
    figures = {name: Series() for name in ("success_rate", "call_p50_ms", "call_p95_ms")}
    figures |= {name: Series() for name in ("delivery_rate", "receipt_p50_ms", "receipt_p95_ms")}
    for bucket, provider, calls, accepted, latency in _rows(CALLS, window.params()):
        figures["success_rate"].add(provider, bucket, rate(accepted, calls))
        figures["call_p50_ms"].add(provider, bucket, _rounded(percentile(latency, 0.5)))
        figures["call_p95_ms"].add(provider, bucket, _rounded(percentile(latency, 0.95)))
    for bucket, provider, sent, delivered, latency in _rows(DELIVERY, window.params()):
        figures["delivery_rate"].add(provider, bucket, rate(delivered, sent))
        figures["receipt_p50_ms"].add(provider, bucket, _rounded(percentile(latency, 0.5)))
        figures["receipt_p95_ms"].add(provider, bucket, _rounded(percentile(latency, 0.95)))
    return {name: series.as_json() for name, series in figures.items()}


def top_errors(window: Window, limit: int = 10) -> list[dict[str, Any]]:
    """The failed calls of the range by provider, normalized outcome and the provider's own code, most first."""
    return [
        {"provider": provider, "outcome": outcome, "code": code, "calls": calls}
        for provider, outcome, code, calls in _rows(ERRORS, window.params(limit=limit))
    ]


@dataclass(frozen=True)
class AccountFigures:
    messages: int
    sent: int
    delivered: int
    cost: int  # micro-units of COST_CURRENCY

    @property
    def delivery_rate(self) -> float | None:
        return rate(self.delivered, self.sent)


def account_figures(window: Window) -> dict[Any, AccountFigures]:
    """Per account id: messages created in the range, how many reached a provider and were delivered."""
    return {
        account_id: AccountFigures(int(messages), int(sent), int(delivered), int(cost))
        for account_id, messages, sent, delivered, cost in _rows(ACCOUNTS, window.params())
    }
