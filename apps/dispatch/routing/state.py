"""`mc_provider_state{provider,segment}` for Prometheus: 0 ok, 1 demoted on delivery data (per
destination segment, routing/quality.py), 2 circuit open (the breaker is per provider: segment "*",
and every segment of that provider shows 2 as well, since none gets traffic).

Read at scrape time from the provider rows and Redis (registered in apps/dispatch/apps.py), not set
as a gauge by workers: every enabled provider has its `*` series from the first scrape, and the value
is what Redis holds now, whichever process serves /metrics."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from apps.dispatch.models import ANY_SEGMENT, Provider
from apps.dispatch.routing.quality import figures
from apps.dispatch.routing.routes import health

logger = logging.getLogger(__name__)

OK, DEMOTED, CIRCUIT_OPEN = 0, 1, 2


def provider_states() -> list[tuple[str, str, int]]:
    """(provider, segment, state) of every enabled provider (segment `*`: its circuit) and of every
    provider and segment the quality job judged."""
    providers = list(Provider.objects.filter(enabled=True).order_by("name").values_list("name", flat=True))
    try:
        circuits = health().circuits(providers)
    except RedisError:
        circuits = {}
    open_ = {name for name, state in circuits.items() if state != "closed"}
    states = [(name, ANY_SEGMENT, CIRCUIT_OPEN if name in open_ else OK) for name in providers]
    for (name, segment), verdict in sorted(figures().items()):
        if name in providers:
            value = CIRCUIT_OPEN if name in open_ else DEMOTED if verdict.state == "demoted" else OK
            states.append((name, segment, value))
    return states


class ProviderStateCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "mc_provider_state",
            "Provider state per destination segment: 0 ok, 1 demoted on delivery data, 2 circuit open (segment * is the "
            "provider's circuit).",
            labels=["provider", "segment"],
        )
        try:
            states = provider_states()
        except Exception:  # the database or Redis being down must not break the scrape
            logger.warning("provider states not read for /metrics", exc_info=True)
            states = []
        for provider, segment, value in states:
            family.add_metric([provider, segment], value)
        yield family
