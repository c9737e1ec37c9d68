"""A worker keeps consuming after its Redis restarts (why Celery/kombu are pinned as they are)."""

from __future__ import annotations

import os

import pytest
from celery import Celery

from devstack.embedded import EmbeddedRedis
from tests.helpers import celery_worker, wait_until

pytestmark = pytest.mark.slow


def _pings(app: Celery) -> list[object]:
    try:
        with app.connection_for_write() as connection:
            return list(app.control.ping(timeout=1.0, connection=connection) or [])
    except Exception:
        return []


def test_worker_reconnects_after_redis_restart(tmp_path) -> None:
    redis = EmbeddedRedis(tmp_path / "redis")
    url = redis.ensure_running()
    env = os.environ | {"REDIS_URL": url, "DJANGO_SETTINGS_MODULE": "messaging_center.settings"}
    probe = Celery(broker=url)
    try:
        with celery_worker(env, "mc.maintenance", tmp_path / "worker.log", concurrency=1) as worker:
            wait_until(lambda: _pings(probe), 30, "a pong before the restart")
            redis.stop()
            redis.ensure_running()
            wait_until(lambda: _pings(probe), 60, "a pong after the restart", interval=0.5)
            assert worker.poll() is None
    finally:
        redis.stop()
