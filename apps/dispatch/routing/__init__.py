"""Which provider gets a message: routes by channel, destination, template ids and weight within the
best healthy priority group (`routes`), and the per-provider circuit breaker (`health`)."""

from __future__ import annotations

from apps.dispatch.routing.health import Health
from apps.dispatch.routing.routes import ROUTES, Route, choose, health, providers_changed, usable

__all__ = ["ROUTES", "Health", "Route", "choose", "health", "providers_changed", "usable"]
