"""Delivering spooled verification codes without the database: claim in Redis, route among the
providers as last read, send through the same adapters and outbound message as the delivery engine,
record the outcome and its event in the spool."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from apps.dispatch import routing
from apps.dispatch.delivery.claims import Claimed
from apps.dispatch.delivery.sending import outbound_message, send_one
from apps.dispatch.leases import sending_lease
from apps.dispatch.models import Status
from apps.dispatch.providers.base import ProviderError, SendResult
from apps.dispatch.segments import segment_of
from apps.dispatch.spool import store
from apps.templates.models import MessageTemplate
from messaging_center import ids, metrics
from messaging_center.backoff import backoff_seconds

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 30.0


def _when(text: str) -> dt.datetime:
    value = parse_datetime(text)
    assert value is not None  # written by accept/rows from an aware datetime
    return value


def _claimed(id_hex: str, attempt: int, data: dict[str, Any], tried: list[str]) -> Claimed:
    row = data["row"]
    return Claimed(
        id=uuid.UUID(id_hex),
        channel=row["channel"],
        address=row["address"],
        attempt=attempt,
        template_id=uuid.UUID(row["template_id"]),
        content=row["content"],
        title=row["title"],
        params=row["params"],
        previous_provider=tried[0] if tried else "",
        priority=row["priority"],
        category=row["category"],
        expires_at=_when(row["expires_at"]),
        needs_reconcile=False,
        user_id=row["user_id"],
        account_id=uuid.UUID(row["account_id"]),
        previous_reference="",
        segment=row.get("segment") or segment_of(row["channel"], row["address"]),
        claimed_at=timezone.now(),
    )


def _template(data: dict[str, Any]) -> MessageTemplate:
    """The template as the web process had it when it spooled the message (no query)."""
    return MessageTemplate(**json.loads(data["template"]))


def deliver_spooled(id_hexes: Sequence[str]) -> float:
    """Sends what is claimable of these spooled messages; returns in how many seconds the task should
    run again for the rest (a retry not yet due, a lease held by a worker that may have died), 0 if none."""
    routing.ROUTES.refresh()  # before the claim: a process that never read the providers claims nothing
    claimed, later = store.claim(id_hexes, lease_seconds=sending_lease().total_seconds())
    health = routing.health()
    tally: dict[str, list[int]] = {}
    for id_hex, attempt, data, tried in claimed:
        message = _claimed(id_hex, attempt, data, tried)
        template = _template(data)
        route, outcome = _send(message, template, tried, health)
        if route is not None:
            tally.setdefault(route.name, [0, 0])[0 if isinstance(outcome, SendResult) else 1] += 1
        retry_in = _finish(message, route, outcome, tried)
        if retry_in:
            later = min(later, time.time() + retry_in) if later else time.time() + retry_in
    health.record(tally)
    return max(0.1, later - time.time()) if later else 0.0


def _send(
    message: Claimed, template: MessageTemplate, tried: list[str], health: routing.Health
) -> tuple[routing.Route | None, SendResult | ProviderError]:
    channel_routes = routing.ROUTES.for_channel(message.channel)
    routes = routing.usable(channel_routes, template.provider_template_ids or {}, message.address)
    if not routes:
        return None, ProviderError("no_provider", f"No enabled {message.channel} provider can send this.", permanent=True)
    route = routing.choose(routes, allowed=health.allowed([r.name for r in channel_routes]), avoid=tried)
    if route is None:
        return None, ProviderError("providers_unhealthy", "Every provider's circuit is open.", permanent=False)
    return route, send_one(route, outbound_message(message, template, route))


def _finish(message: Claimed, route: routing.Route | None, outcome: SendResult | ProviderError, tried: list[str]) -> float:
    """Records the attempt's outcome in the spool; returns the retry's countdown (0: none)."""
    now = timezone.now()
    provider = route.name if route else ""
    event: dict[str, Any] = {
        "id": str(ids.uuid7()),
        "message_id": str(message.id),
        "at": now.isoformat(),
        "provider": provider,
        "attempt": message.attempt,
        "started_at": message.claimed_at.isoformat() if message.claimed_at else None,
    }
    fields: dict[str, str | int | float] = {"provider": provider, "tried": ",".join(([provider] if provider else []) + tried)}
    countdown = 0.0
    if isinstance(outcome, SendResult):
        status = Status.SENT
        event |= {"status": status, "code": "", "detail": f"accepted by {provider} (from the spool: the database was down)"}
        fields |= {"provider_message_id": outcome.provider_message_id, "sent_at": now.isoformat(), "code": "", "detail": ""}
    else:
        countdown = backoff_seconds(message.attempt, base=BACKOFF_BASE_SECONDS, cap=BACKOFF_CAP_SECONDS, jitter=True)
        another_provider = outcome.provider_fault and len(routing.ROUTES.for_channel(message.channel)) > 1
        if (outcome.permanent and not another_provider) or message.attempt >= MAX_ATTEMPTS:
            status, countdown = Status.FAILED, 0.0
        elif now + dt.timedelta(seconds=countdown) >= message.expires_at:
            status, countdown = Status.EXPIRED, 0.0
        else:
            status = Status.RETRY_WAIT
            fields["due"] = time.time() + countdown
        detail = f"{provider}: {outcome.detail}" if provider else outcome.detail
        event |= {"status": status, "code": outcome.code, "detail": detail}
        fields |= {"code": outcome.code, "detail": detail}
    fields["status"] = status
    if not store.finish(message.id.hex, message.attempt, event, fields):
        return 0.0  # claimed again elsewhere after this attempt's lease ran out, or taken by the replay
    if status == Status.SENT:
        metrics.MESSAGES_SENT.labels(message.channel, provider).inc()
    return countdown
