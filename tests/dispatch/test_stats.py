"""`GET /api/v1/stats`: counts and rates per group, the account's own messages only."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from apps.dispatch.models import Message
from apps.dispatch.sealing import unseal
from messaging_center import ids

pytestmark = pytest.mark.django_db


def _finish(message: Message, status: str, latency_ms: int = 0, **fields) -> None:  # type: ignore[no-untyped-def]
    sent_at = timezone.now() - dt.timedelta(minutes=1)
    delivered_at = sent_at + dt.timedelta(milliseconds=latency_ms) if status == "delivered" else None
    fields = {"sent_at": sent_at, "delivered_at": delivered_at, **fields}
    Message.objects.filter(id=message.id).update(status=status, **fields)


def test_rates_per_provider(api, make_message, make_api_client) -> None:
    for latency in (100, 200, 300, 400):
        _finish(make_message(provider="p-a"), "delivered", latency)
    _finish(make_message(provider="p-a"), "undelivered")
    _finish(make_message(provider="p-a"), "sent")
    _finish(make_message(provider="p-a", status="failed"), "failed", sent_at=None)
    _finish(make_message(provider="p-b"), "delivered", 1000)
    other = make_api_client("other")

    response = api.get("/api/v1/stats", {"group_by": "provider"})
    assert response.status_code == 200, response.content
    groups = {g["key"]: g for g in response.json()["groups"]}
    a = groups["p-a"]
    assert (a["total"], a["sent"], a["delivered"], a["undelivered"], a["failed"]) == (7, 6, 4, 1, 1)
    # No provider was called (the messages were put in their states by hand): no attempts, no success rate.
    assert (a["attempts"], a["errors"], a["success_rate"]) == (0, {}, None)
    assert a["receipt_rate"] == round(5 / 6, 4)
    assert a["delivery_rate"] == round(4 / 6, 4)
    # Exact: 250 and 385; from the histogram (buckets from 100 ms: 100, 150, 200, 300, 400, 500), within one bucket.
    assert 200 <= a["latency_p50_ms"] <= 300 and 300 <= a["latency_p95_ms"] <= 500
    assert a["fill_rate"] is None
    assert groups["p-b"]["delivery_rate"] == 1.0
    assert other.get("/api/v1/stats", {"group_by": "provider"}).json() == {"groups": []}


def test_group_by_template_channel_day_and_time_range(api, make_message) -> None:
    _finish(make_message(), "delivered", 10)
    for group_by, key in (("template", "notice"), ("channel", "sms"), ("day", timezone.now().strftime("%Y-%m-%d"))):
        [group] = api.get("/api/v1/stats", {"group_by": group_by}).json()["groups"]
        assert group["key"] == key and group["total"] == 1
    future = (timezone.now() + dt.timedelta(hours=1)).isoformat()
    assert api.get("/api/v1/stats", {"group_by": "channel", "created_after": future}).json() == {"groups": []}
    assert len(api.get("/api/v1/stats", {"group_by": "channel", "created_before": future}).json()["groups"]) == 1


def test_fill_rate_of_verification_codes(api, make_template) -> None:
    make_template(api, code="login_code", category="verification", content="Your code is {{code}}.", ttl=300)
    for n, valid in enumerate((True, False, False, True)):
        phone = f"+861380013800{n}"
        sent = api.post("/api/v1/verifications", {"to": {"phone": phone}, "template": "login_code"})
        assert sent.status_code == 202, sent.content
        code = unseal(Message.objects.get(id=ids.decode("msg", sent.json()["message_id"])).params)["code"]
        checked = api.post(
            "/api/v1/verifications/check", {"to": {"phone": phone}, "code": code if valid else f"{(int(code) + 1) % 10**6:06d}"}
        )
        assert checked.status_code == 200
    [group] = api.get("/api/v1/stats", {"group_by": "template"}).json()["groups"]
    assert (group["key"], group["total"], group["fill_rate"]) == ("login_code", 4, 0.5)


@pytest.mark.parametrize("query", [{"group_by": "planet"}, {"group_by": "day", "created_after": "yesterday"}])
def test_bad_queries(api, query) -> None:
    response = api.get("/api/v1/stats", query)
    assert response.status_code == 400 and response.json()["code"] == "validation_error"


def test_needs_an_api_key(client) -> None:
    assert client.get("/api/v1/stats").status_code == 401


def test_a_provider_whose_every_call_fails_shows_its_attempts_and_no_success_while_failover_delivers(
    api, make_template, sim
) -> None:
    """Per call, not per message: the messages all reach `sent` through the other provider, and the
    failing one still shows every call made with it, none accepted, and why."""
    from apps.dispatch.delivery import chunk
    from apps.dispatch.models import Provider
    from apps.dispatch.providers_config import provider_save

    for kind in ("aliyun", "tencent"):
        provider_save(provider=Provider(name=f"test-{kind}", kind=kind, channel="sms"), settings=sim.settings(kind))
    make_template(
        api, code="notice", content="Your code {{n}} is ready.", provider_template_ids={"aliyun": "SMS_1", "tencent": "1"}
    )
    sim.behave("tencent", fail_rate=1.0, error="http_500")
    to = [{"phone": f"+86139{n:08d}"} for n in range(30)]
    response = api.post("/api/v1/messages", {"template": "notice", "to": to, "params": {"n": "1"}})
    assert response.status_code == 202, response.content
    for _ in range(4):  # retries at once: the backoff is the worker's business
        waiting = list(Message.objects.filter(status__in=("queued", "retry_wait")).values_list("id", flat=True))
        Message.objects.filter(id__in=waiting).update(lease_until=None)
        chunk.deliver_messages(waiting)
    assert set(Message.objects.values_list("status", flat=True)) == {"sent"}

    groups = {g["key"]: g for g in api.get("/api/v1/stats", {"group_by": "provider"}).json()["groups"]}
    tencent, aliyun = groups["test-tencent"], groups["test-aliyun"]
    assert tencent["attempts"] > 0 and tencent["success_rate"] == 0.0, tencent
    assert tencent["errors"] == {"provider_error": tencent["attempts"]} and tencent["sent"] == 0
    assert (aliyun["attempts"], aliyun["success_rate"], aliyun["sent"], aliyun["errors"]) == (30, 1.0, 30, {})
