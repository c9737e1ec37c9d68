"""Beat jobs for receipts that are not pushed: polling the providers' query APIs, and flagging
messages whose receipt never came."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence

from django.conf import settings
from django.db import connection
from django.utils import timezone

from apps.dispatch.events import record_events
from apps.dispatch.models import Provider
from apps.dispatch.providers import ADAPTERS, adapter_class
from apps.dispatch.providers.base import ProviderAdapter, ProviderError
from apps.receipts.matching import receipts_record
from messaging_center import metrics

logger = logging.getLogger(__name__)


def _kinds(has: Callable[[type[ProviderAdapter]], bool]) -> list[str]:
    return sorted(kind for kind in ADAPTERS if has(adapter_class(kind)))


POLL_BATCH = 200
RECEIPT_TIMEOUT_EVENT = "receipt_timeout"


def _awaiting(provider: Provider, *, limit: int) -> list[tuple[str, str, dt.datetime]]:
    """(phone, provider id, sent_at) of this provider's `sent` messages inside the polling window,
    oldest first."""
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT address, provider_message_id, sent_at FROM dispatch_message
            WHERE status = 'sent' AND provider = %s AND sent_at BETWEEN %s AND %s
            ORDER BY sent_at LIMIT %s
            """,
            [
                provider.name,
                now - dt.timedelta(seconds=settings.RECEIPT_POLL_WINDOW_SECONDS),
                now - dt.timedelta(seconds=settings.RECEIPT_POLL_DELAY_SECONDS),
                limit,
            ],
        )
        return cursor.fetchall()


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
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT m.id, m.channel, m.provider FROM dispatch_message m
            WHERE m.status = 'sent' AND m.sent_at BETWEEN %s AND %s
              AND m.provider IN (SELECT name FROM dispatch_provider WHERE kind = ANY(%s))
              AND NOT EXISTS (SELECT 1 FROM dispatch_messageevent e WHERE e.message_id = m.id AND e.status = %s)
            ORDER BY m.sent_at LIMIT %s
            """,
            [
                now - dt.timedelta(days=1),
                now - dt.timedelta(seconds=settings.RECEIPT_TIMEOUT_SECONDS),
                _kinds(lambda adapter: adapter.reports_delivery),
                RECEIPT_TIMEOUT_EVENT,
                batch,
            ],
        )
        late = cursor.fetchall()
    detail = f"no delivery receipt within {settings.RECEIPT_TIMEOUT_SECONDS} s of sending"
    record_events([(mid, RECEIPT_TIMEOUT_EVENT, "", detail, provider, None) for mid, _, provider in late])
    for _, channel, provider in late:
        metrics.RECEIPT_TIMEOUTS.labels(channel, provider).inc()
    return len(late)
