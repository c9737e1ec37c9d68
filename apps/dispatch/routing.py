"""Which provider sends a message: weighted choice among the enabled providers of the channel's
best priority group whose circuit is not open; template-based providers only for templates that
have an approved id for them. Provider rows are re-read every few seconds, so admin changes apply
without a restart."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from apps.dispatch.health import Health
from apps.dispatch.models import Provider
from apps.dispatch.providers import adapter_class
from apps.dispatch.providers.base import ProviderAdapter
from messaging_center.broker import redis_client

REFRESH_SECONDS = 5.0


@dataclass(frozen=True)
class Route:
    name: str
    kind: str
    channel: str
    weight: int
    priority_group: int
    rate_limit: int
    adapter: ProviderAdapter

    @property
    def template_based(self) -> bool:
        return self.adapter.template_based


class _Routes:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded_at = 0.0
        self._by_channel: dict[str, list[Route]] = {}
        self._adapters: dict[tuple[str, str], ProviderAdapter] = {}

    def for_channel(self, channel: str) -> list[Route]:
        if time.monotonic() - self._loaded_at > REFRESH_SECONDS:
            with self._lock:
                if time.monotonic() - self._loaded_at > REFRESH_SECONDS:
                    self._load()
        return self._by_channel.get(channel, [])

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
                )
            )
        self._by_channel, self._adapters, self._loaded_at = by_channel, adapters, time.monotonic()

    def invalidate(self) -> None:
        self._loaded_at = 0.0


ROUTES = _Routes()


def health() -> Health:
    return Health(redis_client())


def usable(routes: Iterable[Route], provider_template_ids: Mapping[str, Any]) -> list[Route]:
    return [r for r in routes if not r.template_based or provider_template_ids.get(r.kind)]


def choose(candidates: list[Route], *, allowed: set[str], avoid: str = "") -> Route | None:
    """Weighted pick from the best priority group with an allowed provider; `avoid` (the provider
    that just failed this message) is used only when nothing else is left."""
    for exclude_avoided in (True, False):
        pool = [r for r in candidates if r.name in allowed and not (exclude_avoided and r.name == avoid)]
        if not pool:
            continue
        best = min(r.priority_group for r in pool)
        group = [r for r in pool if r.priority_group == best]
        return random.choices(group, weights=[max(1, r.weight) for r in group])[0]
    return None
