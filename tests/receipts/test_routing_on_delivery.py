"""Routing on delivery data, end to end: our app on a live server receiving the simulator's pushed
receipts, a real worker routing, the quality job run by the test as beat would run it. A provider
whose receipts say `undelivered` loses its traffic to a segment within 2 minutes and gets it back
when it recovers; operators' pins and exclusions and prices apply to the next task, without a
restart; each sent message's cost reaches `/stats`. The figures are printed (docs/quality.md)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.test import override_settings

from apps.dispatch.models import Message
from apps.dispatch.routing.quality import figures, quality_update
from messaging_center import ids
from tests.helpers import wait_until
from tests.receipts.conftest import RECEIPT_TOKEN, make_provider

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

SETTLED = ("sent", "delivered", "undelivered")


def _send(api: Any, serial: int, count: int, template: str = "notice") -> list[Any]:
    to = [{"phone": f"+86138{serial * 10 + n:08d}"} for n in range(count)]  # +86138…: segment CN-mobile
    response = api.post("/api/v1/messages", {"template": template, "to": to, "params": {"n": "7"}})
    assert response.status_code == 202, response.content
    return [ids.decode("msg", m["id"]) for m in response.json()["messages"]]


class Traffic:
    """Steady traffic: `per_tick` messages every `tick` seconds; the quality job runs every tick."""

    def __init__(self, api: Any, per_tick: int = 4, tick: float = 0.5) -> None:
        self.api, self.per_tick, self.tick = api, per_tick, tick
        self.sent: list[tuple[float, Any]] = []  # (monotonic time of the send, message id)
        self.serial = 0

    def run_until(self, done: Any, timeout: float) -> float:
        """Sends until `done()` holds (checked after each run of the job); returns the seconds it took."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            began = time.monotonic()
            self.serial += 1
            self.sent.extend((began, mid) for mid in _send(self.api, self.serial, self.per_tick))
            quality_update()
            if done():
                return time.monotonic() - start
            time.sleep(max(0.0, self.tick - (time.monotonic() - began)))
        raise AssertionError(f"not done within {timeout:.0f} s")

    def providers(self) -> list[tuple[float, str]]:
        """(send time, provider) of every message, once all are settled."""
        wanted = [mid for _, mid in self.sent]
        wait_until(lambda: Message.objects.filter(id__in=wanted).exclude(status__in=SETTLED).count() == 0, 60, "the sends")
        by_id = dict(Message.objects.filter(id__in=wanted).values_list("id", "provider"))
        return [(at, by_id[mid]) for at, mid in self.sent]


def _share(rows: list[tuple[float, str]], provider: str, start: float, end: float) -> tuple[float, int]:
    picked = [name for at, name in rows if start <= at < end]
    return (sum(1 for name in picked if name == provider) / len(picked) if picked else 0.0), len(picked)


def _state(provider: str) -> str:
    judged = figures().get((provider, "CN-mobile"))
    return judged.state if judged else ""


@pytest.mark.measure  # minutes of real traffic: `make measure` (tests/dispatch/test_routing_quality.py: the rules)
@override_settings(ROUTING_QUALITY_MIN_MESSAGES=10)
def test_undelivered_receipts_move_a_segment_away_within_2_minutes_and_back_on_recovery(
    api, sms_template, live_sim, dispatch_worker
) -> None:
    for kind in ("aliyun", "tencent"):
        make_provider(kind, endpoint=live_sim.url, receipt_token=RECEIPT_TOKEN)
    traffic = Traffic(api)
    traffic.run_until(lambda: _state("test-aliyun") == "ok" and _state("test-tencent") == "ok", 60)

    live_sim.behave("aliyun", receipt="undelivered")
    fault = time.monotonic()
    demoted_after = traffic.run_until(lambda: _state("test-aliyun") == "demoted", 150)
    traffic.run_until(lambda: time.monotonic() - fault > demoted_after + 60, 80)
    live_sim.behave("aliyun", receipt="delivered")
    recovery = time.monotonic()
    back_after = traffic.run_until(lambda: _state("test-aliyun") == "ok", 240)
    traffic.run_until(lambda: time.monotonic() - recovery > back_after + 20, 60)

    rows = traffic.providers()
    # The shift: the first 5 s step after the fault from which on (until the recovery) at most 5 % of
    # new messages went to the faulty provider.
    shift = next(
        (step for step in range(0, int(recovery - fault), 5) if _share(rows, "test-aliyun", fault + step, recovery)[0] <= 0.05),
        None,
    )
    assert shift is not None
    after_share, after_count = _share(rows, "test-aliyun", fault + shift, recovery)
    # The return: the first 10 s window after the recovery with at least a third of the traffic back.
    returned = next(
        (
            step
            for step in range(0, int(time.monotonic() - recovery), 2)
            if _share(rows, "test-aliyun", recovery + step, recovery + step + 10)[0] >= 1 / 3
        ),
        None,
    )
    assert returned is not None
    before_share, _ = _share(rows, "test-aliyun", 0, fault)
    print(
        f"\nrouting on delivery data: aliyun share before {before_share:.0%}; demoted {demoted_after:.0f} s after its "
        f"receipts turned undelivered; ≥95 % of new messages to tencent from {shift} s on ({1 - after_share:.1%} of "
        f"{after_count}); back {back_after:.0f} s after recovery, a third of the traffic again after {returned} s"
    )
    assert shift <= 120
    assert after_count >= 100
    assert returned <= 180


def _providers_of(api: Any, message_ids: list[Any]) -> set[str]:
    wait_until(lambda: Message.objects.filter(id__in=message_ids, status__in=SETTLED).count() == len(message_ids), 30, "sends")
    return set(Message.objects.filter(id__in=message_ids).values_list("provider", flat=True))


def test_pin_and_exclude_per_segment_apply_to_the_next_messages_without_a_restart(
    api, sms_template, live_sim, dispatch_worker, operator
) -> None:
    aliyun = make_provider("aliyun", endpoint=live_sim.url, receipt_token=RECEIPT_TOKEN)
    make_provider("tencent", endpoint=live_sim.url, receipt_token=RECEIPT_TOKEN)
    assert _providers_of(api, _send(api, 1, 30)) == {"test-aliyun", "test-tencent"}

    added = "/admin/dispatch/providersegmentrule/add/"
    refused = operator.post(added, {"provider": aliyun.id, "segment": "CN-mobil", "action": "exclude"})
    assert refused.status_code == 200 and "Not a destination segment" in refused.content.decode()
    response = operator.post(added, {"provider": aliyun.id, "segment": "CN-mobile", "action": "exclude", "note": "complaints"})
    assert response.status_code == 302, response.content.decode()[:2000]
    assert _providers_of(api, _send(api, 2, 30)) == {"test-tencent"}
    # Other segments keep both.
    response = api.post(
        "/api/v1/messages", {"template": "notice", "to": [{"phone": f"+86186{n:08d}"} for n in range(30)], "params": {"n": "1"}}
    )
    unicom = [ids.decode("msg", m["id"]) for m in response.json()["messages"]]
    assert _providers_of(api, unicom) == {"test-aliyun", "test-tencent"}

    rule = aliyun.segment_rules.get()
    response = operator.post(
        f"/admin/dispatch/providersegmentrule/{rule.id}/change/", {"provider": aliyun.id, "segment": "CN-mobile", "action": "pin"}
    )
    assert response.status_code == 302
    assert _providers_of(api, _send(api, 3, 30)) == {"test-aliyun"}


def test_each_sent_message_costs_its_price_times_segments_the_cheaper_of_a_tie_gets_it_and_stats_sum_it(
    api, make_template, live_sim, dispatch_worker, operator
) -> None:
    # 80 characters with a Chinese one: UCS-2, 2 SMS segments each (67 characters per part).
    make_template(
        api,
        code="long_notice",
        content="您的订单 {{n}} " + "x" * 70,
        provider_template_ids={"aliyun": "SMS_100", "tencent": "1001"},
    )
    aliyun = make_provider("aliyun", endpoint=live_sim.url, receipt_token=RECEIPT_TOKEN)
    tencent = make_provider("tencent", endpoint=live_sim.url, receipt_token=RECEIPT_TOKEN)
    for provider, segment, price in ((aliyun, "*", 45_000), (tencent, "*", 50_000), (tencent, "CN-mobile", 38_000)):
        response = operator.post(
            "/admin/dispatch/providerprice/add/", {"provider": provider.id, "segment": segment, "price": price}
        )
        assert response.status_code == 302, response.content.decode()[:2000]

    # Equal weight, both healthy: the cheaper for CN-mobile (Tencent at 0.038) takes all of it.
    mobile = _send(api, 1, 20, template="long_notice")
    assert _providers_of(api, mobile) == {"test-tencent"}
    assert set(Message.objects.filter(id__in=mobile).values_list("segments", "cost")) == {(2, 76_000)}
    # Unequal weights are the operator's split: price no longer decides.
    aliyun.weight = 300
    aliyun.save()
    unicom_ids = [
        ids.decode("msg", m["id"])
        for m in api.post(
            "/api/v1/messages",
            {"template": "long_notice", "to": [{"phone": f"+86186{n:08d}"} for n in range(40)], "params": {"n": "1"}},
        ).json()["messages"]
    ]
    assert _providers_of(api, unicom_ids) == {"test-aliyun", "test-tencent"}

    wait_until(lambda: Message.objects.filter(status="delivered").count() == 60, 30, "receipts")
    groups = {g["key"]: g for g in api.get("/api/v1/stats", {"group_by": "provider"}).json()["groups"]}
    expected = {
        name: sum(Message.objects.filter(provider=name).values_list("cost", flat=True)) / 1_000_000
        for name in ("test-aliyun", "test-tencent")
    }
    assert expected["test-tencent"] >= 20 * 0.076
    assert {name: groups[name]["cost"] for name in expected} == pytest.approx(expected)
    assert groups["test-aliyun"]["cost"] == pytest.approx(groups["test-aliyun"]["sent"] * 0.09)
    assert groups["test-aliyun"]["currency"] == "CNY"
    by_segment = {g["key"]: g["cost"] for g in api.get("/api/v1/stats", {"group_by": "segment"}).json()["groups"]}
    assert by_segment["CN-mobile"] == pytest.approx(20 * 0.076)
