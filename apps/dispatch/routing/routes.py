"""Which provider sends a message: weighted choice among the enabled providers of the channel's
best priority group whose circuit is not open; template-based providers only for templates that
have an approved id for them, providers with destinations (calling codes) only for numbers they
serve: mainland numbers through the domestic APIs, the rest through an international one.

Per destination segment (apps.dispatch.segments) on top of that (docs/quality.md, "Routing"):
- operators' rules: an excluded provider never gets the segment; pinned providers get all of it
  while their circuit lets them (whatever their group, weight or delivery figures);
- delivery data: a provider demoted for the segment (routing/quality.py) keeps a probe share
  (ROUTING_PROBE_PERCENT each) while a provider of its group that is not demoted takes the rest;
- cost: among the providers of equal weight that are equally healthy (all not demoted), where every
  one of them has a price for the segment, only the cheapest (those at the lowest price) get traffic.

Saving a provider, a rule or a price sets a new version token in Redis; a worker checks it once per
task (one GET) and re-reads the provider rows, rules and prices when it changed, so admin changes
apply to the next task, without a restart."""

from __future__ import annotations

import contextlib
import functools
import logging
import random
import threading
import time
import uuid
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from redis import Redis
from redis.exceptions import RedisError

from apps.dispatch.models import ANY_SEGMENT, Provider, ProviderPrice, ProviderSegmentRule, SegmentAction, serves
from apps.dispatch.providers import adapter_class
from apps.dispatch.providers.base import ProviderAdapter
from apps.dispatch.routing.health import Health
from messaging_center.broker import redis_client
from messaging_center.errors import DATABASE_DOWN

logger = logging.getLogger(__name__)

RELOAD_SECONDS = 60.0  # re-read anyway, in case a version bump was lost with Redis
VERSION_KEY = "mc:providers:version"


@dataclass(frozen=True)
class Route:
    name: str
    kind: str
    channel: str
    weight: int
    priority_group: int
    rate_limit: int
    adapter: ProviderAdapter
    destinations: tuple[str, ...] = ()

    @property
    def template_based(self) -> bool:
        return self.adapter.template_based

    def serves(self, address: str) -> bool:
        return serves(self.destinations, address)


class _Routes:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded_at = 0.0
        self._version: bytes | str | None = None
        self._by_channel: dict[str, list[Route]] = {}
        self._by_name: dict[str, Route] = {}
        self._adapters: dict[tuple[str, str], ProviderAdapter] = {}
        self._rules: dict[str, dict[str, str]] = {}  # segment → provider → pin | exclude
        self._prices: dict[tuple[str, str], int] = {}  # (provider, segment or *) → micro-units per SMS segment

    def refresh(self) -> None:
        """Re-reads the provider rows if they changed (or were last read RELOAD_SECONDS ago)."""
        with self._lock:
            try:
                version = redis_client().get(VERSION_KEY)
            except RedisError:
                version = self._version
            if version != self._version or time.monotonic() - self._loaded_at >= RELOAD_SECONDS or not self._loaded_at:
                try:
                    self._load()
                except DATABASE_DOWN:
                    if not self._loaded_at:
                        raise
                    # The database is down: the spool delivers with the providers as last read.
                    logger.warning("providers not re-read: the database is unreachable")
                    return
                self._version = version

    def for_channel(self, channel: str) -> list[Route]:
        if not self._loaded_at:
            self.refresh()
        return self._by_channel.get(channel, [])

    def named(self, name: str) -> Route | None:
        if not self._loaded_at:
            self.refresh()
        return self._by_name.get(name)

    def _load(self) -> None:
        by_channel: dict[str, list[Route]] = {}
        adapters: dict[tuple[str, str], ProviderAdapter] = {}
        for provider in Provider.objects.filter(enabled=True):
            version = (provider.name, provider.updated_at.isoformat())
            adapter = self._adapters.get(version) or adapter_class(provider.kind)(provider.settings)
            adapters[version] = adapter
            by_channel.setdefault(provider.channel, []).append(
                Route(
                    provider.name,
                    provider.kind,
                    provider.channel,
                    provider.weight,
                    provider.priority_group,
                    provider.rate_limit,
                    adapter,
                    provider.destination_prefixes,
                )
            )
        rules: dict[str, dict[str, str]] = {}
        for segment, name, action in ProviderSegmentRule.objects.values_list("segment", "provider__name", "action"):
            rules.setdefault(segment, {})[name] = action
        self._rules = rules
        prices = ProviderPrice.objects.values_list("provider__name", "segment", "price")
        self._prices = {(name, segment): price for name, segment, price in prices}
        self._by_channel, self._adapters, self._loaded_at = by_channel, adapters, time.monotonic()
        self._by_name = {route.name: route for routes in by_channel.values() for route in routes}
        logger.info("providers: %s", ", ".join(sorted(self._by_name)) or "none")

    def invalidate(self) -> None:
        self._loaded_at = 0.0

    def price(self, provider: str, segment: str) -> int | None:
        """Micro-units per SMS segment that `provider` charges to `segment` (its `*` price otherwise)."""
        if not self._loaded_at:
            self.refresh()
        found = self._prices.get((provider, segment))
        return found if found is not None else self._prices.get((provider, ANY_SEGMENT))

    def segment_view(self, segment: str, demoted: Container[tuple[str, str]]) -> SegmentView:
        """What routing knows of `segment`: its rules, which providers are demoted for it, their prices."""
        if not self._loaded_at:
            self.refresh()
        rules = self._rules.get(segment, {})
        return SegmentView(
            segment,
            pinned=frozenset(name for name, action in rules.items() if action == SegmentAction.PIN),
            excluded=frozenset(name for name, action in rules.items() if action == SegmentAction.EXCLUDE),
            demoted=frozenset(name for name in self._by_name if (name, segment) in demoted),
            prices={name: price for name in self._by_name if (price := self.price(name, segment)) is not None},
            probe_share=settings.ROUTING_PROBE_PERCENT / 100,
        )


@dataclass(frozen=True)
class SegmentView:
    segment: str
    pinned: frozenset[str] = frozenset()
    excluded: frozenset[str] = frozenset()
    demoted: frozenset[str] = frozenset()
    prices: Mapping[str, int] = field(default_factory=dict)
    probe_share: float = 0.03


def providers_changed() -> None:
    """Tells every worker to re-read the provider rows."""
    # A fresh token rather than a counter: a counter restarts at 1 after Redis loses it, and a
    # worker that had seen 1 would never notice the change.
    with contextlib.suppress(RedisError):  # without Redis they re-read within RELOAD_SECONDS anyway
        redis_client().set(VERSION_KEY, uuid.uuid4().hex)
    ROUTES.invalidate()


ROUTES = _Routes()


@functools.cache
def _health(client: Redis) -> Health:
    return Health(client)


def health() -> Health:
    """Per Redis client, so that its scripts are registered once, not on every chunk."""
    return _health(redis_client())


def usable(routes: Iterable[Route], provider_template_ids: Mapping[str, Any], address: str) -> list[Route]:
    """The routes that can send this message: a template-based provider only with an approved id for
    the template, a provider with destinations only to numbers it serves."""
    return [r for r in routes if (not r.template_based or provider_template_ids.get(r.kind)) and r.serves(address)]


def choose(
    candidates: list[Route], *, allowed: set[str], avoid: Sequence[str] = (), segment: SegmentView | None = None
) -> Route | None:
    """Weighted pick from the best priority group with an allowed provider (the pinned ones first, if
    any is allowed), by the segment's delivery data and prices (the module's docstring). `avoid`: the
    providers that failed this message, the latest first: a provider not tried yet is preferred, then
    any but the latest, then any (a retry fails over through every provider before it comes back).
    Excluded providers are the caller's to leave out (`usable`)."""
    view = segment or SegmentView("")
    for excluded in (set(avoid), set(avoid[:1]), set()):
        pool = [r for r in candidates if r.name in allowed and r.name not in excluded]
        if not pool:
            continue
        pinned = [r for r in pool if r.name in view.pinned]
        if pinned:  # the operator's choice: no group, demotion or price decides among others
            return _weighted(pinned)
        best = min(r.priority_group for r in pool)
        group = [r for r in pool if r.priority_group == best]
        healthy = [r for r in group if r.name not in view.demoted]
        probes = [r for r in group if r.name in view.demoted]
        if not healthy:  # all demoted: none is better than another
            healthy, probes = probes, []
        if probes and random.random() < view.probe_share * len(probes):
            return random.choice(probes)
        return _weighted(cheapest_of_ties(healthy, view.prices))
    return None


def _weighted(routes: Sequence[Route]) -> Route:
    return random.choices(routes, weights=[max(1, r.weight) for r in routes])[0]


def cheapest_of_ties(routes: Sequence[Route], prices: Mapping[str, int]) -> list[Route]:
    """The routes without those beaten on price by a route of the same weight: among routes of equal
    weight that all have a price, only the cheapest stay (all of them at a tie on price too). Where one
    of them has no price, they stay as they are: an unknown price is not a cheap one."""
    by_weight: dict[int, list[Route]] = {}
    for route in routes:
        by_weight.setdefault(max(1, route.weight), []).append(route)
    kept: list[Route] = []
    for tied in by_weight.values():
        if len(tied) > 1 and all(r.name in prices for r in tied):
            lowest = min(prices[r.name] for r in tied)
            tied = [r for r in tied if prices[r.name] == lowest]
        kept.extend(tied)
    return kept
