"""Beat jobs of delivery: scheduled messages that are due, and messages whose lease ran out."""

from __future__ import annotations

import uuid

from django.db import transaction
from redis.exceptions import RedisError

from apps.dispatch import outbox, transitions
from apps.dispatch.delivery.claims import expire
from apps.dispatch.events import record_events, record_lost_attempts
from apps.dispatch.leases import queued_lease
from apps.dispatch.models import Status
from messaging_center.broker import queue_depths
from messaging_center.db import bound_cursor, generic_plan_cursor


def enqueue_due(*, batch: int = 1000) -> int:
    """Scheduled messages whose time has come → `queued`, published in chunks per lane: their rows of
    dispatch_due, then the messages by id (not prepared: planned with the ids, pruned to their
    partitions)."""
    total = 0
    while True:
        with transaction.atomic(), bound_cursor() as cursor:
            cursor.execute(transitions.DUE_IDS, {"batch": batch})
            ids = [row[0] for row in cursor.fetchall()]
            due: list[tuple[uuid.UUID, str]] = []
            if ids:
                cursor.execute(transitions.DUE, {"ids": ids, "lease": queued_lease()})
                due = cursor.fetchall()
            if stale := set(ids) - {mid for mid, _ in due}:
                cursor.execute(transitions.DUE_STALE, {"ids": list(stale)})
            record_events([(mid, Status.QUEUED, "", "due", "", None) for mid, _ in due])
            outbox.enqueue(due)
        total += len(due)
        if len(ids) < batch:
            return total


def sweep(*, batch: int = 1000) -> int:
    """Messages left queued/retry_wait/sending past their lease (a lost task, a dead worker, a
    flushed broker) are enqueued again; expired ones are closed."""
    with generic_plan_cursor() as cursor:
        cursor.execute(transitions.LAPSED_AND_EXPIRED, {"batch": batch})
        lapsed = [row[0] for row in cursor.fetchall()]
    expire(lapsed)
    try:
        idle_lanes = [queue.removeprefix("mc.") for queue, depth in queue_depths().items() if depth == 0]
    except RedisError:
        idle_lanes = []
    with transaction.atomic(), generic_plan_cursor() as cursor:
        cursor.execute(
            transitions.LAPSED,
            {"idle_lanes": idle_lanes, "overdue": queued_lease() * 10, "batch": batch, "lease": queued_lease()},
        )
        lost = cursor.fetchall()
        record_lost_attempts([(row[0], row[4], row[5], row[3]) for row in lost if row[2] == Status.SENDING])
        outbox.enqueue([(row[0], row[1]) for row in lost])
    return len(lost)
