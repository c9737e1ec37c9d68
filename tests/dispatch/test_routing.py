"""Provider choice for a retry: every provider that has not failed the message yet comes first."""

from __future__ import annotations

from collections.abc import Sequence

from apps.dispatch.providers import adapter_class
from apps.dispatch.routing import Route, choose


def _route(name: str, weight: int = 100, group: int = 1) -> Route:
    return Route(name, "twilio", "sms", weight, group, 0, adapter_class("twilio")({}))


def _chosen(routes: list[Route], allowed: set[str], avoid: Sequence[str] = (), times: int = 50) -> set[str]:
    names = set()
    for _ in range(times):
        route = choose(routes, allowed=allowed, avoid=avoid)
        names.add(route.name if route else "")
    return names


def test_a_retry_avoids_every_provider_that_failed_the_message() -> None:
    routes = [_route("a", weight=1_000_000), _route("b", weight=1_000), _route("c", weight=1)]
    assert _chosen(routes, {"a", "b", "c"}, avoid=["b", "a"]) == {"c"}


def test_when_every_provider_failed_any_but_the_latest_is_tried_then_any() -> None:
    assert _chosen([_route("a"), _route("b")], {"a", "b"}, avoid=["b", "a"]) == {"a"}
    assert _chosen([_route("a")], {"a"}, avoid=["a"]) == {"a"}


def test_the_next_priority_group_takes_over_from_a_failed_or_unhealthy_one() -> None:
    routes = [_route("a"), _route("backup", group=2)]
    assert _chosen(routes, {"a", "backup"}) == {"a"}
    assert _chosen(routes, {"a", "backup"}, avoid=["a"]) == {"backup"}
    assert _chosen(routes, {"backup"}) == {"backup"}
    assert _chosen(routes, set()) == {""}
