"""With a real Celery worker: inbox delivery and the inbox API, scheduled sends, and the outbox
relay after a publish failed because Redis was down for real."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from django.test import override_settings
from django.utils import timezone

from apps.dispatch import outbox
from apps.dispatch.delivery import sweeper
from apps.dispatch.models import Message, Outbox
from devstack.embedded import EmbeddedRedis
from tests.helpers import celery_worker, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def inbox_template(api, make_template):
    return make_template(
        api, code="notice", channel="inbox", content="Hello {{name}}, your report is ready.", title="Report ready"
    )


def _status(api, message_id: str) -> str:
    return api.get(f"/api/v1/messages/{message_id}").json()["status"]


def _send_inbox(api, user_id: str = "u1", **extra) -> str:
    response = api.post(
        "/api/v1/messages", {"template": "notice", "to": {"user_id": user_id}, "params": {"name": "Ann"}, **extra}
    )
    assert response.status_code == 202, response.content
    return response.json()["messages"][0]["id"]


def test_inbox_message_is_delivered_and_readable(api, inbox_template, dispatch_worker) -> None:
    message_id = _send_inbox(api)
    wait_until(lambda: _status(api, message_id) == "delivered", 30, "inbox delivery")

    detail = api.get(f"/api/v1/messages/{message_id}").json()
    assert [e["status"] for e in detail["events"]] == ["queued", "sending", "delivered"]
    assert detail["delivered_at"] and detail["attempts"] == 1

    inbox = api.get("/api/v1/recipients/u1/inbox", {"unread": "true"}).json()
    assert inbox["unread_count"] == 1
    [item] = inbox["results"]
    assert (item["id"], item["title"], item["content"], item["read_at"]) == (
        message_id,
        "Report ready",
        "Hello Ann, your report is ready.",
        None,
    )

    read = api.post(f"/api/v1/recipients/u1/inbox/{message_id}/read")
    assert read.status_code == 200 and read.json()["read_at"]
    assert api.get("/api/v1/recipients/u1/inbox", {"unread": "true"}).json() == {"results": [], "next": None, "unread_count": 0}
    assert len(api.get("/api/v1/recipients/u1/inbox").json()["results"]) == 1

    more = [_send_inbox(api) for _ in range(2)]
    wait_until(lambda: all(_status(api, m) == "delivered" for m in more), 30, "two more deliveries")
    assert api.post("/api/v1/recipients/u1/inbox/read-all").json() == {"updated": 2}
    assert api.get("/api/v1/recipients/u2/inbox").json()["results"] == []
    assert api.post(f"/api/v1/recipients/u2/inbox/{message_id}/read").status_code == 404


def test_the_worker_keeps_its_database_connections_between_tasks(api, inbox_template, dispatch_worker) -> None:
    """Celery's Django fixup closes connections around every task unless told otherwise: a new
    PostgreSQL backend per chunk (measured at a fifth of the box's CPU during delivery)."""
    from django.db import connection

    from tests.conftest import DISPATCH_WORKER_APP

    seen: list[set[int]] = []
    for _ in range(4):
        message_id = _send_inbox(api)
        wait_until(lambda message_id=message_id: _status(api, message_id) == "delivered", 30, "inbox delivery")
        with connection.cursor() as cursor:
            cursor.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s", [DISPATCH_WORKER_APP])
            seen.append({row[0] for row in cursor.fetchall()})
    assert all(seen), f"the worker's sessions were closed after its task: {seen}"
    assert seen[0] <= seen[-1], f"sessions were replaced between tasks: {seen}"
    # A prefork child's first task may open its session; never one per task.
    assert len(set().union(*seen) - seen[0]) <= 1, f"a new session per task: {seen}"


def test_scheduled_message_waits_in_the_database_then_goes(api, inbox_template, dispatch_worker) -> None:
    send_at = timezone.now() + dt.timedelta(seconds=2)
    message_id = _send_inbox(api, send_at=send_at.isoformat())
    assert _status(api, message_id) == "scheduled"
    assert sweeper.enqueue_due() == 0
    time.sleep(max(0.0, (send_at - timezone.now()).total_seconds()) + 0.1)
    assert sweeper.enqueue_due() == 1
    wait_until(lambda: _status(api, message_id) == "delivered", 30, "delivery of the due message")


def test_expired_before_handoff(api, inbox_template, dispatch_worker) -> None:
    message_id = _send_inbox(api, send_at=(timezone.now() + dt.timedelta(seconds=1)).isoformat(), ttl=1)
    time.sleep(2.2)
    sweeper.sweep()
    sweeper.enqueue_due()
    wait_until(lambda: _status(api, message_id) == "expired", 30, "expiry")


def test_relay_publishes_after_redis_was_down(api, inbox_template, worker_env, tmp_path) -> None:
    redis = EmbeddedRedis(tmp_path / "redis")
    url = redis.ensure_running().rsplit("/", 1)[0] + "/1"
    try:
        with (
            override_settings(REDIS_URL=url, CELERY_BROKER_URL=url),
            celery_worker(worker_env | {"REDIS_URL": url}, "mc.high", tmp_path / "worker.log", name="relay"),
        ):
            redis.stop()
            message_id = _send_inbox(api)  # accepted: the database is the source of truth
            assert _status(api, message_id) == "queued"
            assert Outbox.objects.count() == 1  # the on-commit publish failed; the row waits for the relay

            redis.ensure_running()
            wait_until(lambda: outbox.outbox_relay() > 0, 30, "the relay to publish")
            assert Outbox.objects.count() == 0
            wait_until(lambda: _status(api, message_id) == "delivered", 60, "delivery after the relay")
            assert Message.objects.get().attempts == 1
    finally:
        redis.stop()


def test_a_worker_whose_database_connections_died_delivers_at_once(api, inbox_template, dispatch_worker) -> None:
    """As after a PostgreSQL restart: every session of the worker is terminated between tasks; the
    next messages are delivered in seconds, not after their two-minute lease."""
    from django.db import connection

    from tests.conftest import DISPATCH_WORKER_APP

    first = _send_inbox(api)
    wait_until(lambda: _status(api, first) == "delivered", 30, "the first delivery")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = %s", [DISPATCH_WORKER_APP]
        )
        assert cursor.fetchone()[0] >= 1
    after = [_send_inbox(api, user_id=f"u{n}") for n in range(4)]  # enough to reach every pool child
    wait_until(lambda: all(_status(api, m) == "delivered" for m in after), 20, "deliveries after the sessions died")
