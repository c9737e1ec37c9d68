"""The quality metrics (apps/dispatch/quality.py; formulas in docs/quality.md) against values worked
out by hand from rollup rows written here, and API availability from real answers."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from django.utils import timezone

from apps.dispatch.models import LATENCY_BOUNDS_MS, AttemptRollup, Rollup
from apps.dispatch.quality import api_availability, quality_get
from messaging_center import availability
from messaging_center.broker import redis_client

pytestmark = pytest.mark.django_db

A, B = uuid.uuid4(), uuid.uuid4()


def _histogram(**counts: int) -> list[int]:
    """Counts by the lower edge (ms) of their bucket, e.g. _histogram(**{"100": 3})."""
    histogram = [0] * len(LATENCY_BOUNDS_MS)
    for edge, count in counts.items():
        histogram[LATENCY_BOUNDS_MS.index(int(edge))] = count
    return histogram


def _calls(account: uuid.UUID, at: dt.datetime, provider: str, outcome: str, calls: int, code: str = "", **latency: int) -> None:
    for grain in ("minute", "hour", "day", "month"):
        bucket = {
            "minute": at.replace(second=0, microsecond=0),
            "hour": at.replace(minute=0, second=0, microsecond=0),
            "day": at.replace(hour=0, minute=0, second=0, microsecond=0),
            "month": at.replace(day=1, hour=0, minute=0, second=0, microsecond=0),
        }[grain]
        row, _ = AttemptRollup.objects.get_or_create(
            account_id=account,
            grain=grain,
            bucket=bucket,
            channel="sms",
            provider=provider,
            segment="CN-mobile",
            template_code="login",
            outcome=outcome,
            code=code,
            defaults={"calls": 0, "latency_ms": [0] * len(LATENCY_BOUNDS_MS)},
        )
        AttemptRollup.objects.filter(pk=row.pk).update(
            calls=row.calls + calls, latency_ms=[a + b for a, b in zip(row.latency_ms, _histogram(**latency), strict=True)]
        )


def _messages(account: uuid.UUID, at: dt.datetime, provider: str, outcome: str, messages: int, **extra: Any) -> None:
    latency = extra.pop("latency", {})
    Rollup.objects.create(
        account_id=account,
        grain="minute",
        bucket=at.replace(second=0, microsecond=0),
        channel="sms",
        category="verification",
        priority="critical",
        provider=provider,
        template_code="login",
        segment="CN-mobile",
        outcome=outcome,
        messages=messages,
        sms_segments=messages,
        attempted=messages,
        latency_ms=_histogram(**latency),
        queue_ms=[0] * len(LATENCY_BOUNDS_MS),
        codes=extra.get("codes", 0),
        filled=extra.get("filled", 0),
        cost=extra.get("cost", 0),
    )


def test_each_metric_per_provider_over_five_minutes_and_an_hour() -> None:
    now = timezone.now()
    recent, older = now - dt.timedelta(minutes=2), now - dt.timedelta(minutes=30)
    # p-a: 8 calls accepted (latency 100-150 ms: 6, 1-1.5 s: 2), 2 failed; p-b: 3 accepted, 2 of them
    # failovers away from p-a.
    _calls(A, recent, "p-a", "accepted", 8, **{"100": 6, "1000": 2})
    _calls(A, recent, "p-a", "provider_error", 2, code="http_500", **{"4000": 2})
    _calls(A, recent, "p-b", "accepted", 1, **{"200": 1})
    _calls(B, recent, "p-b", "accepted", 2, code="failover_from:p-a", **{"200": 2})
    # Messages through p-a: 4 delivered (2-3 s), 1 undelivered, 1 still sent, 1 expired; 6 codes, 3 filled.
    # Each sent message cost 0.05 (50,000 micro-units).
    _messages(A, recent, "p-a", "delivered", 4, latency={"2000": 4}, codes=4, filled=3, cost=200_000)
    _messages(A, recent, "p-a", "undelivered", 1, codes=1, cost=50_000)
    _messages(A, recent, "p-a", "sent", 1, codes=1, cost=50_000)
    _messages(A, recent, "p-a", "expired", 1)
    # Half an hour ago: counted in the hour, not in the five minutes.
    _calls(A, older, "p-a", "accepted", 10, **{"100": 10})
    _messages(A, older, "p-a", "delivered", 10, latency={"2000": 10})

    [a, b] = quality_get(by="provider", window="5m", now=now)
    assert (a.key, a.calls, a.submit_success_rate) == ("p-a", 10, 0.8)
    # p50: rank 5 of 10 in [100, 150): 100 + 50 * 5/6; p95: rank 9.5 in [4000, 5000): 4000 + 1000 * 1.5/2.
    assert a.submit_latency_p50_ms == pytest.approx(100 + 50 * 5 / 6)
    assert a.submit_latency_p95_ms == pytest.approx(4750)
    assert (a.sent, a.receipt_rate, a.delivery_rate) == (6, round(5 / 6, 4), round(4 / 6, 4))
    assert a.receipt_latency_p50_ms == pytest.approx(2000 + 1000 * 2 / 4)  # rank 2 of 4 in [2000, 3000)
    assert (a.codes, a.fill_rate) == (6, 0.5)
    assert (a.failovers, a.failover_rate) == (2, 0.2)  # 2 of its 10 calls' messages went on through p-b
    assert (a.messages, a.expiry_rate) == (7, round(1 / 7, 4))
    assert (a.cost, a.cost_per_delivered) == (0.3, 0.075)  # 6 sent at 0.05, over 4 delivered
    assert (b.key, b.calls, b.submit_success_rate, b.failovers, b.sent) == ("p-b", 3, 1.0, 0, 0)
    assert b.delivery_rate is None and b.fill_rate is None

    [a_hour, _] = quality_get(by="provider", window="1h", now=now)
    assert (a_hour.calls, a_hour.submit_success_rate, a_hour.sent, a_hour.delivery_rate) == (20, 0.9, 16, round(14 / 16, 4))

    [only_b] = quality_get(by="account", window="5m", account=B, now=now)
    assert (only_b.key, only_b.calls) == (str(B), 2)
    [segment] = quality_get(by="segment", window="5m", now=now)
    assert (segment.key, segment.calls, segment.failovers) == ("CN-mobile", 13, 2)


def test_api_availability_is_the_share_of_answers_other_than_5xx(api, monkeypatch) -> None:
    monkeypatch.setattr(availability, "FLUSH_EVERY_SECONDS", 0.0)  # each answer reaches Redis at once
    api.get("/api/v1/templates")  # flushes what this process counted before the test
    redis_client().flushdb()
    assert api_availability(window="5m") is None  # no requests: no availability
    for _ in range(3):
        assert api.get("/api/v1/templates").status_code == 200
    assert api.get("/api/v1/messages/msg_nothing").status_code in (400, 404)  # a refusal is an answer
    assert api_availability(window="5m") == 1.0
    availability.TALLY.count(503)  # as the outage answers of tests/test_database_down.py are counted
    assert api_availability(window="5m") == 0.8
    assert api_availability(window="5m", now=timezone.now() + dt.timedelta(minutes=10)) is None
