"""Celery tasks: thin — load ids, call one service, own queue and retry only."""

from __future__ import annotations

import uuid

from celery import Task, shared_task
from django.db import InterfaceError, OperationalError

from apps.dispatch import outbox
from apps.dispatch.delivery import chunk, sweeper
from apps.dispatch.retention import run_retention
from apps.dispatch.routing.quality import quality_update
from apps.dispatch.services import idempotency_purge
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
