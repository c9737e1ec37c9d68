"""Each provider's state now, as rows of (provider, segment, state): the circuit breaker and the
rolling submit success rate of apps/dispatch/routing/health.py (segment `*`: the breaker is per
provider), and a provider marked slow by a hedge. Demotion per destination segment (#23, routing on
delivery data) adds its rows here, one per provider and segment it judged, with the same fields: the
dashboard's table shows whatever rows this module returns."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from redis.exceptions import RedisError

from apps.dispatch.models import Provider
from apps.dispatch.routing import health

ANY_SEGMENT = "*"


@dataclass(frozen=True)
class ProviderState:
    provider: str
    channel: str
    segment: str
    enabled: bool
    state: str  # closed, open, half_open (the circuit); slow; unknown when Redis did not answer
    attempts: int  # calls in the health's rolling minute
    success_rate: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def provider_states() -> list[ProviderState]:
    providers = list(Provider.objects.order_by("channel", "priority_group", "name").values_list("name", "channel", "enabled"))
    checker = health()
    try:
        slow = checker.slow([name for name, _, _ in providers])
        snapshots = {name: checker.snapshot(name) for name, _, _ in providers}
    except RedisError:
        return [ProviderState(name, channel, ANY_SEGMENT, enabled, "unknown", 0, None) for name, channel, enabled in providers]
    rows = []
    for name, channel, enabled in providers:
        snapshot = snapshots[name]
        state = "slow" if snapshot.state == "closed" and name in slow else snapshot.state
        rate = None if snapshot.success_rate is None else round(snapshot.success_rate, 4)
        rows.append(ProviderState(name, channel, ANY_SEGMENT, enabled, state, snapshot.attempts, rate))
    return rows
