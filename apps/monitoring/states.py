"""Each provider's state now, as rows of (provider, segment, state): the circuit breaker and the
rolling submit success rate of apps/dispatch/routing/health.py (segment `*`: the breaker is per
provider), and a provider marked slow by a hedge; then one row per provider and destination segment
the routing quality job judged (apps/dispatch/routing/quality.py): `ok` or `demoted (<why>)`, with
the messages it judged by and their delivery rate."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from redis.exceptions import RedisError

from apps.dispatch.models import ANY_SEGMENT, Provider
from apps.dispatch.routing import health
from apps.dispatch.routing.quality import figures


@dataclass(frozen=True)
class ProviderState:
    provider: str
    channel: str
    segment: str
    enabled: bool
    state: str  # closed, open, half_open (the circuit); slow; unknown when Redis did not answer; per segment: ok, demoted (why)
    attempts: int  # calls in the health's rolling minute; per segment: the messages judged
    success_rate: float | None  # per segment: their delivery rate

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
    channels = {name: (channel, enabled) for name, channel, enabled in providers}
    for (name, segment), verdict in sorted(figures().items()):
        if name in channels:
            state = f"demoted ({verdict.reason})" if verdict.state == "demoted" else verdict.state
            rows.append(
                ProviderState(
                    name, *channels[name][:1], segment, channels[name][1], state, verdict.messages, verdict.delivery_rate
                )
            )
    return rows
