"""Real workers, the provider simulator and our app on a live server: an SMS sent through the API
reaches `delivered` by a pushed report and by polling, and the business system hears about it."""

from __future__ import annotations

import pytest
from django.test import override_settings

from apps.accounts.services import account_set_callback
from apps.dispatch.models import Message
from apps.receipts.models import ProviderReceipt
from apps.receipts.polling import receipts_poll
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


def test_undelivered_report_is_applied(api, sms_template, live_sim, dispatch_worker) -> None:
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
