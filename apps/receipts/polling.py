"""Beat jobs for receipts that are not pushed: polling the providers' query APIs, and flagging
messages whose receipt never came."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from redis.exceptions import RedisError

from apps.dispatch.events import record_events
from apps.dispatch.models import Provider
from apps.dispatch.providers import ADAPTERS, adapter_class
from apps.dispatch.providers.base import ProviderAdapter, ProviderError
from apps.receipts.matching import receipts_record
from messaging_center import metrics
from messaging_center.broker import redis_client

logger = logging.getLogger(__name__)


def _kinds(has: Callable[[type[ProviderAdapter]], bool]) -> list[str]:
    return sorted(kind for kind in ADAPTERS if has(adapter_class(kind)))


POLL_BATCH = 200
RECEIPT_TIMEOUT_EVENT = "receipt_timeout"

# Each job reads only its due rows (docs/architecture.md, Periodic jobs): `sent` messages are the
# `sent` rows of dispatch_due (a row per sent message: its provider and sent_at; apps/dispatch/models.Due),
# through `due_by_time` (kind, provider, at, message_id); then the messages by id (a plain cursor:
# planned with the ids, pruned to the partitions that hold them), so a run costs its batch whatever
# the days of history kept.
#
# Polling walks a provider's `sent` messages inside the window in (sent_at, id) order, a batch per
# run, from where the last run stopped (a cursor in Redis): every message awaiting a receipt is asked
# about once per lap, however many never get one. A lap ends when a run finds fewer than a batch;
# the next starts again at the window's beginning. Without a cursor (first run, Redis flushed) a lap
# starts at the beginning.
AWAITING = """
    SELECT message_id, at FROM dispatch_due
    WHERE kind = 'sent' AND provider = %(provider)s AND at BETWEEN %(since)s AND %(until)s
      AND (at, message_id) > (%(after_at)s, %(after_id)s)
    ORDER BY at, message_id LIMIT %(batch)s
"""
# Timeouts: `sent` messages past RECEIPT_TIMEOUT_SECONDS (at most a day back), from where the last
# run stopped; `flagged` keeps a message from being flagged twice should the cursor be lost.
LATE = """
    SELECT message_id, provider, at FROM dispatch_due
    WHERE kind = 'sent' AND provider = ANY(%(providers)s) AND at BETWEEN %(since)s AND %(until)s
      AND NOT flagged AND (at, message_id) > (%(after_at)s, %(after_id)s)
    ORDER BY at, message_id LIMIT %(batch)s
"""
FLAGGED = "UPDATE dispatch_due SET flagged = TRUE WHERE kind = 'sent' AND message_id = ANY(%(ids)s)"
# Rows past every window the jobs look back over (messages that stay `sent`: no receipt ever, or a
# channel without receipts), provider by provider through the index.
DUE_PAST = """
    DELETE FROM dispatch_due WHERE kind = 'sent' AND provider = ANY(%(providers)s) AND at < %(before)s
"""
# The messages of a batch, by id, still `sent`.
SENT_BY_ID = """
    SELECT id, address, provider_message_id, channel FROM dispatch_message
    WHERE id = ANY(%(ids)s) AND status = 'sent'
"""
LOOK_BACK = dt.timedelta(days=1)  # the timeouts job's reach


def _sent_by_id(ids: list[uuid.UUID]) -> dict[uuid.UUID, tuple[str, str, str]]:
    """id → (address, provider id, channel) of those of `ids` still `sent`."""
    if not ids:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(SENT_BY_ID, {"ids": ids})
        return {mid: (address, pid, channel) for mid, address, pid, channel in cursor.fetchall()}


_START = (dt.datetime(1970, 1, 1, tzinfo=dt.UTC), uuid.UUID(int=0))
POLL_CURSOR_KEY = "mc:receipts:poll-cursor:{provider}"
TIMEOUT_CURSOR_KEY = "mc:receipts:timeout-cursor"


def _cursor_get(key: str) -> tuple[dt.datetime, uuid.UUID]:
    try:
        value = redis_client().get(key)
    except RedisError as error:
        logger.warning("cursor %s unreadable, starting from the window's beginning: %s", key, error)
        return _START
    if not value:
        return _START
    at, _, mid = (value.decode() if isinstance(value, bytes) else str(value)).partition("|")
    return dt.datetime.fromisoformat(at), uuid.UUID(mid)


def _cursor_set(key: str, position: tuple[dt.datetime, uuid.UUID] | None) -> None:
    try:
        if position is None:
            redis_client().delete(key)
        else:
            redis_client().set(key, f"{position[0].isoformat()}|{position[1]}", ex=2 * 86400)
    except RedisError as error:
        logger.warning("cursor %s not saved: %s", key, error)


def _awaiting(provider: Provider, *, limit: int) -> list[tuple[str, str, dt.datetime]]:
    """(phone, provider id, sent_at) of the next batch of this provider's `sent` messages inside the
    polling window, continuing the lap (see AWAITING)."""
    now = timezone.now()
    key = POLL_CURSOR_KEY.format(provider=provider.name)
    after = _cursor_get(key)
    params: dict[str, Any] = {
        "provider": provider.name,
        "since": now - dt.timedelta(seconds=settings.RECEIPT_POLL_WINDOW_SECONDS),
        "until": now - dt.timedelta(seconds=settings.RECEIPT_POLL_DELAY_SECONDS),
        "batch": limit,
    }
    with connection.cursor() as cursor:
        cursor.execute(AWAITING, {**params, "after_at": after[0], "after_id": after[1]})
        rows = cursor.fetchall()
        if not rows and after != _START:  # the lap ended exactly at a batch's end: start the next one now
            cursor.execute(AWAITING, {**params, "after_at": _START[0], "after_id": _START[1]})
            rows = cursor.fetchall()
    _cursor_set(key, (rows[-1][1], rows[-1][0]) if len(rows) == limit else None)
    sent = _sent_by_id([mid for mid, _ in rows])
    return [(sent[mid][0], sent[mid][1], sent_at) for mid, sent_at in rows if mid in sent]


def receipts_poll_provider(provider: Provider, *, batch: int = POLL_BATCH) -> int:
    awaiting = _awaiting(provider, limit=batch)
    if not awaiting:
        return 0
    adapter = adapter_class(provider.kind)(provider.settings)
    since = min(sent_at for _, _, sent_at in awaiting)
    # An empty BizId (a send reconciled after a timeout) asks for the phone's day; OutId matches it.
    pairs = [(phone, pid) for phone, pid, _ in awaiting] if adapter.polls_by_message else None
    try:
        receipts = adapter.poll_receipts(since=since, phones_and_ids=pairs)
    except ProviderError as error:
        logger.warning("polling %s for receipts failed: %s", provider.name, error)
        return 0
    return len(receipts_record(provider=provider, receipts=receipts, source="poll"))


def receipts_poll(*, providers: Sequence[Provider] | None = None) -> int:
    """Every enabled pull provider, a batch each; returns how many messages moved."""
    moved = 0
    for provider in providers or Provider.objects.filter(enabled=True, kind__in=_kinds(lambda adapter: adapter.polls_receipts())):
        moved += receipts_poll_provider(provider)
    return moved


def receipts_flag_timeouts(*, batch: int = 1000) -> int:
    """A `sent` message without a receipt after RECEIPT_TIMEOUT_SECONDS gets one `receipt_timeout`
    event (the message stays `sent`: a late receipt may still come)."""
    now = timezone.now()
    window = dt.timedelta(seconds=settings.RECEIPT_POLL_WINDOW_SECONDS)
    after = _cursor_get(TIMEOUT_CURSOR_KEY)
    every = list(Provider.objects.values_list("name", "kind"))
    reporting = set(_kinds(lambda adapter: adapter.reports_delivery))
    providers = [name for name, kind in every if kind in reporting]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            DUE_PAST, {"providers": [name for name, _ in every], "before": now - max(LOOK_BACK, window)}
        )  # the rows past every window: gone first
        cursor.execute(
            LATE,
            {
                "providers": providers,
                "since": now - LOOK_BACK,
                "until": now - dt.timedelta(seconds=settings.RECEIPT_TIMEOUT_SECONDS),
                "after_at": after[0],
                "after_id": after[1],
                "batch": batch,
            },
        )
        rows = cursor.fetchall()
        sent = _sent_by_id([mid for mid, _, _ in rows])
        late = [(mid, sent[mid][2], provider) for mid, provider, _ in rows if mid in sent]
        detail = f"no delivery receipt within {settings.RECEIPT_TIMEOUT_SECONDS} s of sending"
        record_events([(mid, RECEIPT_TIMEOUT_EVENT, "", detail, provider, None) for mid, _, provider in late])
        cursor.execute(FLAGGED, {"ids": [mid for mid, _, _ in rows]})
    if rows:  # after the events are stored: a run that fails leaves its rows for the next one
        _cursor_set(TIMEOUT_CURSOR_KEY, (rows[-1][2], rows[-1][0]))
    for _, channel, provider in late:
        metrics.RECEIPT_TIMEOUTS.labels(channel, provider).inc()
    return len(late)
