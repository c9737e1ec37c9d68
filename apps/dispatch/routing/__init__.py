"""Which provider gets a message: routes by channel, destination, template ids and weight within the
best healthy priority group, by segment rules, delivery data and price (`routes`), the per-provider
circuit breaker (`health`) and the demotion on delivery data per provider and segment (`quality`)."""

from __future__ import annotations

from apps.dispatch.routing.health import Health
from apps.dispatch.routing.quality import demoted
from apps.dispatch.routing.routes import ROUTES, Route, SegmentView, choose, health, providers_changed, usable

__all__ = ["ROUTES", "Health", "Route", "SegmentView", "choose", "demoted", "health", "providers_changed", "usable"]
