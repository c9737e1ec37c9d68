"""How long a message whose last attempt's outcome is unknown waits before it may be sent again.

A timeout after the request left us may mean the provider has the message. Where the provider
cannot settle that (it has no query API, the query fails, or it lists only reported messages and
has none yet), the message is held before any resend, by category (issue #22): a verification code
for a few seconds — a second code is harmless, a late one is not — and any other message for the
receipt window, in which a receipt from the provider settles it (receipts move `retry_wait` to
`delivered`/`undelivered`, and the held retry then finds nothing to do)."""

from __future__ import annotations

import datetime as dt

from django.conf import settings

from apps.dispatch.providers.base import ProviderAdapter
from messaging_center.vocabulary import Category

# A provider that can be asked is asked this long after the ambiguous outcome (a receipt may settle it first).
ASK_AFTER_SECONDS = 10.0
ASKS_PER_HOLD = 5


def hold(category: str) -> dt.timedelta:
    """How long after the ambiguous outcome a message of `category` may be sent again unsettled."""
    if category == Category.VERIFICATION:
        return dt.timedelta(seconds=settings.AMBIGUOUS_RESEND_AFTER_VERIFICATION_S)
    return dt.timedelta(seconds=settings.RECEIPT_TIMEOUT_SECONDS)


def settles(adapter: ProviderAdapter) -> bool:
    """Whether waiting can settle an unknown outcome at this provider: it can be asked, or it reports
    delivery. Elsewhere (e-mail, push) nothing ever will, and the message goes again after ASK_AFTER_SECONDS."""
    return adapter.can_be_asked or adapter.reports_delivery


def first_wait(category: str, adapter: ProviderAdapter | None) -> float:
    """Seconds from an ambiguous outcome to the next look at the message: the ask, or the end of its hold."""
    if adapter is None or not settles(adapter):
        return ASK_AFTER_SECONDS
    held = hold(category).total_seconds()
    return min(ASK_AFTER_SECONDS, held) if adapter.can_be_asked else held


def next_look(category: str, left: float, adapter: ProviderAdapter) -> float:
    """Seconds until a held message is looked at again: a provider that can be asked is asked again
    several times in the hold (a provider that failed or hung on one question may answer the next;
    five asks at most, each claim counting as an attempt), one that cannot be asked waits it out."""
    if not adapter.can_be_asked:
        return left
    return min(left, max(ASK_AFTER_SECONDS, hold(category).total_seconds() / ASKS_PER_HOLD))


def remaining(category: str, doubt_since: dt.datetime, now: dt.datetime) -> float:
    """Seconds left of the hold that began at `doubt_since` (0 when it has passed)."""
    return max(0.0, (doubt_since + hold(category) - now).total_seconds())
