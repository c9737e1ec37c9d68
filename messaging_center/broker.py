"""Direct Redis access shared by the web and worker processes (limits, health, queue depth).

Clients are cached per URL and the URL is read from settings at call time, so that a process
follows its settings (tests point a process at a dedicated Redis they stop and start)."""

from __future__ import annotations

import base64
import functools
import json
import uuid

import redis
from celery.utils.nodenames import anon_nodename
from celery.utils.saferepr import saferepr
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


def task_message(task: str, args: list[object], queue: str) -> bytes:
    """One Celery task message (protocol 2) exactly as kombu's Redis transport stores it, built without
    `apply_async` (docs/performance.md, Accept path). Only for immediate tasks without ETA; see `push_task`.
    tests/dispatch/test_task_messages.py holds it to what `apply_async` publishes."""
    task_id = str(uuid.uuid4())
    body = json.dumps([args, {}, _EMBED], separators=(",", ":")).encode()
    return json.dumps(
        {
            "body": base64.b64encode(body).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {
                "lang": "py",
                "task": task,
                "id": task_id,
                "shadow": None,
                "eta": None,
                "expires": None,
                "group": None,
                "group_index": None,
                "retries": 0,
                "timelimit": [settings.CELERY_TASK_TIME_LIMIT, settings.CELERY_TASK_SOFT_TIME_LIMIT],
                "root_id": task_id,
                "parent_id": None,
                "argsrepr": _repr(args),
                "kwargsrepr": "{}",
                "origin": anon_nodename(),  # per message, as Celery does: right after a fork too
                "ignore_result": True,
                "replaced_task_nesting": 0,
                "stamped_headers": None,
                "stamps": {},
            },
            "properties": {
                "correlation_id": task_id,
                "reply_to": "",
                "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": queue},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },
        },
        separators=(",", ":"),
    ).encode()


_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
ARGSREPR_MAXSIZE = 1024  # Celery's (app.amqp.argsrepr_maxsize)


def _repr(args: list[object]) -> str:
    """Celery's argsrepr: the plain repr, or Celery's own abbreviation of a long one (its saferepr
    costs ~60 µs for 100 ids against ~10 µs for repr, so only long ones pay for it)."""
    text = repr(args)
    return text if len(text) <= ARGSREPR_MAXSIZE else saferepr(args, ARGSREPR_MAXSIZE)


def push_task(pipe: redis.client.Pipeline, task: str, queue: str, args: list[object]) -> None:
    """Adds one task to a pipeline: an LPUSH onto the queue's list, which is what kombu's Redis
    transport does for a direct exchange whose routing key is the queue's name (ours, settings)."""
    pipe.lpush(queue, task_message(task, args, queue))
