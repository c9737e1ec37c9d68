"""Asking a provider whether it already has a message whose earlier attempt's outcome is unknown, and
holding the message where nothing can settle that yet (holds.py)."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable, Sequence

from django.utils import timezone

from apps.dispatch import routing, transitions
from apps.dispatch.delivery import holds
from apps.dispatch.delivery.choice import BATCH_REFERENCE, Attempt, Choice
from apps.dispatch.delivery.claims import Claimed
from apps.dispatch.delivery.finishing import attempt_rows, update_ids
from apps.dispatch.delivery.pool import executor
from apps.dispatch.events import OUTCOME_UNKNOWN, last_retry_waits
from apps.dispatch.providers.base import LookupUnsupported, OutboundMessage, ProviderError, SendResult
from messaging_center import ids

logger = logging.getLogger(__name__)

# The message as the earlier attempt sent it (rendered, the code unsealed), for `lookup_sent`.
Outbound = Callable[[Claimed, routing.Route, str], OutboundMessage]
# Clocks differ: a provider may file a message a little before we made it.
CLOCK_MARGIN = dt.timedelta(minutes=1)
LOOKUP_REACH = dt.timedelta(days=1)


def reconcile(claimed: Sequence[Claimed], outbound: Outbound) -> list[Attempt]:
    """Asks the provider of an attempt whose outcome is unknown whether it already has the message.
    Returns the settled attempts: found → sent without sending again; still unknown (the provider
    cannot be asked, asking failed, or it lists only reported messages and has none) → held until
    its hold is over. The rest are sent again by the caller: the provider does not have them, or
    their hold is over."""
    asks: list[tuple[Claimed, routing.Route]] = []
    for message in claimed:
        route = routing.ROUTES.named(message.previous_provider)
        if route is not None:
            asks.append((message, route))
    if not asks:
        return []
    doubt_since = _doubt_since([m for m, _ in asks])

    def ask(message: Claimed, route: routing.Route) -> SendResult | str | None:
        """The provider's answer: its result, None for "not there", or why it is still unknown."""
        adapter = route.adapter
        reference = message.previous_reference if message.previous_reference.startswith(BATCH_REFERENCE) else ""
        since = max(ids.uuid7_time(message.id) - CLOCK_MARGIN, timezone.now() - LOOKUP_REACH)
        try:
            found = adapter.lookup_sent(outbound(message, route, reference), since=since)
        except LookupUnsupported:
            return f"{route.name} cannot be asked whether it has it"
        except ProviderError as error:
            return f"asking {route.name} whether it has it failed ({error.code}: {error.detail})"
        if found is None and not adapter.lookup_sees_unreported:
            return f"{route.name} has no report of it yet"
        return found

    futures = [(message, route, executor().submit(ask, message, route)) for message, route in asks]
    now = timezone.now()
    settled = []
    for message, route, future in futures:
        answer = future.result()
        if isinstance(answer, SendResult):
            settled.append(Attempt(message, route, answer))
        elif isinstance(answer, str) and holds.settles(route.adapter):
            left = holds.remaining(message.category, doubt_since.get(message.id, now), now)
            if left > 0:
                error = ProviderError(
                    OUTCOME_UNKNOWN, f"{answer}; held {left:.0f} s more before sending again", permanent=False, ambiguous=True
                )
                settled.append(Attempt(message, route, error, wait=holds.next_look(message.category, left, route.adapter)))
    return settled


def _doubt_since(claimed: Sequence[Claimed]) -> dict[uuid.UUID, dt.datetime]:
    """A message claimed straight from a dead worker's `sending` doubts from that lease's end; others
    from the event that ended their doubtful attempt."""
    since = {c.id: c.lost_lease for c in claimed if c.lost_lease is not None}
    return since | last_retry_waits([c.id for c in claimed if c.id not in since])


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
