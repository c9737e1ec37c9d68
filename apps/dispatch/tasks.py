"""Celery tasks: thin — load ids, call one service, own queue and retry only."""

from __future__ import annotations

import uuid

from celery import Task, shared_task

from apps.dispatch import delivery, publish


@shared_task(name=publish.DELIVER_TASK, bind=True)
def deliver(self: Task, message_ids: list[str]) -> None:
    queue = (self.request.delivery_info or {}).get("routing_key") or ""
    delivery.deliver_messages([uuid.UUID(mid) for mid in message_ids], lane=queue.removeprefix("mc."))


@shared_task(name="dispatch.relay_outbox")
def relay_outbox() -> int:
    return publish.outbox_relay()


@shared_task(name="dispatch.enqueue_due")
def enqueue_due() -> int:
    return delivery.enqueue_due()


@shared_task(name="dispatch.sweep")
def sweep() -> int:
    return delivery.sweep()


@shared_task(name="dispatch.purge_idempotency_keys")
def purge_idempotency_keys() -> int:
    from apps.dispatch.services import idempotency_purge

    return idempotency_purge()
