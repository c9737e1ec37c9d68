"""The SREs' series on /metrics: present from the start at 0 (each provider's from its row), backlogs
read at scrape time, accept→sent observed per lane when a message is sent, refusals counted by code."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from apps.dispatch.delivery import chunk
from apps.dispatch.models import Message, Provider
from apps.dispatch.providers_config import provider_save
from apps.receipts.models import StatusCallback
from messaging_center import ids

pytestmark = pytest.mark.django_db


def scrape() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = Client().get("/metrics")
    assert response.status_code == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def test_every_series_is_there_from_the_start(sim: Any) -> None:
    """A provider that has made no call has every series at 0. (Counters of lanes and codes are the test
    process's own, which earlier tests may have moved: they must be there.)"""
    provider_save(provider=Provider(name="fresh-aliyun", kind="aliyun", channel="sms"), settings=sim.settings("aliyun"))
    samples = scrape()
    for lane in ("critical", "high", "normal", "bulk"):
        assert value(samples, "mc_accept_to_sent_seconds_count", lane=lane) is not None
        assert value(samples, "mc_oldest_queued_seconds", lane=lane) == 0
    for code in ("validation_error", "not_authenticated", "rate_limited", "quota_exceeded", "unavailable"):
        assert value(samples, "mc_api_refusals_total", code=code) is not None
    for backlog in ("scheduled", "retry_wait", "callbacks"):
        assert value(samples, "mc_backlog", backlog=backlog) == 0
    for outcome in ("accepted", "provider_error", "timeout", "throttled", "invalid_number"):
        assert value(samples, "mc_provider_attempts_total", provider="fresh-aliyun", outcome=outcome) == 0
    assert value(samples, "mc_provider_call_seconds_count", provider="fresh-aliyun") == 0
    for counter in ("mc_messages_sent_total", "mc_messages_delivered_total", "mc_receipt_timeouts_total"):
        assert value(samples, counter, channel="sms", provider="fresh-aliyun") == 0


def test_backlogs_and_the_oldest_queued_message_are_read_at_scrape_time(api: Any, sms_template: Any) -> None:
    def send(number: int, **extra: Any) -> Any:
        body = {"template": "notice", "to": {"phone": f"+86139{number:08d}"}, "params": {"n": "1"}}
        response = api.post("/api/v1/messages", body | extra)
        assert response.status_code == 202, response.content
        return ids.decode("msg", response.json()["messages"][0]["id"])

    later = (timezone.now() + dt.timedelta(hours=3)).isoformat()
    send(1, send_at=later)
    send(2, send_at=later)
    queued, retrying = send(3), send(4)  # on the high lane; no worker here
    Message.objects.filter(id=queued).update(created_at=timezone.now() - dt.timedelta(seconds=90))
    Message.objects.filter(id=retrying).update(status="retry_wait", attempts=1)
    now = timezone.now()
    StatusCallback.objects.create(
        account_id=api.account.id,
        message_id=retrying,
        status="sent",
        body="{}",
        state="pending",
        next_attempt_at=now,
        created_at=now,
    )

    samples = scrape()
    assert value(samples, "mc_backlog", backlog="scheduled") == 2
    assert value(samples, "mc_backlog", backlog="retry_wait") == 1
    assert value(samples, "mc_backlog", backlog="callbacks") == 1
    assert 85 <= value(samples, "mc_oldest_queued_seconds", lane="high") <= 120  # type: ignore[operator]
    assert value(samples, "mc_oldest_queued_seconds", lane="critical") == 0


def test_accept_to_sent_is_observed_in_the_lane_when_a_message_is_sent(api: Any, sms_template: Any, sim: Any) -> None:
    provider_save(provider=Provider(name="test-aliyun", kind="aliyun", channel="sms"), settings=sim.settings("aliyun"))
    before = scrape()
    response = api.post("/api/v1/messages", {"template": "notice", "to": {"phone": "+8613900000001"}, "params": {"n": "1"}})
    message = Message.objects.get(status="queued")
    Message.objects.filter(id=message.id).update(created_at=message.created_at - dt.timedelta(seconds=20))
    chunk.deliver_messages([message.id])
    assert response.status_code == 202 and Message.objects.get(id=message.id).status == "sent"
    after = scrape()

    def grew(name: str, **labels: str) -> float:
        return (value(after, name, **labels) or 0) - (value(before, name, **labels) or 0)

    assert grew("mc_accept_to_sent_seconds_count", lane="high") == 1
    # (the test is one transaction: its now() is a little before the message was made)
    assert 15 <= grew("mc_accept_to_sent_seconds_sum", lane="high") < 30
    assert grew("mc_accept_to_sent_seconds_bucket", lane="high", le="10.0") == 0
    assert grew("mc_accept_to_sent_seconds_bucket", lane="high", le="30.0") == 1
    assert grew("mc_accept_to_sent_seconds_count", lane="critical") == 0


def test_refusals_are_counted_by_their_code(api: Any) -> None:
    before = scrape()
    assert api.post("/api/v1/messages", {"template": "nope", "to": {"phone": "+8613900000001"}}).status_code == 404
    assert api.post("/api/v1/messages", {"to": "x"}).status_code == 400
    assert Client().get("/api/v1/account").status_code == 401
    assert api.get("/api/v1/account").status_code == 200
    after = scrape()
    for code in ("template_not_found", "validation_error", "not_authenticated"):
        grown = (value(after, "mc_api_refusals_total", code=code) or 0) - (value(before, "mc_api_refusals_total", code=code) or 0)
        assert grown == 1, code
