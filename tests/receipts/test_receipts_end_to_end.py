"""Real workers, the provider simulator and our app on a live server: an SMS sent through the API
reaches `delivered` by a pushed report and by polling, and the business system hears about it."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.test import override_settings

from apps.accounts.services import account_set_callback
from apps.dispatch.models import Message, Provider
from apps.dispatch.routing.routes import providers_changed
from apps.receipts.models import Failover, ProviderReceipt
from apps.receipts.polling import receipts_poll
from messaging_center import ids
from tests.helpers import wait_until
from tests.receipts.conftest import RECEIPT_TOKEN, make_provider, verify_signature

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def _send(api, phone: str) -> str:  # type: ignore[no-untyped-def]
    response = api.post("/api/v1/messages", {"template": "notice", "to": {"phone": phone}, "params": {"n": "7"}})
    assert response.status_code == 202, response.content
    return str(response.json()["messages"][0]["id"])


def _status(api, message_id: str) -> str:  # type: ignore[no-untyped-def]
    return str(api.get(f"/api/v1/messages/{message_id}").json()["status"])


def test_pushed_report_delivers_and_the_business_system_hears_sent_and_delivered(
    api, sms_template, live_sim, dispatch_worker, receipts_worker, callback_receiver
) -> None:
    make_provider("aliyun", endpoint=live_sim.url, receipt_token=RECEIPT_TOKEN)
    secret = account_set_callback(account=api.account, callback_url=callback_receiver.url)
    message_id = _send(api, "+8613800000001")

    wait_until(lambda: _status(api, message_id) == "delivered", 30, "the pushed receipt")
    body = api.get(f"/api/v1/messages/{message_id}").json()
    assert [e["status"] for e in body["events"]] == ["queued", "sending", "sent", "delivered"]
    assert body["delivered_at"] >= body["sent_at"]
    assert ProviderReceipt.objects.get().source == "push"

    wait_until(lambda: len(callback_receiver.requests) >= 2, 30, "two status callbacks")
    assert sorted(callback_receiver.statuses()) == ["delivered", "sent"]
    for hook in callback_receiver.requests:
        assert hook.json["message_id"] == message_id
        assert verify_signature(hook.headers["X-MC-Signature"], hook.body, secret or "")


def test_undelivered_report_is_applied(api, sms_template, live_sim, dispatch_worker, receipts_worker) -> None:
    make_provider("aliyun", endpoint=live_sim.url, receipt_token=RECEIPT_TOKEN)
    live_sim.behave("aliyun", receipt="undelivered")
    message_id = _send(api, "+8613800000002")
    wait_until(lambda: _status(api, message_id) == "undelivered", 30, "the undelivered receipt")


@pytest.mark.parametrize("kind", ["aliyun", "tencent"])
def test_polling_delivers_when_pushes_do_not_arrive(api, sms_template, live_sim, dispatch_worker, kind) -> None:
    # No receipt token configured: the simulator's pushes are refused (401), only polling gets through.
    make_provider(kind, endpoint=live_sim.url)
    message_id = _send(api, "+8613800000003")
    wait_until(lambda: _status(api, message_id) == "sent", 30, "the send")

    def polled() -> bool:
        with override_settings(RECEIPT_POLL_DELAY_SECONDS=0):
            receipts_poll()
        return _status(api, message_id) == "delivered"

    wait_until(polled, 30, f"a receipt polled from {kind}", interval=0.5)
    assert set(ProviderReceipt.objects.values_list("source", flat=True)) == {"poll"}
    assert Message.objects.get().delivered_at is not None


def test_polling_reaches_a_message_behind_hundreds_that_never_get_a_receipt(api, sms_template, live_sim, dispatch_worker) -> None:
    make_provider("aliyun", endpoint=live_sim.url)
    message_id = _send(api, "+8613800000005")
    wait_until(lambda: _status(api, message_id) == "sent", 30, "the send")
    sent = Message.objects.get()
    # 250 older messages the provider knows nothing of: more than one polling batch, never answered.
    Message.objects.bulk_create(
        Message(
            **{f.attname: getattr(sent, f.attname) for f in Message._meta.concrete_fields if f.attname != "id"}
            | {
                "address": f"+86139{n:08d}",
                "provider_message_id": f"lost-{n}",
                "sent_at": sent.sent_at - dt.timedelta(hours=1, seconds=-n),
            }
        )
        for n in range(250)
    )
    runs = []

    def polled() -> bool:
        with override_settings(RECEIPT_POLL_DELAY_SECONDS=0):
            receipts_poll()
        runs.append(1)
        return _status(api, message_id) == "delivered"

    # Each run asks about the next 200 in the lap, so the newest is asked about on the second run (and
    # every second run after that, until the provider has its status), however many are never answered.
    wait_until(polled, 30, "a receipt polled for the message behind 250 silent ones", interval=0.5)
    assert len(runs) >= 2
    assert Message.objects.filter(status="sent").count() == 250


@pytest.fixture
def login_code(api, make_template):  # type: ignore[no-untyped-def]
    return make_template(
        api,
        code="login_code",
        category="verification",
        content="Your code is {{code}}.",
        provider_template_ids={"aliyun": "SMS_200", "tencent": "2001"},
    )


def _code_sent_to(sim, phone: str, index: int = -1) -> str:  # type: ignore[no-untyped-def]
    record = sim.messages(to=phone)[index]
    params = record["request"].get("TemplateParam")
    return str(json.loads(params)["code"] if params else record["request"]["TemplateParamSet"][0])


def test_verification_flow(api, login_code, live_sim, dispatch_worker, receipts_worker) -> None:
    make_provider("aliyun", endpoint=live_sim.url, receipt_token=RECEIPT_TOKEN)
    phone = "+8613800000004"
    sent = api.post("/api/v1/verifications", {"to": {"phone": phone}, "template": "login_code"})
    assert sent.status_code == 202, sent.content
    wait_until(lambda: live_sim.messages(to=phone), 30, "the code at the provider")
    code = _code_sent_to(live_sim, phone)

    check = {"to": {"phone": phone}, "code": code}
    assert api.post("/api/v1/verifications/check", check).json() == {"valid": True}
    assert api.post("/api/v1/verifications/check", check).json() == {"valid": False, "reason": "invalid"}
    wait_until(lambda: _status(api, sent.json()["message_id"]) == "delivered", 30, "the code delivered")


def test_undelivered_code_is_resent_once_through_another_provider(
    api, login_code, live_sim, dispatch_worker, receipts_worker
) -> None:
    make_provider("aliyun", endpoint=live_sim.url, receipt_token=RECEIPT_TOKEN)
    tencent = make_provider("tencent", endpoint=live_sim.url, receipt_token=RECEIPT_TOKEN)
    Provider.objects.filter(id=tencent.id).update(priority_group=2)  # only the failover group
    providers_changed()
    live_sim.behave("aliyun", receipt="undelivered")
    phone = "+8613800000005"
    sent = api.post("/api/v1/verifications", {"to": {"phone": phone}, "template": "login_code"}).json()

    wait_until(lambda: Failover.objects.exists(), 30, "the failover")
    failover = Failover.objects.get()
    resend_id = ids.encode("msg", failover.resend_id)
    wait_until(lambda: _status(api, resend_id) == "delivered", 30, "the resend delivered")
    original = api.get(f"/api/v1/messages/{sent['message_id']}").json()
    assert original["status"] == "undelivered" and original["provider"] == "test-aliyun"
    assert original["events"][-1]["status"] == "failover" and resend_id in original["events"][-1]["detail"]
    resend = api.get(f"/api/v1/messages/{resend_id}").json()
    assert resend["provider"] == "test-tencent"
    assert sent["message_id"] in resend["events"][0]["detail"]
    assert [r["provider"] for r in live_sim.messages(to=phone)] == ["aliyun", "tencent"]
    # The same code went out twice; it is still one code, valid once.
    code = _code_sent_to(live_sim, phone)
    assert code == _code_sent_to(live_sim, phone, 0)
    assert api.post("/api/v1/verifications/check", {"to": {"phone": phone}, "code": code}).json() == {"valid": True}


def test_stats_show_one_provider_delivering_half_and_another_all(
    api, sms_template, live_sim, dispatch_worker, receipts_worker
) -> None:
    aliyun = make_provider("aliyun", endpoint=live_sim.url, receipt_token=RECEIPT_TOKEN)
    tencent = make_provider("tencent", endpoint=live_sim.url, receipt_token=RECEIPT_TOKEN)

    def only(provider: Provider) -> None:
        Provider.objects.update(enabled=False)
        Provider.objects.filter(id=provider.id).update(enabled=True)
        providers_changed()

    def run(count: int, start: int, final: str) -> None:
        sent = [_send(api, f"+86138100{start + i:05d}") for i in range(count)]
        wait_until(lambda: all(_status(api, m) == final for m in sent), 30, f"{count} messages {final}")

    only(aliyun)
    run(3, 0, "delivered")
    live_sim.behave("aliyun", receipt="undelivered")
    run(3, 100, "undelivered")
    only(tencent)
    run(4, 200, "delivered")

    groups = {g["key"]: g for g in api.get("/api/v1/stats", {"group_by": "provider"}).json()["groups"]}
    assert set(groups) == {"test-aliyun", "test-tencent"}
    half, full = groups["test-aliyun"], groups["test-tencent"]
    assert (half["total"], half["sent"], half["delivered"], half["undelivered"]) == (6, 6, 3, 3)
    assert (half["success_rate"], half["receipt_rate"], half["delivery_rate"]) == (1.0, 1.0, 0.5)
    assert (full["total"], full["delivered"], full["delivery_rate"], full["receipt_rate"]) == (4, 4, 1.0, 1.0)
    assert full["latency_p50_ms"] is not None and full["latency_p95_ms"] >= full["latency_p50_ms"]


def test_wechat_message_reaches_delivered_through_its_signed_receipt(
    api, make_template, live_sim, dispatch_worker, receipts_worker
) -> None:
    from apps.dispatch.models import Provider
    from apps.dispatch.providers_config import provider_save
    from devstack.providers import simulator_providers

    spec = simulator_providers(live_sim.url)["sim-wechat"]
    provider_save(
        provider=Provider(name="sim-wechat", kind="wechat", channel="wechat"),
        settings={**spec["settings"], "endpoint": live_sim.url},
    )
    make_template(
        api,
        code="shipped_wx",
        channel="wechat",
        title="Shipped",
        content="Order {{order_no}} shipped",
        provider_template_ids={"wechat": "TM0001"},
    )
    sent = api.post(
        "/api/v1/messages", {"template": "shipped_wx", "to": {"wechat_openid": "oUser_0042"}, "params": {"order_no": "A7"}}
    )
    assert sent.status_code == 202, sent.content
    message_id = sent.json()["messages"][0]["id"]
    wait_until(lambda: _status(api, message_id) == "delivered", 30, "the TEMPLATESENDJOBFINISH receipt")
    events = [e["status"] for e in api.get(f"/api/v1/messages/{message_id}").json()["events"]]
    assert events[-2:] == ["sent", "delivered"]
