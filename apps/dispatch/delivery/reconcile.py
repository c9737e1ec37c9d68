"""Asking a provider whether it already has a message whose earlier attempt's outcome is unknown."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from django.utils import timezone

from apps.dispatch import routing, transitions
from apps.dispatch.delivery.choice import BATCH_REFERENCE, Attempt, Choice
from apps.dispatch.delivery.claims import Claimed
from apps.dispatch.delivery.finishing import attempt_rows, update_ids
from apps.dispatch.delivery.pool import executor
from apps.dispatch.providers.base import LookupUnsupported, ProviderError, SendResult
from messaging_center import ids


def reconcile(claimed: Sequence[Claimed]) -> list[Attempt]:
    """Asks the provider of an attempt whose outcome is unknown whether it already has the message.
    Returns the settled attempts: found → sent without sending again; the lookup failing → wait and
    ask again. Messages whose provider says no, or cannot be asked, are sent again by the caller."""
    asks: list[tuple[Claimed, routing.Route]] = []
    for message in claimed:
        route = routing.ROUTES.named(message.previous_provider)
        if route is not None:
            asks.append((message, route))
    since = timezone.now() - dt.timedelta(days=1)

    def ask(message: Claimed, route: routing.Route) -> SendResult | ProviderError | None:
        try:
            return route.adapter.lookup_sent(
                message_id=ids.encode("msg", message.id),
                to=message.address,
                since=since,
                batch_reference=message.previous_reference if message.previous_reference.startswith(BATCH_REFERENCE) else "",
            )
        except LookupUnsupported:
            return None
        except ProviderError as error:
            return ProviderError(
                error.code, f"could not ask whether it was sent: {error.detail}", permanent=False, ambiguous=True
            )

    futures = [(message, route, executor().submit(ask, message, route)) for message, route in asks]
    settled = []
    for message, route, future in futures:
        outcome = future.result()
        if outcome is not None:
            settled.append(Attempt(message, route, outcome))
    return settled


def record_chosen_providers(choice: Choice) -> None:
    """Before sending messages claimed without a choice (those whose earlier attempt had to be asked
    about first): which provider gets each message, and the reference of the batch call that carries
    it, so that after a crash mid-send the reconciliation knows whom to ask, and for what."""
    recorded = choice.recorded()
    if recorded:
        attempts = [a for a in choice.attempts if a.message.id in recorded]
        update_ids(
            transitions.RECORD_PROVIDER,
            attempt_rows(attempts, reference=[recorded[a.message.id][1] for a in attempts]),
        )
