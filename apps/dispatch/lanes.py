"""Priority lanes: one queue each; normal and bulk chunks yield to verification codes."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from django.conf import settings
from redis.exceptions import RedisError

from messaging_center.broker import broker_client

# A normal or bulk chunk does not start while verification codes are queued or being sent: the lanes share
# CPUs, database and connections (docs/performance.md, Delivery). The wait is bounded: codes slow bulk down,
# never stop it.
YIELDING_LANES = frozenset({"normal", "bulk"})
CRITICAL_IN_FLIGHT_KEY = "mc:critical:in-flight"
YIELD_MAX_SECONDS = 1.0
YIELD_POLL_SECONDS = 0.02


def yield_to_critical() -> None:
    deadline = time.monotonic() + YIELD_MAX_SECONDS
    client = broker_client()
    while True:
        try:
            with client.pipeline(transaction=False) as pipe:
                pipe.llen("mc.critical")
                pipe.get(CRITICAL_IN_FLIGHT_KEY)
                queued, in_flight = pipe.execute()
        except RedisError:
            return
        if (not queued and int(in_flight or 0) <= 0) or time.monotonic() >= deadline:
            return
        time.sleep(YIELD_POLL_SECONDS)


@contextlib.contextmanager
def critical_in_flight(active: bool) -> Iterator[None]:
    """Counts critical chunks being worked on (the count expires, should a worker die mid-chunk)."""
    if not active:
        yield
        return
    client = broker_client()
    with contextlib.suppress(RedisError), client.pipeline(transaction=False) as pipe:
        pipe.incr(CRITICAL_IN_FLIGHT_KEY)
        pipe.pexpire(CRITICAL_IN_FLIGHT_KEY, 10_000)
        pipe.execute()
    try:
        yield
    finally:
        with contextlib.suppress(RedisError):
            client.decr(CRITICAL_IN_FLIGHT_KEY)


def call_deadline(lane: str) -> float:
    """Seconds a provider call for a message of this lane may take before the message is sent through
    another provider as well (apps.dispatch.delivery.hedge); 0: never."""
    return float(settings.PROVIDER_CALL_DEADLINE_MS.get(lane, 0)) / 1000
