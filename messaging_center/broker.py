"""Direct Redis access shared by the web and worker processes (limits, health, queue depth)."""

from __future__ import annotations

import functools

import redis
from django.conf import settings


@functools.cache
def redis_client() -> redis.Redis:
    return redis.Redis.from_url(
        settings.REDIS_URL,
        socket_connect_timeout=1,
        socket_timeout=2,
        health_check_interval=10,
        max_connections=64,
    )


def queue_depths() -> dict[str, int]:
    client = redis_client()
    with client.pipeline(transaction=False) as pipe:
        for queue in settings.QUEUES:
            pipe.llen(queue)
        lengths = pipe.execute()
    return dict(zip(settings.QUEUES, (int(n) for n in lengths), strict=True))
