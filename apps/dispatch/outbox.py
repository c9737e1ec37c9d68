"""Hands dispatch tasks to the broker. The outbox rows written with the messages are published in
one Redis pipeline after commit, and their ids are then marked published in the broker's own Redis
(no database round trip on the hot path; a Redis that lost the tasks lost the marks too). The relay,
every few seconds, deletes marked rows and republishes unmarked ones older than RELAY_AFTER.
Publishing twice is harmless: delivery claims each message by a conditional UPDATE, so a duplicate
task finds nothing to do."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone
from kombu import Producer, pools
from kombu.exceptions import KombuError, OperationalError
from redis.exceptions import RedisError

from apps.dispatch.models import Outbox
from messaging_center import celery_app, ids
from messaging_center.broker import broker_client, push_task

logger = logging.getLogger(__name__)

CHUNK_SIZE = 100
RELAY_AFTER = dt.timedelta(seconds=3)


@dataclass(frozen=True)
class OutboxRow:
    id: uuid.UUID
    lane: str
    message_ids: list[str]


def chunk_rows(lanes: dict[str, list[uuid.UUID]]) -> list[OutboxRow]:
    """Message ids per lane → outbox rows of at most CHUNK_SIZE ids each."""
    rows = []
    for lane, message_ids in lanes.items():
        for start in range(0, len(message_ids), CHUNK_SIZE):
            chunk = [str(mid) for mid in message_ids[start : start + CHUNK_SIZE]]
            rows.append(OutboxRow(ids.uuid7(), lane, chunk))
    return rows


def outbox_write(rows: Sequence[OutboxRow], *, now: dt.datetime) -> None:
    if rows:
        Outbox.objects.bulk_create([Outbox(id=r.id, lane=r.lane, message_ids=r.message_ids, created_at=now) for r in rows])


def enqueue(messages: Iterable[tuple[uuid.UUID, str]]) -> None:
    """(message id, lane) pairs → outbox rows in the current transaction, published after its commit."""
    lanes: dict[str, list[uuid.UUID]] = {}
    for message_id, lane in messages:
        lanes.setdefault(lane, []).append(message_id)
    rows = chunk_rows(lanes)
    outbox_write(rows, now=timezone.now())
    publish_on_commit(rows)


@contextlib.contextmanager
def _producer() -> Iterator[Producer]:
    # kombu's pools are keyed by connection URL: pooled, and following settings.CELERY_BROKER_URL.
    with pools.producers[celery_app.connection_for_write(settings.CELERY_BROKER_URL)].acquire(block=True, timeout=5) as producer:
        yield producer


PUBLISHED_KEY = "mc:outbox:published"
# Tasks are published by name: the task modules sit above the code that publishes them.
DELIVER_TASK = "dispatch.deliver"  # apps.dispatch.tasks.deliver


def publish_retry(*, lane: str, message_ids: Sequence[uuid.UUID], countdown: float) -> bool:
    """A short countdown retry (capped well below the broker's visibility timeout). If it cannot be
    published, the messages' lease runs out and the sweeper enqueues them again."""
    countdown = min(countdown, settings.MAX_RETRY_COUNTDOWN_SECONDS)
    try:
        with _producer() as producer:
            celery_app.send_task(
                DELIVER_TASK,
                args=[[str(m) for m in message_ids]],
                queue=f"mc.{lane}",
                countdown=countdown,
                producer=producer,
                retry=False,
            )
    except (OperationalError, KombuError, RedisError, OSError) as error:
        logger.warning("retry publish of %d message(s) failed, the sweeper will pick them up: %s", len(message_ids), error)
        return False
    return True


def publish(rows: Sequence[OutboxRow]) -> bool:
    """Publishes outbox rows and marks them published, in one pipeline (tasks and marks reach the
    same Redis together); on a broker failure leaves them for the relay."""
    if not rows:
        return True
    try:
        with broker_client().pipeline(transaction=False) as pipe:
            for row in rows:
                push_task(pipe, DELIVER_TASK, f"mc.{row.lane}", [row.message_ids])
            pipe.sadd(PUBLISHED_KEY, *(str(r.id) for r in rows))
            pipe.execute()
    except (RedisError, OSError) as error:
        logger.warning("publish of %d dispatch task(s) failed, the relay will retry: %s", len(rows), error)
        return False
    return True


def _delete(outbox_ids: Sequence[uuid.UUID]) -> None:
    if outbox_ids:
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM dispatch_outbox WHERE id = ANY(%s)", [list(outbox_ids)])


def publish_on_commit(rows: Sequence[OutboxRow]) -> None:
    transaction.on_commit(lambda: publish(rows))


def relay_query(batch: int) -> QuerySet[Outbox]:
    """The relay's read, oldest first by the primary key (UUIDv7s made as the rows are written:
    the order of `created_at`), so that a table bloated by the churn is never read whole."""
    return Outbox.objects.select_for_update(skip_locked=True).order_by("id")[:batch]


def outbox_relay(*, batch: int = 1000) -> int:
    """Clears outbox rows marked published; republishes unmarked rows older than RELAY_AFTER.
    Returns how many tasks it republished."""
    republished = 0
    while True:
        with transaction.atomic():
            pending = list(relay_query(batch))
            if not pending:
                return republished
            try:
                marks = broker_client().smismember(PUBLISHED_KEY, [str(o.id) for o in pending])
            except RedisError:
                return republished
            done = [o.id for o, marked in zip(pending, marks, strict=True) if marked]
            cutoff = timezone.now() - RELAY_AFTER
            stale = [
                OutboxRow(o.id, o.lane, o.message_ids)
                for o, marked in zip(pending, marks, strict=True)
                if not marked and o.created_at < cutoff
            ]
            if stale and publish(stale):
                done += [r.id for r in stale]
                republished += len(stale)
            _delete(done)
            if done:
                broker_client().srem(PUBLISHED_KEY, *(str(i) for i in done))
        if len(pending) < batch or not done:
            return republished
