"""Direct Redis access shared by the web and worker processes (limits, health, queue depth).

Clients are cached per URL and the URL is read from settings at call time, so that a process
follows its settings (tests point a process at a dedicated Redis they stop and start)."""

from __future__ import annotations

import functools

import redis
from django.conf import settings


@functools.cache
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2, health_check_interval=10, max_connections=64)


def redis_client() -> redis.Redis:
    return _client(settings.REDIS_URL)


def broker_client() -> redis.Redis:
    """The broker's Redis, for state that must be lost exactly when queued tasks are."""
    return _client(settings.CELERY_BROKER_URL)


def queue_depths() -> dict[str, int]:
    client = broker_client()
    with client.pipeline(transaction=False) as pipe:
        for queue in settings.QUEUES:
            pipe.llen(queue)
        lengths = pipe.execute()
    return dict(zip(settings.QUEUES, (int(n) for n in lengths), strict=True))
