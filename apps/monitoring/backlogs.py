"""What is waiting, read now: each lane's tasks in the broker and the age of its oldest queued message,
and the scheduled, retry_wait and status-callback backlogs. Shared by the staff dashboard and the
scrape-time gauges of /metrics (apps/monitoring/collectors.py), so both say the same.

Every read goes through an index made for that state (tests/monitoring/test_plans.py plans them on a
history): no statement reads the messages whole. Counts stop at BACKLOG_COUNTED_UP_TO, so that a scrape
of a huge backlog stays a bounded read."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.conf import settings
from django.db import connection
from redis.exceptions import RedisError

from messaging_center.broker import queue_depths

BACKLOG_COUNTED_UP_TO = 100_000

# Raw SQL, not the ORM: a LATERAL per lane and capped counts. The oldest queued message of a lane: the
# first queued row in `msg_lease` order. A queued message keeps the lease it was accepted (or made
# due) with until a worker claims it, so the earliest lease is the longest wait.
OLDEST_QUEUED = """
SELECT l.lane, o.since
FROM unnest(%(lanes)s::text[]) AS l(lane) LEFT JOIN LATERAL (
    SELECT coalesce(scheduled_at, created_at) AS since FROM dispatch_message
    WHERE lease_until IS NOT NULL AND status = 'queued' AND priority = l.lane
    ORDER BY lease_until LIMIT 1
) o ON TRUE
"""
# Scheduled messages through `msg_due` (a partial index holding only them).
SCHEDULED = """
SELECT count(*) FROM (SELECT 1 FROM dispatch_message WHERE status = 'scheduled' LIMIT %(cap)s) s
"""
# Messages waiting for a retry through `msg_account_status` (account, status, -id), every account's range.
RETRY_WAIT = """
SELECT count(*) FROM (
    SELECT 1 FROM dispatch_message WHERE account_id = ANY(%(accounts)s) AND status = 'retry_wait' LIMIT %(cap)s
) r
"""
# Status callbacks not delivered yet (due now or waiting for their next try) through `callback_due`.
CALLBACKS = """
SELECT count(*) FROM (SELECT 1 FROM receipts_statuscallback WHERE state = 'pending' LIMIT %(cap)s) c
"""
ACCOUNT_IDS = "SELECT array_agg(id) FROM accounts_account"


@dataclass(frozen=True)
class Lane:
    lane: str
    tasks: int | None  # tasks in the lane's broker queue (up to 100 messages each); None: Redis did not answer
    oldest_queued: dt.datetime | None  # accepted, or due if it was scheduled

    def age_seconds(self, now: dt.datetime) -> float:
        return max((now - self.oldest_queued).total_seconds(), 0.0) if self.oldest_queued else 0.0


def lanes() -> list[Lane]:
    try:
        depths: dict[str, int] | None = queue_depths()
    except RedisError:
        depths = None
    with connection.cursor() as cursor:
        cursor.execute(OLDEST_QUEUED, {"lanes": list(settings.LANES)})
        oldest = dict(cursor.fetchall())
    return [Lane(lane, None if depths is None else depths.get(f"mc.{lane}", 0), oldest.get(lane)) for lane in settings.LANES]


@dataclass(frozen=True)
class Backlogs:
    scheduled: int
    retry_wait: int
    callbacks: int

    def as_dict(self) -> dict[str, int]:
        return {"scheduled": self.scheduled, "retry_wait": self.retry_wait, "callbacks": self.callbacks}


def backlogs() -> Backlogs:
    """Messages scheduled for later, messages waiting for a retry, status callbacks owed (each up to the cap)."""
    cap = {"cap": BACKLOG_COUNTED_UP_TO}
    with connection.cursor() as cursor:
        cursor.execute(ACCOUNT_IDS)
        accounts = cursor.fetchone()[0] or []
        counts = []
        for statement, params in ((SCHEDULED, cap), (RETRY_WAIT, cap | {"accounts": accounts}), (CALLBACKS, cap)):
            cursor.execute(statement, params)
            counts.append(int(cursor.fetchone()[0]))
    return Backlogs(*counts)
