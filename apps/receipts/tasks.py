"""Celery tasks of the `mc.receipts` lane: thin — call one service."""

from __future__ import annotations

import uuid

from celery import shared_task
from django.db import InterfaceError, OperationalError

from apps.receipts import callbacks, failover, intake, matching, polling
from messaging_center.periodic import PeriodicJob


@shared_task(name=callbacks.DELIVER_TASK)
def deliver_callbacks(callback_ids: list[str]) -> int:
    return len(callbacks.callbacks_deliver(callback_ids=[uuid.UUID(c) for c in callback_ids]))


@shared_task(name="receipts.publish_due_callbacks", base=PeriodicJob)
def publish_due_callbacks() -> int:
    return callbacks.callbacks_publish_due()


@shared_task(name=matching.MATCH_TASK)
def match_pending() -> int:
    return matching.receipts_match_pending()


@shared_task(name="receipts.rematch", base=PeriodicJob)
def rematch() -> int:
    return matching.receipts_rematch()


@shared_task(name="receipts.poll", base=PeriodicJob)
def poll() -> int:
    return polling.receipts_poll()


@shared_task(name="receipts.flag_timeouts", base=PeriodicJob)
def flag_timeouts() -> int:
    return polling.receipts_flag_timeouts()


@shared_task(name="receipts.replay_spooled", base=PeriodicJob)
def replay_spooled() -> int:
    """Reports pushed during a database outage (apps/dispatch/spool), once it is back."""
    stored = 0
    try:
        while batch := intake.receipts_replay_spooled():
            stored += batch
    except (OperationalError, InterfaceError):
        pass  # still down: the next run goes on
    return stored


@shared_task(name="receipts.failover_silent", base=PeriodicJob)
def failover_silent() -> int:
    return len(failover.failover_silent())
