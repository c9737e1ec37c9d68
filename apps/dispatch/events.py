"""A message's stored events (its timeline, with the events selectors make from the row)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence

from apps.dispatch.leases import lease_start
from apps.dispatch.models import Status
from messaging_center import ids
from messaging_center.db import bound_cursor, json_rows


def record_events(
    rows: Sequence[tuple[uuid.UUID, str, str, str, str, int | None]],
    *,
    first: bool = False,
    started: Mapping[uuid.UUID, dt.datetime | None] | None = None,
    once: bool = False,
) -> None:
    """(message id, status, code, detail, provider, attempt) → one MessageEvent each, one statement.
    `first`: each is its message's first event, stored under the message's own id (a message the
    send API did not make: see selectors.message_timeline). `started`: message id → when the
    attempt these events end was claimed (the timeline's `sending` event of that attempt). `once`:
    not when the message has an event of that code for that attempt already."""
    if not rows:
        return
    event_ids = [row[0] for row in rows] if first else ids.uuid7_many(len(rows))
    started = started or {}
    events = json_rows(
        {"id": event_id, "m": mid, "s": status, "c": code, "d": detail, "p": provider, "a": attempt, "t": started.get(mid)}
        for event_id, (mid, status, code, detail, provider, attempt) in zip(event_ids, rows, strict=True)
    )
    with bound_cursor() as cursor:
        cursor.execute(
            "INSERT INTO dispatch_messageevent (id, message_id, status, at, code, detail, provider, attempt, started_at) "
            "SELECT e.id, e.m, e.s, now(), e.c, e.d, e.p, e.a, e.t "
            "FROM json_to_recordset(%s::json) AS e(id uuid, m uuid, s text, c text, d text, p text, a int, t timestamptz)"
            + (_ONCE if once else ""),
            [events],
        )


_ONCE = " WHERE NOT EXISTS (SELECT 1 FROM dispatch_messageevent x WHERE x.message_id = e.m AND x.attempt = e.a AND x.code = e.c)"


# Attempts that waited for a retry through no fault of their provider: our own rate limit for it, a
# worker that died mid-send, and a message held because its earlier attempt's outcome is still unknown
# (apps/dispatch/delivery/holds.py; that attempt's own event names its provider).
LOCAL_THROTTLE = "provider_rate_limited"
WORKER_LOST = "worker_lost"
OUTCOME_UNKNOWN = "outcome_unknown"
NOT_THE_PROVIDERS_FAULT = (LOCAL_THROTTLE, WORKER_LOST, OUTCOME_UNKNOWN)
# A message that reached the person through two providers (a hedged call accepted late, or a delivered
# report from the provider of an earlier attempt whose outcome was unknown): one event per message,
# the count's once-only record (mc_duplicate_sends_total).
DUPLICATE_SEND = "duplicate_send"


def record_lost_attempts(lost: Sequence[tuple[uuid.UUID, int, str, dt.datetime]]) -> None:
    """(message id, attempt, provider, its lapsed lease): attempts whose worker died mid-send, found
    by the sweeper or by a claim (both may find the same one: it is recorded once). Each gets an
    event that ends it, so that the timeline still shows it."""
    record_events(
        [
            (
                mid,
                Status.RETRY_WAIT,
                WORKER_LOST,
                f"the worker stopped before the outcome of attempt {attempt} was known"
                + (f"; {provider} is asked before sending again" if provider else ""),
                provider,
                attempt,
            )
            for mid, attempt, provider, _ in lost
        ],
        started={mid: lease_start(lease_until) for mid, _, _, lease_until in lost},
        once=True,
    )


def failed_providers(message_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, set[str]]:
    """The providers whose attempts at these messages ended waiting for a retry (their events)."""
    if not message_ids:
        return {}
    with bound_cursor() as cursor:
        cursor.execute(
            "SELECT message_id, array_agg(DISTINCT provider) FROM dispatch_messageevent "
            "WHERE message_id = ANY(%s) AND status = %s AND provider <> '' AND code <> ALL(%s) GROUP BY message_id",
            [list(message_ids), Status.RETRY_WAIT, list(NOT_THE_PROVIDERS_FAULT)],
        )
        return {message_id: set(providers) for message_id, providers in cursor.fetchall()}


def last_retry_waits(message_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, dt.datetime]:
    """When each message's latest attempt ended waiting for a retry (a hold of a message whose outcome
    is unknown is not an attempt's end: see OUTCOME_UNKNOWN)."""
    if not message_ids:
        return {}
    with bound_cursor() as cursor:
        cursor.execute(
            "SELECT message_id, max(at) FROM dispatch_messageevent "
            "WHERE message_id = ANY(%s) AND status = %s AND code <> %s GROUP BY message_id",
            [list(message_ids), Status.RETRY_WAIT, OUTCOME_UNKNOWN],
        )
        return dict(cursor.fetchall())
