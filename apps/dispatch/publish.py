"""Hands dispatch tasks to the broker: the outbox rows written with the messages are published in
one Redis pipeline after commit and deleted once the broker has them; the relay republishes rows
whose on-commit publish failed. Publishing twice is harmless: delivery claims each message by a
conditional UPDATE, so a duplicate task finds nothing to do."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from kombu import pools
from kombu.exceptions import KombuError, OperationalError
from redis.exceptions import RedisError

from apps.dispatch.models import Outbox
from messaging_center import ids

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


def _broker_publish(rows: Iterable[OutboxRow]) -> None:
    from apps.dispatch.tasks import deliver

    # kombu's pools are keyed by connection URL: pooled, and following settings.CELERY_BROKER_URL.
    connection_ = deliver.app.connection_for_write(settings.CELERY_BROKER_URL)
    with pools.producers[connection_].acquire(block=True, timeout=5) as producer, producer.batch():
        for row in rows:
            deliver.apply_async(args=[row.message_ids], queue=f"mc.{row.lane}", producer=producer, retry=False)


def publish(rows: Sequence[OutboxRow]) -> bool:
    """Publishes and clears outbox rows; on a broker failure leaves them for the relay."""
    if not rows:
        return True
    try:
        _broker_publish(rows)
    except (OperationalError, KombuError, RedisError, OSError) as error:
        logger.warning("publish of %d dispatch task(s) failed, the relay will retry: %s", len(rows), error)
        return False
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM dispatch_outbox WHERE id = ANY(%s)", [[r.id for r in rows]])
    return True


def publish_on_commit(rows: Sequence[OutboxRow]) -> None:
    transaction.on_commit(lambda: publish(rows))


def outbox_relay(*, batch: int = 500) -> int:
    """Publishes outbox rows older than RELAY_AFTER; returns how many tasks went out."""
    published = 0
    while True:
        with transaction.atomic():
            stale = list(
                Outbox.objects.select_for_update(skip_locked=True)
                .filter(created_at__lt=timezone.now() - RELAY_AFTER)
                .order_by("created_at")[:batch]
            )
            rows = [OutboxRow(o.id, o.lane, o.message_ids) for o in stale]
            if not rows or not publish(rows):
                return published
            published += len(rows)
        if len(rows) < batch:
            return published
