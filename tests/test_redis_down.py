"""Redis (broker and limits) stopped for real, the database up: the service keeps accepting what it
can keep in the outbox, says so in /readyz, and refuses with 503 only what needs Redis to be decided
(README, Degradation)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import Client, override_settings

from apps.dispatch.models import Message, Outbox
from devstack.embedded import EmbeddedRedis

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def redis_stopped(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """The web process pointed at a real Redis of its own, then that Redis stopped."""
    redis = EmbeddedRedis(tmp_path / "redis")
    url = redis.ensure_running()
    try:
        with override_settings(REDIS_URL=url, CELERY_BROKER_URL=url):
            redis.stop()
            yield redis
    finally:
        redis.stop()


def test_readyz_stays_200_and_says_accepting_while_only_redis_is_down(redis_stopped: EmbeddedRedis) -> None:
    response = Client().get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["checks"], body["accepting"]) == ("degraded", {"database": "ok", "broker": "down"}, True)
    assert "accepted" in body["detail"] and "outbox" in body["detail"]

    redis_stopped.ensure_running()
    back = Client().get("/readyz").json()
    assert (back["status"], back["checks"]["broker"]) == ("ok", "ok")


def test_sends_are_accepted_into_the_outbox_and_rates_are_not_enforced(api, make_template, redis_stopped) -> None:
    """A transactional template without frequency limits or dedup needs no Redis decision. The
    account's request rate (1/s here) and daily quota (2) are not enforced: four sends in a row are all
    accepted, none 429. An Idempotency-Key (kept in PostgreSQL) still replays instead of sending again.
    Publishing to the broker waits for the relay (tests/dispatch/test_worker_flow.py::
    test_relay_publishes_after_redis_was_down delivers such a message once Redis is back)."""
    make_template(api, code="order_shipped", provider_template_ids={"aliyun": "SMS_1"})
    api.account.rate_limit, api.account.daily_quota = 1, 2
    api.account.save(update_fields=["rate_limit", "daily_quota"])
    statuses = []
    for n in range(4):
        to = {"phone": f"+8613800138{n:03d}"}
        body = {"template": "order_shipped", "to": to, "params": {"order_no": "A1"}}
        response = api.post("/api/v1/messages", body, HTTP_IDEMPOTENCY_KEY=f"key-{n}")
        assert response.status_code == 202, response.content
        statuses += [m["status"] for m in response.json()["messages"]]
    assert statuses == ["queued"] * 4
    replay = api.post("/api/v1/messages", body, HTTP_IDEMPOTENCY_KEY="key-3")
    assert replay.status_code == 202 and replay.json() == response.json()
    assert Message.objects.filter(status="queued").count() == 4
    assert sum(len(o.message_ids) for o in Outbox.objects.all()) == 4  # kept for the relay: the publish failed


def test_what_needs_redis_to_be_decided_answers_503(api, make_template, redis_stopped) -> None:
    """Verification codes (the platform-wide cap per address) and a template with a frequency limit are
    refused with 503 `unavailable`, nothing stored, rather than sent past their limits."""
    make_template(api, code="login_code", category="verification", content="Your code is {{code}}.", ttl=300)
    make_template(api, code="limited", frequency_limits=[{"window": 3600, "limit": 2}])
    code = api.post("/api/v1/verifications", {"template": "login_code", "to": {"phone": "+8613800138000"}})
    assert code.status_code == 503, code.content
    assert code.json()["code"] == "unavailable"
    to = {"phone": "+8613800138001"}
    limited = api.post("/api/v1/messages", {"template": "limited", "to": to, "params": {"order_no": "1"}})
    assert limited.status_code == 503, limited.content
    assert "Redis is down" in limited.json()["detail"]
    assert not Message.objects.exists() and not Outbox.objects.exists()
