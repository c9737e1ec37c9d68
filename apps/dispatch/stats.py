"""`GET /api/v1/stats`: delivery figures of the account's own messages, read from the rollups only.

`dispatch_rollup` (models.Rollup) counts messages by the minute, hour, day and calendar month (UTC)
they were created in, kept by triggers as they change state (docs/architecture.md, "Rollups"). A
range is read as whole months, with days, hours and then minutes at its edges — at most seven index
range scans, each over the groups of that grain and time (`rollup_spans`) — so the cost depends on the
number of groups and (little) on the time range, never on the number of messages. By day, the days'
`totals` rows (a day's messages by outcome alone) stand for the months. `created_after`/`created_before`
count to the minute: seconds are dropped (a message created at 12:00:30 is in `created_after=12:00:45`).
Minute rows are kept models.MINUTE_ROWS_KEPT and hour rows models.HOUR_ROWS_KEPT
(apps/dispatch/retention.py prunes older ones), so an edge older than that counts from the start of its
hour, or of its day (`stats_range`).

attempts = provider calls made in the range (dispatch_attempt_rollup, by when they were made: a
message failed over counts one call per provider), `errors` = the failed ones by normalized reason
(providers.errors.REASONS), most first; success = calls the provider accepted / calls made with it
(null where none: a group may have calls and no messages, e.g. a provider whose every call failed
while failover delivered through another); receipt = messages with a receipt / sent; delivery =
delivered / sent; latency = provider accepted → delivered, its percentiles read from the histogram
(models.LATENCY_BOUNDS_MS, interpolated linearly inside the bucket that holds the rank: within one
bucket of the exact value, i.e. within a factor 1.5 above 100 ms and 3 above 10 minutes; beyond the last
edge, 1 h, the edge); duplicates = messages of the group a provider delivered too after
another one had them (an attempt whose outcome was unknown reached the person: dispatch_attempt_rollup,
under the provider that delivered it too, by when that was learnt); fill = verification codes checked
valid / codes sent (null where no codes
were sent); cost = what the providers charged for the group's messages (each message's price times SMS
segments, set when it was sent), in COST_CURRENCY. A message still pending counts in `total` under
provider "" until an attempt settles."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

from apps.accounts.models import Account
from apps.dispatch.models import HOUR_ROWS_KEPT, LATENCY_BOUNDS_MS, MICRO, MINUTE_ROWS_KEPT, Grain
from apps.dispatch.providers.errors import ACCEPTED
from apps.dispatch.selectors import query_timestamp
from messaging_center.errors import ValidationFailed

GROUP_KEYS = {
    "provider": "r.provider",
    "channel": "r.channel",
    "template": "r.template_code",
    "day": "to_char(r.bucket AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
    "segment": "r.segment",
}
COUNTS = ("total", "sent", "delivered", "undelivered", "failed", "expired", "suppressed", "rejected")

ORIGIN = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)  # the triggers' date_bin origin: UTC minutes, hours, days
OPEN_START = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
OPEN_END = dt.datetime(3000, 1, 1, tzinfo=dt.UTC)
MONTH = dt.timedelta(days=31)  # stands for a calendar month (UTC) in GRAINS
DAY, HOUR, MINUTE = dt.timedelta(days=1), dt.timedelta(hours=1), dt.timedelta(minutes=1)
# The grains a range is read in, coarsest first. By day: the days' totals rows (every other part of
# their key ''), since a month row cannot say which of its days a message was made on.
GRAINS = ((Grain.MONTH, MONTH), (Grain.DAY, DAY), (Grain.HOUR, HOUR), (Grain.MINUTE, MINUTE))
GRAINS_BY_DAY = ((Grain.TOTALS, DAY), (Grain.HOUR, HOUR), (Grain.MINUTE, MINUTE))


def _floor(moment: dt.datetime, width: dt.timedelta) -> dt.datetime:
    if width == MONTH:
        return moment.astimezone(dt.UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return moment - (moment - ORIGIN) % width


def _ceil(moment: dt.datetime, width: dt.timedelta) -> dt.datetime:
    floor = _floor(moment, width)
    if floor == moment:
        return floor
    if width == MONTH:
        return _floor(floor + dt.timedelta(days=32), MONTH)
    return floor + width


def _coarse(moment: dt.datetime, now: dt.datetime) -> dt.datetime:
    """An edge at the finest grain still kept at its age."""
    moment = _floor(moment, MINUTE)
    if moment < now - HOUR_ROWS_KEPT:
        return _floor(moment, DAY)
    if moment < now - MINUTE_ROWS_KEPT:
        return _floor(moment, HOUR)
    return moment


def stats_range(start: dt.datetime | None, end: dt.datetime | None, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The [start, end) that `created_after`/`created_before` stand for: whole minutes, hours past
    MINUTE_ROWS_KEPT, days past HOUR_ROWS_KEPT; open ends as far as the rollups go."""
    return (
        max(_coarse(start, now), OPEN_START) if start else OPEN_START,
        min(_coarse(end, now), OPEN_END) if end else OPEN_END,
    )


def rollup_spans(
    start: dt.datetime, end: dt.datetime, grains: tuple[tuple[Grain, dt.timedelta], ...] = GRAINS
) -> list[tuple[str, dt.datetime, dt.datetime]]:
    """[start, end) (whole minutes) as (grain, from, to) ranges of rollup buckets: the whole months
    inside it, then the whole days inside what is left at either edge, then hours, then minutes."""
    spans: list[tuple[str, dt.datetime, dt.datetime]] = []

    def cover(start: dt.datetime, end: dt.datetime, level: int) -> None:
        if start >= end:
            return
        grain, width = grains[level]
        if level == len(grains) - 1:
            spans.append((grain, start, end))
            return
        inner_start, inner_end = _ceil(start, width), _floor(end, width)
        if inner_start >= inner_end:
            cover(start, end, level + 1)
            return
        spans.append((grain, inner_start, inner_end))
        cover(start, inner_start, level + 1)
        cover(inner_end, end, level + 1)

    cover(start, end, 0)
    return spans


_SENT = "r.outcome IN ('sent', 'delivered', 'undelivered')"
# The latency histogram summed bucket by bucket in the same pass (one aggregate per bucket): unnesting
# the arrays and summing them in a second pass over the picked rows took twice as long.
_HISTOGRAM = ", ".join(
    f"coalesce(sum(r.latency_ms[{i}]) FILTER (WHERE r.outcome = 'delivered'), 0)" for i in range(1, len(LATENCY_BOUNDS_MS) + 1)
)
# Raw SQL, not the ORM: ranges from unnest joined to the rollups, and the histograms summed bucket by bucket.
_STATS = f"""
SELECT {{key}} AS key, sum(r.messages) AS total,
       coalesce(sum(r.messages) FILTER (WHERE {_SENT}), 0) AS sent,
       coalesce(sum(r.messages) FILTER (WHERE r.outcome = 'delivered'), 0) AS delivered,
       coalesce(sum(r.messages) FILTER (WHERE r.outcome = 'undelivered'), 0) AS undelivered,
       coalesce(sum(r.messages) FILTER (WHERE r.outcome = 'failed'), 0) AS failed,
       coalesce(sum(r.messages) FILTER (WHERE r.outcome = 'expired'), 0) AS expired,
       coalesce(sum(r.messages) FILTER (WHERE r.outcome = 'suppressed'), 0) AS suppressed,
       coalesce(sum(r.messages) FILTER (WHERE r.outcome = 'rejected'), 0) AS rejected,
       sum(r.codes) AS codes, sum(r.filled) AS filled, ARRAY[{_HISTOGRAM}] AS histogram, sum(r.cost) AS cost
FROM unnest(%(grains)s::text[], %(starts)s::timestamptz[], %(ends)s::timestamptz[]) AS q(grain, lo, hi)
JOIN dispatch_rollup r ON r.account_id = %(account)s AND r.grain = q.grain AND r.bucket >= q.lo AND r.bucket < q.hi
GROUP BY 1 HAVING sum(r.messages) > 0
"""  # noqa: S608 - our own constants
# Provider calls in the range (by when they were made), by outcome: `accepted` or a normalized reason.
_ATTEMPTS = """
SELECT {key} AS key, r.outcome, sum(r.calls), sum(r.duplicates)
FROM unnest(%(grains)s::text[], %(starts)s::timestamptz[], %(ends)s::timestamptz[]) AS q(grain, lo, hi)
JOIN dispatch_attempt_rollup r ON r.account_id = %(account)s AND r.grain = q.grain AND r.bucket >= q.lo AND r.bucket < q.hi
GROUP BY 1, 2
"""


def rate(part: int, whole: int) -> float | None:
    """part / whole to four places; None without a whole (not 0: nothing to judge by)."""
    return round(part / whole, 4) if whole else None


def percentile(histogram: list[int] | None, fraction: float) -> float | None:
    """The value below which `fraction` of the histogram's counts lie, interpolated inside its bucket."""
    total = sum(histogram or ())
    if not histogram or not total:
        return None
    rank, below = fraction * total, 0
    for i, count in enumerate(histogram):
        if count and below + count >= rank:
            low = LATENCY_BOUNDS_MS[i]
            if i + 1 == len(LATENCY_BOUNDS_MS):
                return float(low)
            return low + (LATENCY_BOUNDS_MS[i + 1] - low) * (rank - below) / count
        below += count
    return float(LATENCY_BOUNDS_MS[-1])


def stats_get(*, account: Account, params: dict[str, str]) -> list[dict[str, Any]]:
    group_by = params.get("group_by") or "day"
    if group_by not in GROUP_KEYS:
        choices = ", ".join(GROUP_KEYS)
        raise ValidationFailed(f"group_by must be one of {choices}.", errors={"group_by": [f"One of {choices}."]})
    after, before = params.get("created_after"), params.get("created_before")
    spans = rollup_spans(
        *stats_range(
            query_timestamp("created_after", after) if after else None,
            query_timestamp("created_before", before) if before else None,
            timezone.now(),
        ),
        GRAINS_BY_DAY if group_by == "day" else GRAINS,
    )
    if not spans:
        return []
    bounds: dict[str, Any] = {
        "account": account.id,
        "grains": [grain for grain, _, _ in spans],
        "starts": [lo for _, lo, _ in spans],
        "ends": [hi for _, _, hi in spans],
    }
    with connection.cursor() as cursor:
        cursor.execute(_STATS.format(key=GROUP_KEYS[group_by]), bounds)
        messages = {row[0]: row for row in cursor.fetchall()}
        # Calls have no day totals: by day, the days' own rows.
        calls = {**bounds, "grains": [Grain.DAY if grain == Grain.TOTALS else grain for grain in bounds["grains"]]}
        cursor.execute(_ATTEMPTS.format(key=GROUP_KEYS[group_by]), calls)
        attempts: dict[str, dict[str, int]] = {}
        duplicates: dict[str, int] = {}
        for key, outcome, count, twice in cursor.fetchall():
            if count:
                attempts.setdefault(key, {})[outcome] = int(count)
            duplicates[key] = duplicates.get(key, 0) + int(twice)
    return [
        _group(key, messages.get(key), attempts.get(key, {}), duplicates.get(key, 0))
        for key in sorted({*messages, *attempts, *duplicates})
    ]


def _group(key: str, row: tuple[Any, ...] | None, calls: dict[str, int], duplicates: int) -> dict[str, Any]:
    """A group's figures from its messages' row of _STATS (None: only calls in the range), its calls by
    outcome and its duplicates to a person."""
    counts = dict(zip(COUNTS, map(int, row[1:9]), strict=True)) if row else dict.fromkeys(COUNTS, 0)
    codes, filled, histogram, cost = (int(row[9]), int(row[10]), row[11], int(row[12])) if row else (0, 0, None, 0)
    p50, p95 = percentile(histogram, 0.5), percentile(histogram, 0.95)
    made = sum(calls.values())
    errors = sorted(((code, n) for code, n in calls.items() if code != ACCEPTED), key=lambda item: (-item[1], item[0]))
    return {
        "key": key,
        **counts,
        "attempts": made,
        "errors": dict(errors),
        "success_rate": rate(calls.get(ACCEPTED, 0), made),
        "duplicates": duplicates,
        "receipt_rate": rate(counts["delivered"] + counts["undelivered"], counts["sent"]),
        "delivery_rate": rate(counts["delivered"], counts["sent"]),
        "latency_p50_ms": round(p50) if p50 is not None else None,
        "latency_p95_ms": round(p95) if p95 is not None else None,
        "fill_rate": rate(filled, codes),
        "cost": cost / MICRO,
        "currency": settings.COST_CURRENCY,
    }
