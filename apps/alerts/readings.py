"""What the alert rules read: the rollups, provider health, the lanes, the callback backlog and the
quotas — each behind one small function, so that a source can be switched (submit errors move to
`dispatch_attempt_rollup` once it exists) without touching the rules.

The rollups are read across accounts, one index range scan per account on the primary key
`(account_id, grain, bucket, …)` (a LATERAL join: PostgreSQL 16 cannot skip-scan the leading
column), never the messages."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.db import connection
from redis.exceptions import RedisError

from apps.accounts.models import Account
from apps.accounts.selectors import quota_key
from apps.dispatch.models import Grain, Provider
from apps.dispatch.providers import ADAPTERS, adapter_class
from apps.dispatch.routing import health
from apps.dispatch.routing.quality import figures
from messaging_center.broker import queue_depths, redis_client

# Raw SQL: a LATERAL join per account over the rollups' primary key, which the ORM cannot express.
_OUTCOMES = """
    SELECT r.provider, r.segment, r.outcome, sum(r.messages)::bigint
    FROM accounts_account a CROSS JOIN LATERAL (
        SELECT provider, segment, outcome, messages FROM dispatch_rollup
        WHERE account_id = a.id AND grain = %(grain)s AND bucket >= %(since)s AND bucket < %(until)s
          AND provider <> '' AND outcome IN ('sent', 'delivered', 'undelivered', 'failed', 'expired')
    ) r
    GROUP BY 1, 2, 3
"""
_CODES = """
    SELECT a.id, a.name, coalesce(sum(r.codes), 0)::bigint, coalesce(sum(r.filled), 0)::bigint
    FROM accounts_account a CROSS JOIN LATERAL (
        SELECT codes, filled FROM dispatch_rollup
        WHERE account_id = a.id AND grain = %(grain)s AND bucket >= %(since)s AND bucket < %(until)s AND codes > 0
    ) r
    GROUP BY 1, 2
"""
# The oldest queued message of a lane: the first of its queued rows in `msg_lease` order. A queued
# message keeps the lease it was accepted (or made due) with until a worker claims it; the sweeper
# renews it only when the lane has drained, so the earliest lease is the longest wait.
_OLDEST_QUEUED = """
    SELECT coalesce(scheduled_at, created_at) FROM dispatch_message
    WHERE lease_until IS NOT NULL AND status = 'queued' AND priority = %(lane)s
    ORDER BY lease_until LIMIT 1
"""
# Callbacks due for longer than `before`, through `callback_due`; counted up to a cap.
_DUE_CALLBACKS = """
    SELECT count(*), min(next_attempt_at) FROM (
        SELECT next_attempt_at FROM receipts_statuscallback
        WHERE state = 'pending' AND next_attempt_at <= %(before)s ORDER BY next_attempt_at LIMIT %(cap)s
    ) due
"""
CALLBACKS_COUNTED_UP_TO = 100_000


@dataclass(frozen=True)
class Outcomes:
    """Messages of one provider and destination segment that reached a provider, by what they are now."""

    provider: str
    segment: str
    sent: int = 0  # awaiting a receipt
    delivered: int = 0
    undelivered: int = 0
    failed: int = 0  # after at least one attempt with this provider
    expired: int = 0

    @property
    def receipted(self) -> int:
        return self.delivered + self.undelivered


def provider_outcomes(*, since: dt.datetime, until: dt.datetime, grain: str = Grain.MINUTE) -> list[Outcomes]:
    """Messages created in [since, until) (rollup buckets of `grain`) per provider and segment."""
    counts: dict[tuple[str, str], dict[str, int]] = {}
    with connection.cursor() as cursor:
        cursor.execute(_OUTCOMES, {"grain": grain, "since": since, "until": until})
        for provider, segment, outcome, messages in cursor.fetchall():
            counts.setdefault((provider, segment), {})[outcome] = int(messages)
    return [Outcomes(provider, segment, **by_outcome) for (provider, segment), by_outcome in sorted(counts.items())]


@dataclass(frozen=True)
class Codes:
    account_id: uuid.UUID
    account: str
    codes: int
    filled: int


def verification_codes(*, since: dt.datetime, until: dt.datetime, grain: str = Grain.MINUTE) -> dict[uuid.UUID, Codes]:
    """Verification codes sent and checked valid, per account, of messages created in [since, until)."""
    with connection.cursor() as cursor:
        cursor.execute(_CODES, {"grain": grain, "since": since, "until": until})
        return {row[0]: Codes(row[0], row[1], int(row[2]), int(row[3])) for row in cursor.fetchall()}


@dataclass(frozen=True)
class SubmitHealth:
    provider: str
    calls: int
    failures: int
    circuit: str  # closed, open, half_open


def submit_health() -> list[SubmitHealth]:
    """Every enabled provider's calls and failures over the health's rolling minute, and its circuit
    (apps/dispatch/routing/health.py). To be read from `dispatch_attempt_rollup` once it exists."""
    readings = []
    for name in Provider.objects.filter(enabled=True).order_by("name").values_list("name", flat=True):
        snapshot = health().snapshot(name)
        failures = round(snapshot.attempts * (1 - snapshot.success_rate)) if snapshot.success_rate is not None else 0
        readings.append(SubmitHealth(name, snapshot.attempts, failures, snapshot.state))
    return readings


@dataclass(frozen=True)
class Demotion:
    provider: str
    segment: str
    demoted: bool
    reason: str
    messages: int


def demotions() -> list[Demotion]:
    """Every provider and destination segment routing judged on delivery data, as its last run left
    them (apps/dispatch/routing/quality.py; Redis, expiring when the job stops)."""
    return [
        Demotion(provider, segment, verdict.state == "demoted", verdict.reason, verdict.messages)
        for (provider, segment), verdict in sorted(figures().items())
    ]


def providers_reporting_delivery() -> set[str]:
    """Enabled providers whose API reports delivery (pushed or polled): only they can fall silent."""
    kinds = Provider.objects.filter(enabled=True).values_list("name", "kind")
    return {name for name, kind in kinds if kind in ADAPTERS and adapter_class(kind).reports_delivery}


@dataclass(frozen=True)
class Lane:
    lane: str
    oldest_queued: dt.datetime | None
    tasks: int | None  # tasks in the broker's queue; None when Redis did not answer


def lanes() -> list[Lane]:
    try:
        depths: dict[str, int] | None = queue_depths()
    except RedisError:
        depths = None
    found = []
    with connection.cursor() as cursor:
        for lane in settings.LANES:
            cursor.execute(_OLDEST_QUEUED, {"lane": lane})
            row = cursor.fetchone()
            found.append(Lane(lane, row[0] if row else None, None if depths is None else depths.get(f"mc.{lane}", 0)))
    return found


@dataclass(frozen=True)
class CallbackBacklog:
    due: int  # capped at CALLBACKS_COUNTED_UP_TO
    oldest_due: dt.datetime | None


def callback_backlog(*, due_before: dt.datetime) -> CallbackBacklog:
    with connection.cursor() as cursor:
        cursor.execute(_DUE_CALLBACKS, {"before": due_before, "cap": CALLBACKS_COUNTED_UP_TO})
        count, oldest = cursor.fetchone() or (0, None)
    return CallbackBacklog(int(count), oldest)


@dataclass(frozen=True)
class QuotaUse:
    account: str
    used: int
    quota: int


def quota_use(*, now: dt.datetime) -> list[QuotaUse]:
    """Today's use (each account's own day) of every active account with a quota, in one Redis read."""
    accounts = list(Account.objects.filter(is_active=True, daily_quota__gt=0).only("id", "name", "daily_quota", "timezone"))
    if not accounts:
        return []
    used = redis_client().mget([quota_key(account, now) for account in accounts])
    return [QuotaUse(a.name, int(u or 0), a.daily_quota) for a, u in zip(accounts, used, strict=True)]
