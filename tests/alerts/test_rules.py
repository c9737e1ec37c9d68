"""Each shipped rule kind fires on the data that should fire it and stays quiet on healthy data; the
rollups are hand-made rows, the lanes, callbacks, health and quotas the real ones."""

from __future__ import annotations

import datetime as dt
import importlib

import pytest
from django.utils import timezone

from apps.accounts.selectors import quota_key
from apps.alerts.models import AlertRule, Kind
from apps.alerts.rules import rule_evaluate
from apps.dispatch.models import Grain, Provider
from apps.dispatch.routing import health
from apps.receipts.models import StatusCallback
from messaging_center.broker import redis_client

pytestmark = pytest.mark.django_db

MIN = dt.timedelta(minutes=1)


def _findings(kind: str, threshold: float, now: dt.datetime | None = None, **fields) -> dict[str, tuple[bool | None, str]]:
    rule = AlertRule(name=kind, kind=kind, threshold=threshold, **fields)
    evaluation = rule_evaluate(rule, now or timezone.now())
    return {f.subject: (f.firing, f.summary) for f in evaluation.findings}


def test_defaults_ship_a_rule_of_every_kind() -> None:
    # Run again as `migrate` runs it: a transactional test elsewhere in the session empties the tables.
    from django.apps import apps

    importlib.import_module("apps.alerts.migrations.0002_default_rules").add_rules(apps, None)
    shipped = set(AlertRule.objects.filter(enabled=True).values_list("kind", flat=True))
    assert shipped == set(Kind.values)
    lanes = set(AlertRule.objects.filter(kind=Kind.QUEUE_AGE).values_list("scope", flat=True))
    assert lanes == {"critical", "high", "normal", "bulk"}


def test_delivery_rate_drop_against_the_providers_own_baseline_per_provider_and_segment(api, rollup) -> None:
    now = timezone.now()
    hour_ago = now - dt.timedelta(hours=2)
    for provider in ("p-bad", "p-good"):  # both delivered 99 % over the day
        rollup(api.account, at=hour_ago, grain=Grain.HOUR, provider=provider, outcome="delivered", messages=990)
        rollup(api.account, at=hour_ago, grain=Grain.HOUR, provider=provider, outcome="undelivered", messages=10)
    # Now p-bad's receipts say undelivered for CN-mobile; its CN-unicom and p-good are fine.
    rollup(api.account, at=now - MIN, provider="p-bad", outcome="delivered", messages=10)
    rollup(api.account, at=now - MIN, provider="p-bad", outcome="undelivered", messages=30)
    rollup(api.account, at=now - MIN, provider="p-bad", segment="CN-unicom", outcome="delivered", messages=25)
    rollup(api.account, at=now - MIN, provider="p-good", outcome="delivered", messages=40)
    rollup(api.account, at=now - MIN, provider="p-good", outcome="sent", messages=400)  # awaiting: not a drop

    found = _findings(Kind.DELIVERY_RATE_DROP, 0.2, now, window_minutes=3, min_volume=20)
    assert found["p-bad"][0] is True
    assert "delivery rate 54% of 65 receipted" in found["p-bad"][1] and "baseline 99%" in found["p-bad"][1]
    assert found["p-good"][0] is False
    # The provider's alert covers its segments while it fires: neither opens one of its own.
    assert found["p-bad · CN-mobile"][0] is None and found["p-bad · CN-unicom"][0] is None

    # A segment falls alone: only that segment fires (the provider as a whole stays above its line).
    rollup(api.account, at=now - MIN, provider="p-bad", segment="CN-unicom", outcome="delivered", messages=300)
    found = _findings(Kind.DELIVERY_RATE_DROP, 0.2, now, window_minutes=3, min_volume=20)
    assert found["p-bad"][0] is False
    assert found["p-bad · CN-mobile"][0] is True and found["p-bad · CN-unicom"][0] is False

    # Too few receipts to judge, and minutes outside the window, count for nothing.
    found = _findings(Kind.DELIVERY_RATE_DROP, 0.2, now + dt.timedelta(minutes=10), window_minutes=3, min_volume=20)
    assert found == {}


def test_delivery_rate_drop_without_history_is_judged_against_ninety_percent(api, rollup) -> None:
    now = timezone.now()
    rollup(api.account, at=now, provider="p-new", outcome="delivered", messages=16)
    rollup(api.account, at=now, provider="p-new", outcome="undelivered", messages=4)
    judged = lambda: _findings(Kind.DELIVERY_RATE_DROP, 0.2, now, window_minutes=3, min_volume=20)["p-new"][0]  # noqa: E731
    assert judged() is False  # 80 %: the line is 70 %, and clear from 80 % up
    rollup(api.account, at=now, provider="p-new", outcome="undelivered", messages=1)
    assert judged() is None  # 76 %: between the line and half a threshold above it, an open alert stays open
    rollup(api.account, at=now, provider="p-new", outcome="undelivered", messages=5)
    assert judged() is True  # 62 %


def _provider(name: str, kind: str = "twilio") -> Provider:
    return Provider.objects.create(name=name, channel="sms", kind=kind)


def test_submit_error_spike_from_provider_health() -> None:
    for name in ("p-fail", "p-ok", "p-quiet"):
        _provider(name)
    health().record({"p-fail": (4, 8), "p-ok": (20, 1)})
    found = _findings(Kind.SUBMIT_ERRORS, 0.5, min_volume=10)
    assert found["p-fail"][0] is True and "8 of 12 calls failed" in found["p-fail"][1]
    assert found["p-ok"][0] is False
    assert found["p-quiet"][0] is False  # no calls, circuit closed: nothing wrong

    health().record({"p-quiet": (0, 10)})  # ten failures in a row open its circuit
    found = _findings(Kind.SUBMIT_ERRORS, 0.5, min_volume=10)
    assert found["p-quiet"] == (True, "10 of 10 calls failed in the last minute; circuit open")


def test_receipt_silence_of_a_provider_that_reports_delivery(api, rollup) -> None:
    _provider("p-silent", kind="aliyun")
    _provider("p-talks", kind="aliyun")
    _provider("p-mute-by-design", kind="wecom")  # its API has no delivery reports
    now = timezone.now()
    rollup(api.account, at=now - 15 * MIN, provider="p-silent", outcome="sent", messages=30)
    rollup(api.account, at=now - 15 * MIN, provider="p-talks", outcome="sent", messages=5)
    rollup(api.account, at=now - 15 * MIN, provider="p-talks", outcome="delivered", messages=25)
    rollup(api.account, at=now - 15 * MIN, provider="p-mute-by-design", channel="wecom", outcome="sent", messages=30)
    rollup(api.account, at=now - MIN, provider="p-talks", outcome="sent", messages=50)  # too recent to be silent

    found = _findings(Kind.RECEIPT_SILENCE, 0.05, now, window_minutes=10, min_volume=10)
    assert found["p-silent"] == (True, "0 receipts for 30 messages sent 10 to 20 min ago (30 still awaiting one)")
    assert found["p-talks"][0] is False
    assert "p-mute-by-design" not in found


def test_oldest_queued_age_per_lane(make_message) -> None:
    make_message(status="queued")  # accepted now on the high lane, no worker takes it
    later = timezone.now() + dt.timedelta(minutes=3)
    found = _findings(Kind.QUEUE_AGE, 120, later)
    assert found["high"][0] is True and "tasks in mc.high" in found["high"][1]
    assert found["critical"][0] is False and found["bulk"][0] is False
    assert _findings(Kind.QUEUE_AGE, 120, later, scope="critical").keys() == {"critical"}
    assert _findings(Kind.QUEUE_AGE, 300, later)["high"][0] is False


def test_callback_backlog_counts_callbacks_due_for_long(make_message) -> None:
    message = make_message(status="sent")
    now = timezone.now()
    for minutes, status in ((20, "sent"), (8, "delivered"), (1, "undelivered")):
        StatusCallback.objects.create(
            account_id=message.account_id,
            message=message,
            status=status,
            body="{}",
            next_attempt_at=now - minutes * MIN,
            created_at=now - minutes * MIN,
        )
    assert _findings(Kind.CALLBACK_BACKLOG, 2, now, window_minutes=5)[""][0] is True  # two due for over 5 min
    assert _findings(Kind.CALLBACK_BACKLOG, 3, now, window_minutes=5)[""][0] is False


def test_verification_fill_rate_drop_per_account(api, make_api_client, rollup) -> None:
    pumped = make_api_client("pumped")
    now = timezone.now()
    two_hours_ago = now - dt.timedelta(hours=2)
    for client in (api, pumped):  # both had 80 % of their codes typed in over the day
        rollup(
            client.account,
            at=two_hours_ago,
            grain=Grain.HOUR,
            category="verification",
            outcome="delivered",
            messages=100,
            codes=100,
            filled=80,
        )
    rollup(pumped.account, at=now - 10 * MIN, category="verification", outcome="delivered", messages=200, codes=200, filled=12)
    rollup(api.account, at=now - 10 * MIN, category="verification", outcome="delivered", messages=50, codes=50, filled=41)
    rollup(api.account, at=now - MIN, category="verification", outcome="delivered", messages=50, codes=50)  # not typed in yet

    found = _findings(Kind.VERIFICATION_FILL_DROP, 0.3, now, window_minutes=30, min_volume=30)
    assert found["pumped"] == (True, "12 of 200 codes of the last 30 min checked valid (6%; its 24 h: 80%)")
    assert found["orders"][0] is False


def test_account_near_its_quota(make_api_client) -> None:
    near = make_api_client("near", daily_quota=100)
    far = make_api_client("far", daily_quota=100)
    now = timezone.now()
    redis_client().set(quota_key(near.account, now), 93)
    redis_client().set(quota_key(far.account, now), 12)
    found = _findings(Kind.QUOTA_NEAR, 0.9, now)
    assert found["near"] == (True, "93 of its 100 messages today (93%)")
    assert found["far"][0] is False


def test_a_provider_demoted_for_a_segment_by_routing_fires_and_clears_when_it_recovers() -> None:
    from apps.dispatch.models import Rollup
    from apps.dispatch.routing.quality import quality_update
    from tests.dispatch.test_routing_quality import _rows, make_providers

    make_providers()
    _rows("test-aliyun", 0, delivered=2, undelivered=18)  # this minute: 10 % delivered
    _rows("test-tencent", 0, delivered=30)
    quality_update()
    assert _findings(Kind.PROVIDER_DEMOTED, 0) == {
        "test-aliyun · CN-mobile": (True, "delivery rate 10% < 80% (20 messages judged)"),
        "test-tencent · CN-mobile": (False, "delivering (30 messages judged)"),
    }
    Rollup.objects.filter(provider="test-aliyun").delete()
    _rows("test-aliyun", 0, delivered=30)  # its receipts recover
    quality_update()
    assert _findings(Kind.PROVIDER_DEMOTED, 0)["test-aliyun · CN-mobile"][0] is False
