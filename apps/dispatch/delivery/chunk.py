"""A worker's chunk of messages: read what is claimable, choose providers, claim, send."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from apps.dispatch.delivery.choice import choose_providers
from apps.dispatch.delivery.claims import claim_read, finish_delivered_inbox, read_claimable
from apps.dispatch.delivery.sending import send_through_providers
from apps.dispatch.lanes import YIELDING_LANES, critical_in_flight, yield_to_critical


def deliver_messages(message_ids: Sequence[uuid.UUID], *, lane: str = "") -> None:
    if lane in YIELDING_LANES:
        yield_to_critical()
    with critical_in_flight(lane == "critical"):
        candidates = read_claimable(message_ids)
        to_providers = [c for c in candidates if c.channel != "inbox"]
        choice = choose_providers(to_providers) if to_providers else None
        claimed = claim_read(candidates, choice.recorded() if choice else None)
        finish_delivered_inbox([c for c in claimed if c.channel == "inbox"])
        send_through_providers([c for c in claimed if c.channel != "inbox"], choice)
