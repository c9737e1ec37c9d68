"""Choosing providers for claimed messages and grouping them into provider calls."""

from __future__ import annotations

import uuid
from collections.abc import Container, Sequence
from dataclasses import dataclass, field

from apps.dispatch import routing
from apps.dispatch.delivery import holds
from apps.dispatch.delivery.claims import Claimed
from apps.dispatch.events import failed_providers
from apps.dispatch.lanes import call_deadline
from apps.dispatch.providers.base import ProviderError, SendResult
from apps.templates.models import MessageTemplate
from messaging_center import ids
from messaging_center.ttl_cache import TtlCache


@dataclass
class Attempt:
    message: Claimed
    route: routing.Route | None
    outcome: SendResult | ProviderError | None = None
    dead_tokens: list[str] = field(default_factory=list)
    # Said in the event that ends the attempt after the detail (a hedged send: which call won).
    note: str = ""
    # Seconds before the next try, where reconciliation decided it (a held message: holds.py).
    wait: float | None = None


# A batch call's reference starts so; it never looks like a provider's own message id.
BATCH_REFERENCE = "mcb-"


# Templates by id, for routing (a template's provider template ids): a chunk of messages costs no
# query for them. A template saved in this process clears it (apps.dispatch.apps); others within 5 s,
# as the send path's own cache.
TEMPLATES_BY_ID: TtlCache[MessageTemplate] = TtlCache(seconds=5)


@dataclass
class Choice:
    """Providers chosen for messages before their claim, which records them (see claims.claim_read):
    each message's attempt (a route, or the error that routing found) and the calls that carry them."""

    templates: dict[uuid.UUID, MessageTemplate]
    health: routing.Health
    attempts: list[Attempt] = field(default_factory=list)
    parts: list[tuple[list[Attempt], str]] = field(default_factory=list)
    singles: list[Attempt] = field(default_factory=list)

    # (provider, segment) pairs demoted on delivery data (routing.quality), read once per chunk.
    demoted: set[tuple[str, str]] = field(default_factory=set)

    @classmethod
    def start(cls, messages: Sequence[Claimed]) -> Choice:
        routing.ROUTES.refresh()
        choice = cls(templates={}, health=routing.health(), demoted=routing.demoted())
        choice.add_templates(messages)
        return choice

    def add_templates(self, messages: Sequence[Claimed]) -> None:
        wanted = {c.template_id for c in messages if c.template_id and c.template_id not in self.templates}
        missing = set()
        for template_id in wanted:
            template = TEMPLATES_BY_ID.get(template_id)
            if template is None:
                missing.add(template_id)
            else:
                self.templates[template_id] = template
        if missing:
            for template in MessageTemplate.objects.filter(id__in=missing):
                self.templates[template.id] = TEMPLATES_BY_ID.put(template.id, template)

    def recorded(self) -> dict[uuid.UUID, tuple[str, str]]:
        """Message id → (provider, batch reference) where a crash mid-send could be settled before a
        resend: the provider can be asked, or its receipt waited for (holds.settles). Others are sent
        again anyway after a crash."""
        references = {a.message.id: reference for part, reference in self.parts for a in part}
        return {
            a.message.id: (a.route.name, references.get(a.message.id, ""))
            for a in self.attempts
            if a.outcome is None and a.route is not None and holds.settles(a.route.adapter)
        }

    def only(self, claimed: Sequence[Claimed]) -> Choice:
        """The choice for the messages the claim won (a message claimed elsewhere is left out), each
        attempt now about the claimed message (which knows its claim's time)."""
        won = {c.id: c for c in claimed}
        for attempt in self.attempts:
            attempt.message = won.get(attempt.message.id, attempt.message)
        return Choice(
            self.templates,
            self.health,
            [a for a in self.attempts if a.message.id in won],
            parts_of(self.parts, won),
            [a for a in self.singles if a.message.id in won],
            self.demoted,
        )

    def extend(self, other: Choice) -> None:
        self.attempts.extend(other.attempts)
        self.parts.extend(other.parts)
        self.singles.extend(other.singles)


def parts_of(parts: Sequence[tuple[list[Attempt], str]], kept: Container[uuid.UUID]) -> list[tuple[list[Attempt], str]]:
    """The batch calls with only the attempts of the kept messages; calls left empty are dropped."""
    trimmed = [([a for a in part if a.message.id in kept], reference) for part, reference in parts]
    return [(part, reference) for part, reference in trimmed if part]


def usable_routes(message: Claimed, choice: Choice) -> list[routing.Route]:
    """The enabled providers that serve the message's address with its template."""
    template = choice.templates.get(message.template_id) if message.template_id else None
    return routing.usable(
        routing.ROUTES.for_channel(message.channel), (template.provider_template_ids or {}) if template else {}, message.address
    )


def route_messages(messages: Sequence[Claimed], choice: Choice) -> list[Attempt]:
    allowed: dict[str, set[str]] = {}
    slow: dict[str, set[str]] = {}
    hurried = any(call_deadline(m.priority) for m in messages)
    attempts = []
    # Retries fail over through every provider that has not failed the message yet (one query, for
    # third attempts and later only: a second attempt avoids the provider of the first).
    failed = failed_providers([m.id for m in messages if m.attempt > 2])
    views: dict[str, routing.SegmentView] = {}
    for message in messages:
        view = views.get(message.segment) or views.setdefault(
            message.segment, routing.ROUTES.segment_view(message.segment, choice.demoted)
        )
        serving = usable_routes(message, choice)
        routes = [r for r in serving if r.name not in view.excluded]
        if not routes:
            why = (
                f"Every provider that can send this is excluded for segment {message.segment} by an operator's rule."
                if serving
                else f"No enabled {message.channel} provider can send this template to this address."
            )
            attempts.append(Attempt(message, None, ProviderError("no_provider", why, permanent=True)))
            continue
        if message.channel not in allowed:
            names = [r.name for r in routing.ROUTES.for_channel(message.channel)]
            allowed[message.channel] = choice.health.allowed(names)
            slow[message.channel] = choice.health.slow(names) if hurried else set()
        avoid = [message.previous_provider] if message.attempt > 1 and message.previous_provider else []
        avoid += sorted(failed.get(message.id, set()) - set(avoid))
        if call_deadline(message.priority):
            avoid += sorted(slow[message.channel] - set(avoid))  # hedged away from lately: not waited for again
        route = routing.choose(routes, allowed=allowed[message.channel], avoid=avoid, segment=view)
        if route is None:
            attempts.append(
                Attempt(message, None, ProviderError("providers_unhealthy", "Every provider's circuit is open.", permanent=False))
            )
            continue
        attempts.append(Attempt(message, route))
    return attempts


def group_into_calls(choice: Choice, attempts: list[Attempt]) -> None:
    """Adds the attempts to the choice: routed ones to a provider's batch call or a single send."""
    choice.attempts.extend(attempts)
    batches: dict[str, tuple[routing.Route, list[Attempt]]] = {}
    for attempt in attempts:
        route = attempt.route
        if attempt.outcome is not None or route is None:
            continue
        # A provider-side rate limit is taken per message, so those go one by one.
        if route.adapter.sends_batches and not route.rate_limit:
            batches.setdefault(route.name, (route, []))[1].append(attempt)
        else:
            choice.singles.append(attempt)
    for route, group in batches.values():
        size = route.adapter.max_batch
        for start in range(0, len(group), size):
            part = group[start : start + size]
            askable = len(part) > 1 and route.adapter.can_be_asked
            choice.parts.append((part, f"{BATCH_REFERENCE}{ids.uuid7().hex}" if askable else ""))


def choose_providers(messages: Sequence[Claimed]) -> Choice:
    """Before the claim: providers for the messages that need no reconciliation first (a message
    whose earlier attempt may have reached its provider is routed after asking, see below)."""
    choice = Choice.start(messages)
    group_into_calls(choice, route_messages([m for m in messages if not m.needs_reconcile], choice))
    return choice
