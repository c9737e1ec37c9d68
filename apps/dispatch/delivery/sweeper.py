"""Beat jobs of delivery: scheduled messages that are due, and messages whose lease ran out."""

from __future__ import annotations

from typing import Any, cast

from django.db import connection, transaction
from redis.exceptions import RedisError

from apps.dispatch import outbox
from apps.dispatch.delivery.claims import expire
from apps.dispatch.events import record_events, record_lost_attempts
from apps.dispatch.leases import queued_lease
from apps.dispatch.models import Status
from messaging_center.broker import queue_depths


def enqueue_due(*, batch: int = 1000) -> int:
    """Scheduled messages whose time has come → `queued`, published in chunks per lane."""
    total = 0
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                """
                WITH due AS (
                    SELECT id FROM dispatch_message
                    WHERE status = 'scheduled' AND scheduled_at <= now()
                    ORDER BY scheduled_at LIMIT %s FOR UPDATE SKIP LOCKED
                )
                UPDATE dispatch_message AS m SET status = 'queued', lease_until = now() + %s
                FROM due WHERE m.id = due.id
                RETURNING m.id, m.priority
                """,
                [batch, cast(Any, queued_lease())],  # a timedelta: psycopg binds it, django-stubs leave it out
            )
            due = cursor.fetchall()
            record_events([(mid, Status.QUEUED, "", "due", "", None) for mid, _ in due])
            outbox.enqueue(due)
        total += len(due)
        if len(due) < batch:
            return total


def sweep(*, batch: int = 1000) -> int:
    """Messages left queued/retry_wait/sending past their lease (a lost task, a dead worker, a
    flushed broker) are enqueued again; expired ones are closed."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT id FROM dispatch_message
            WHERE status IN ('queued', 'retry_wait', 'sending') AND lease_until < now() AND expires_at <= now()
            LIMIT %s
            """,
            [batch],
        )
        expire([row[0] for row in cursor.fetchall()])
    try:
        idle_lanes = [queue.removeprefix("mc.") for queue, depth in queue_depths().items() if depth == 0]
    except RedisError:
        idle_lanes = []
    with transaction.atomic(), connection.cursor() as cursor:
        # A queued message past its lease is only lost if its lane has drained (or it is long
        # overdue): re-enqueueing behind a backlog that still holds its task would only add copies.
        cursor.execute(
            """
            WITH lost AS (
                SELECT id, status, lease_until, attempts, provider FROM dispatch_message
                WHERE lease_until < now()
                  AND (status IN ('retry_wait', 'sending')
                       OR (status = 'queued' AND (priority = ANY(%s) OR lease_until < now() - %s)))
                ORDER BY lease_until LIMIT %s FOR UPDATE SKIP LOCKED
            )
            UPDATE dispatch_message AS m SET lease_until = now() + %s,
                   -- a worker died mid-send: its provider may have the message, ask before resending
                   status = CASE WHEN m.status = 'sending' THEN 'retry_wait' ELSE m.status END,
                   needs_reconcile = m.needs_reconcile OR (m.status = 'sending' AND m.provider <> '')
            FROM lost WHERE m.id = lost.id
            RETURNING m.id, m.priority, lost.status, lost.lease_until, lost.attempts, lost.provider
            """,
            [idle_lanes, cast(Any, queued_lease() * 10), batch, cast(Any, queued_lease())],  # timedeltas (see above)
        )
        lost = cursor.fetchall()
        record_lost_attempts([(row[0], row[4], row[5], row[3]) for row in lost if row[2] == Status.SENDING])
        outbox.enqueue([(row[0], row[1]) for row in lost])
    return len(lost)
