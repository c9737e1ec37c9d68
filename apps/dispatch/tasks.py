"""Celery tasks: thin — load ids, call one service, own queue and retry only."""

from __future__ import annotations

import contextlib
import uuid

from celery import Task, shared_task
from celery.signals import worker_process_init
from django.db import InterfaceError, OperationalError

from apps.dispatch import outbox, routing
from apps.dispatch.delivery import chunk, sweeper
from apps.dispatch.retention import run_retention
from apps.dispatch.routing.quality import quality_update
from apps.dispatch.services import idempotency_purge
from apps.dispatch.spool import delivery as spool_delivery
from apps.dispatch.spool import replay
from apps.dispatch.spool.accept import DELIVER_SPOOLED_TASK
from messaging_center.periodic import PeriodicJob


# The database unreachable (a restart): the chunk is tried again in seconds rather than left to the
# sweeper after its lease; claims are conditional, so a retry never sends twice.
@shared_task(
    name=outbox.DELIVER_TASK,
    bind=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=1,
    retry_backoff_max=30,
    retry_jitter=True,
    max_retries=8,
)
def deliver(self: Task, message_ids: list[str]) -> None:
    queue = (self.request.delivery_info or {}).get("routing_key") or ""
    chunk.deliver_messages([uuid.UUID(mid) for mid in message_ids], lane=queue.removeprefix("mc."))


@worker_process_init.connect
def _read_providers(**_: object) -> None:
    """Each worker process reads the providers when it starts, so that it can deliver from the spool
    through a database outage that begins before its first chunk."""
    with contextlib.suppress(OperationalError, InterfaceError):
        routing.ROUTES.refresh()


@shared_task(name=DELIVER_SPOOLED_TASK, bind=True)
def deliver_spooled(self: Task, id_hexes: list[str]) -> None:
    """Spooled verification codes (apps/dispatch/spool): needs no database. Run again for those a
    retry or another worker's lease still holds, and by another process when this one could not read
    the providers (it started during the outage)."""
    try:
        again = spool_delivery.deliver_spooled(id_hexes)
    except (OperationalError, InterfaceError):
        again = 1.0
    if again:
        queue = (self.request.delivery_info or {}).get("routing_key") or "mc.critical"
        self.apply_async(args=(id_hexes,), countdown=again, queue=queue)


@shared_task(name="dispatch.replay_spool", base=PeriodicJob)
def replay_spool() -> int:
    """Spooled messages into the database, batch after batch, once it answers."""
    replayed = 0
    try:
        while batch := replay.replay_spool():
            replayed += batch
    except (OperationalError, InterfaceError):
        pass  # still down (or down again): the next run goes on where this one stopped
    return replayed


@shared_task(name="dispatch.relay_outbox", base=PeriodicJob)
def relay_outbox() -> int:
    return outbox.outbox_relay()


@shared_task(name="dispatch.enqueue_due", base=PeriodicJob)
def enqueue_due() -> int:
    return sweeper.enqueue_due()


@shared_task(name="dispatch.sweep", base=PeriodicJob)
def sweep() -> int:
    return sweeper.sweep()


@shared_task(name="dispatch.purge_idempotency_keys", base=PeriodicJob)
def purge_idempotency_keys() -> int:
    return idempotency_purge()


@shared_task(name="dispatch.retention", base=PeriodicJob)
def retention() -> dict[str, int]:
    report = run_retention()
    return {"dropped": len(report.dropped), "rewritten": len(report.rewritten), "made": len(report.made)}


@shared_task(name="dispatch.routing_quality", base=PeriodicJob)
def routing_quality() -> dict[str, int]:
    return quality_update()
