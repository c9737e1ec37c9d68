"""Routing on delivery data, per provider and destination segment: the quality job's judgement from
rollup minute rows (hand-computed figures), the choice it leads to (probe share, pins, price ties),
and `mc_provider_state` on /metrics. The end-to-end runs with the simulator and a real worker are in
tests/receipts/test_routing_on_delivery.py."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections import Counter

import pytest
from django.test import Client, override_settings
from django.utils import timezone

from apps.dispatch.models import LATENCY_BOUNDS_MS, Provider, Rollup
from apps.dispatch.providers import adapter_class
from apps.dispatch.providers_config import provider_save
from apps.dispatch.routing import Route, SegmentView, choose, demoted, health
from apps.dispatch.routing.quality import figures, quality_update
from apps.dispatch.routing.routes import cheapest_of_ties

pytestmark = pytest.mark.django_db

ACCOUNT = uuid.UUID("00000000-0000-7000-8000-000000000023")
ZEROS = [0] * len(LATENCY_BOUNDS_MS)


def _minute(ago: int) -> dt.datetime:
    now = timezone.now().replace(second=0, microsecond=0)
    return now - dt.timedelta(minutes=ago)


def _rows(
    provider: str, ago: int, *, delivered: int = 0, undelivered: int = 0, sent: int = 0, slow: int = 0, segment: str = "CN-mobile"
) -> None:
    """One minute of a provider's messages to a segment, as the rollup triggers would have counted them."""
    for outcome, count in (("delivered", delivered), ("undelivered", undelivered), ("sent", sent)):
        if not count:
            continue
        latency = list(ZEROS)
        if outcome == "delivered":
            latency[LATENCY_BOUNDS_MS.index(1_000)] = count - slow
            latency[LATENCY_BOUNDS_MS.index(600_000)] = slow
        Rollup.objects.create(
            account_id=ACCOUNT,
            grain="minute",
            bucket=_minute(ago),
            channel="sms",
            category="transactional",
            priority="high",
            provider=provider,
            template_code="notice",
            segment=segment,
            outcome=outcome,
            messages=count,
            attempted=count,
            latency_ms=latency,
            queue_ms=ZEROS,
        )


@pytest.fixture
def providers() -> None:
    make_providers()


def make_providers() -> None:
    for kind in ("aliyun", "tencent"):
        provider_save(provider=Provider(name=f"test-{kind}", kind=kind, channel="sms"), settings=_settings(kind))


def _settings(kind: str) -> dict[str, str]:
    from tests.dispatch.conftest import SIM_SETTINGS

    return {**SIM_SETTINGS[kind], "endpoint": "http://127.0.0.1:9"}


def _state(provider: str, segment: str = "CN-mobile") -> str:
    return figures()[(provider, segment)].state


def test_undelivered_receipts_demote_a_provider_for_that_segment_only(providers: None) -> None:
    # Aliyun: older minutes fine, the current minute 18 undelivered of 20 receipts. Its newest minute
    # alone holds 20 receipts: rate 2/20 = 10 % < 80 %. Tencent: 30 of 30 delivered.
    _rows("test-aliyun", 3, delivered=40)
    _rows("test-aliyun", 0, delivered=2, undelivered=18, sent=5)
    _rows("test-aliyun", 0, delivered=30, segment="US")
    _rows("test-tencent", 0, delivered=30)
    assert quality_update() == {"ok": 2, "demoted": 1}
    assert demoted() == {("test-aliyun", "CN-mobile")}
    judged = figures()[("test-aliyun", "CN-mobile")]
    assert judged.delivery_rate == pytest.approx(0.10)
    assert judged.reason == "delivery rate 10% < 80%"
    assert _state("test-aliyun", "US") == "ok"


def test_too_few_receipts_in_the_newest_minute_reach_back_to_older_ones(providers: None) -> None:
    # 10 receipts now (all undelivered) are not enough: the minute before (15 delivered) joins them:
    # 15 / 25 = 60 %. Demoted.
    _rows("test-aliyun", 0, undelivered=10)
    _rows("test-aliyun", 1, delivered=15)
    _rows("test-aliyun", 2, delivered=100)  # not needed: 25 already reach MIN_MESSAGES
    quality_update()
    assert figures()[("test-aliyun", "CN-mobile")].delivery_rate == pytest.approx(0.6)
    assert _state("test-aliyun") == "demoted"


def test_a_demoted_provider_comes_back_only_above_the_recovery_threshold(providers: None) -> None:
    _rows("test-aliyun", 1, undelivered=30)
    quality_update()
    assert _state("test-aliyun") == "demoted"
    # 17 of 20 = 85 %: above the demotion threshold, under the recovery one: stays demoted (hysteresis).
    _rows("test-aliyun", 0, delivered=17, undelivered=3)
    quality_update()
    assert _state("test-aliyun") == "demoted"
    assert figures()[("test-aliyun", "CN-mobile")].reason == "recovering"
    # 37 of 40 = 92.5 %: back.
    Rollup.objects.filter(provider="test-aliyun", bucket=_minute(0), outcome="delivered").update(messages=37)
    quality_update()
    assert _state("test-aliyun") == "ok"
    assert demoted() == set()


def test_receipts_that_stop_coming_demote_after_the_silence_window(providers: None) -> None:
    # Minutes that ended at least ROUTING_SILENCE_AFTER_SECONDS ago: 25 sent, 20 of them with no receipt
    # yet (80 % ≥ 50 %). The young minute's missing receipts do not count: they may be on their way.
    with override_settings(ROUTING_SILENCE_AFTER_SECONDS=120):
        _rows("test-aliyun", 0, sent=100)
        _rows("test-aliyun", 4, delivered=5, sent=20)
        quality_update()
    judged = figures()[("test-aliyun", "CN-mobile")]
    assert judged.silence == pytest.approx(0.8)
    assert judged.state == "demoted"
    assert judged.delivery_rate is None  # 5 receipts: too few to judge the rate


def test_slow_receipts_demote(providers: None) -> None:
    _rows("test-tencent", 0, delivered=30, slow=12)  # 40 % delivered 10 min after sending
    quality_update()
    assert figures()[("test-tencent", "CN-mobile")].slow_share == pytest.approx(0.4)
    assert _state("test-tencent") == "demoted"


def _route(name: str, weight: int = 100, group: int = 1) -> Route:
    return Route(name, "twilio", "sms", weight, group, 0, adapter_class("twilio")({}))


def _shares(routes: list[Route], view: SegmentView, times: int = 20_000, allowed: set[str] | None = None) -> dict[str, float]:
    names = allowed if allowed is not None else {r.name for r in routes}
    counts = Counter(getattr(choose(routes, allowed=names, segment=view), "name", "") for _ in range(times))
    return {name: count / times for name, count in counts.items()}


def test_a_demoted_provider_keeps_only_its_probe_share() -> None:
    routes = [_route("a"), _route("b"), _route("c")]
    shares = _shares(routes, SegmentView("CN-mobile", demoted=frozenset({"a"}), probe_share=0.03))
    assert shares["a"] == pytest.approx(0.03, abs=0.006)
    assert shares["b"] == pytest.approx(0.485, abs=0.02)
    # Every provider demoted: none is better, the weights decide as before.
    shares = _shares(routes[:2], SegmentView("CN-mobile", demoted=frozenset({"a", "b"})))
    assert shares["a"] == pytest.approx(0.5, abs=0.02)


def test_a_demoted_provider_never_takes_traffic_from_a_better_priority_group() -> None:
    routes = [_route("a"), _route("backup", group=2)]
    assert _shares(routes, SegmentView("CN-mobile", demoted=frozenset({"a"})), times=500) == {"a": 1.0}


def test_a_pin_takes_the_segment_whatever_group_demotion_or_price_and_its_open_circuit_hands_over() -> None:
    routes = [_route("a"), _route("b", group=2)]
    view = SegmentView("CN-mobile", pinned=frozenset({"b"}), demoted=frozenset({"b"}), prices={"a": 1, "b": 9})
    assert _shares(routes, view, times=500) == {"b": 1.0}
    assert _shares(routes, view, times=500, allowed={"a"}) == {"a": 1.0}  # b's circuit is open


def test_price_breaks_ties_between_equal_weights_only() -> None:
    a, b, c, d = _route("a"), _route("b"), _route("c", weight=300), _route("d")
    assert cheapest_of_ties([a, b], {"a": 40_000, "b": 30_000}) == [b]
    assert cheapest_of_ties([a, b], {"a": 30_000, "b": 30_000}) == [a, b]
    assert cheapest_of_ties([a, b, c], {"a": 40_000, "b": 30_000, "c": 90_000}) == [b, c]  # c's weight is its own
    assert cheapest_of_ties([a, b, d], {"a": 40_000, "b": 30_000}) == [a, b, d]  # d's price unknown: no tie-break
    view = SegmentView("CN-mobile", demoted=frozenset({"b"}), prices={"a": 40_000, "b": 30_000})
    assert _shares([a, b], view)["a"] == pytest.approx(0.97, abs=0.006)  # b cheaper but not as healthy


def _metric(body: str, provider: str, segment: str) -> float | None:
    found = re.search(rf'^mc_provider_state\{{provider="{provider}",segment="{re.escape(segment)}"\}} (\S+)$', body, re.M)
    return float(found.group(1)) if found else None


def test_provider_state_metric_shows_every_provider_from_start_demotions_and_open_circuits(providers: None) -> None:
    client = Client()
    body = client.get("/metrics").content.decode()
    assert _metric(body, "test-aliyun", "*") == 0
    assert _metric(body, "test-tencent", "*") == 0

    _rows("test-aliyun", 0, undelivered=25)
    _rows("test-tencent", 0, delivered=25)
    _rows("test-tencent", 0, delivered=25, segment="US")
    quality_update()
    health().record({"test-tencent": (0, 12)})  # every call failed: the breaker opens
    body = client.get("/metrics").content.decode()
    assert _metric(body, "test-aliyun", "CN-mobile") == 1
    assert _metric(body, "test-aliyun", "*") == 0
    assert _metric(body, "test-tencent", "*") == 2
    assert _metric(body, "test-tencent", "CN-mobile") == 2
    assert _metric(body, "test-tencent", "US") == 2
