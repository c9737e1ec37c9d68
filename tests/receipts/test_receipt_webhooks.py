"""`POST /api/v1/receipts/{provider}`: each provider's format, its proof of origin, and the
reliability rules (stored once, matched late, statuses only move forward)."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest
from django.conf import settings
from django.test import Client, override_settings

from apps.dispatch.models import Message, MessageEvent
from apps.dispatch.providers.twilio import compute_signature
from apps.dispatch.providers.wechat import signature as wechat_signature
from apps.receipts import matching
from apps.receipts.hooks import messages_reached
from apps.receipts.models import ProviderReceipt
from tests.receipts.conftest import RECEIPT_TOKEN, SIM_SETTINGS, make_provider

pytestmark = pytest.mark.django_db

PUBLIC = "https://mc.example.com"


def aliyun_report(message: Message, *, success: bool = True, code: str = "DELIVERED") -> bytes:
    return json.dumps(
        [
            {
                "phone_number": message.address.removeprefix("+86"),
                "send_time": "2026-11-23 10:00:00",
                "report_time": "2026-11-23 10:00:01",
                "success": success,
                "err_code": code,
                "err_msg": "ok" if success else "failed",
                "sms_size": "1",
                "biz_id": message.provider_message_id,
                "out_id": message.public_id,
            }
        ]
    ).encode()


def push(path: str, body: bytes, content_type: str = "application/json", **headers: str):  # type: ignore[no-untyped-def]
    """A provider's push, then what the receipts worker's `receipts.match_pending` task does with it
    (run here, in the test's transaction, where the stored report is visible)."""
    response = Client().post(path, body, content_type=content_type, **headers)
    matching.receipts_match_pending()
    return response


@pytest.fixture
def aliyun():  # type: ignore[no-untyped-def]
    return make_provider("aliyun", receipt_token=RECEIPT_TOKEN)


def test_aliyun_report_with_the_token_delivers_the_message(aliyun, make_message) -> None:
    message = make_message()
    response = push(f"/api/v1/receipts/aliyun?token={RECEIPT_TOKEN}", aliyun_report(message))
    assert response.status_code == 200, response.content
    assert response.json() == {"code": 0, "msg": "成功"}
    message.refresh_from_db()
    assert message.status == "delivered" and message.delivered_at is not None and message.delivered_at >= message.sent_at
    [event] = MessageEvent.objects.filter(message=message, status="delivered")
    assert "test-aliyun reported delivered" in event.detail
    receipt = ProviderReceipt.objects.get()
    assert receipt.message_id == message.id and receipt.provider == "test-aliyun" and receipt.message_ref == message.id


def test_token_in_the_path_works_too(aliyun, make_message) -> None:
    message = make_message()
    assert push(f"/api/v1/receipts/t/{RECEIPT_TOKEN}/test-aliyun", aliyun_report(message)).status_code == 200
    message.refresh_from_db()
    assert message.status == "delivered"


@pytest.mark.parametrize("query", ["", "?token=wrong", f"?token={RECEIPT_TOKEN[:-1]}"])
def test_forged_or_unsigned_report_is_refused_and_changes_nothing(aliyun, make_message, query) -> None:
    message = make_message()
    response = push(f"/api/v1/receipts/aliyun{query}", aliyun_report(message))
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_signature"
    message.refresh_from_db()
    assert message.status == "sent" and not ProviderReceipt.objects.exists()


def test_unsigned_provider_without_a_token_is_never_trusted(make_message) -> None:
    make_provider("aliyun")
    message = make_message()
    assert push("/api/v1/receipts/aliyun", aliyun_report(message)).status_code == 401


def test_unknown_provider_is_refused(make_message) -> None:
    assert push("/api/v1/receipts/nobody", b"[]").status_code == 401


def test_replayed_report_changes_nothing(aliyun, make_message) -> None:
    message = make_message()
    url = f"/api/v1/receipts/aliyun?token={RECEIPT_TOKEN}"
    assert push(url, aliyun_report(message)).status_code == 200
    message.refresh_from_db()
    before = (message.delivered_at, MessageEvent.objects.filter(message=message).count())
    assert push(url, aliyun_report(message)).status_code == 200
    message.refresh_from_db()
    assert (message.delivered_at, MessageEvent.objects.filter(message=message).count()) == before
    assert ProviderReceipt.objects.count() == 1


def test_report_for_an_unknown_message_is_kept_unmatched(aliyun) -> None:
    body = json.dumps(
        [{"phone_number": "13900000009", "report_time": "2026-11-23 10:00:01", "success": True, "biz_id": "nope-1"}]
    ).encode()
    assert push(f"/api/v1/receipts/aliyun?token={RECEIPT_TOKEN}", body).status_code == 200
    receipt = ProviderReceipt.objects.get()
    assert receipt.message_id is None and receipt.provider_message_id == "nope-1"


@pytest.mark.parametrize("body", [b"{not json", b'{"an": "object"}', b'[{"success": "yes"}]'])
def test_malformed_report_is_a_400(aliyun, body) -> None:
    response = push(f"/api/v1/receipts/aliyun?token={RECEIPT_TOKEN}", body)
    assert response.status_code == 400 and response.json()["code"] == "validation_error"
    assert not ProviderReceipt.objects.exists()


def test_status_never_moves_backwards(aliyun, make_message) -> None:
    message = make_message()
    url = f"/api/v1/receipts/aliyun?token={RECEIPT_TOKEN}"
    assert push(url, aliyun_report(message)).status_code == 200
    assert push(url, aliyun_report(message, success=False, code="MK:0001")).status_code == 200
    message.refresh_from_db()
    assert message.status == "delivered" and message.code == ""
    assert ProviderReceipt.objects.filter(message=message).count() == 2  # kept, but ignored


def test_delivered_after_undelivered_wins(aliyun, make_message) -> None:
    message = make_message()
    url = f"/api/v1/receipts/aliyun?token={RECEIPT_TOKEN}"
    assert push(url, aliyun_report(message, success=False, code="MK:0001")).status_code == 200
    message.refresh_from_db()
    assert message.status == "undelivered" and message.code == "MK:0001"
    assert push(url, aliyun_report(message)).status_code == 200
    message.refresh_from_db()
    assert message.status == "delivered"


def test_batch_report_updates_each_message_in_one_request(aliyun, make_message) -> None:
    messages = [make_message() for _ in range(5)]
    body = json.dumps([json.loads(aliyun_report(m, success=i % 2 == 0))[0] for i, m in enumerate(messages)]).encode()
    assert push(f"/api/v1/receipts/aliyun?token={RECEIPT_TOKEN}", body).status_code == 200
    statuses = [Message.objects.get(id=m.id).status for m in messages]
    assert statuses == ["delivered", "undelivered", "delivered", "undelivered", "delivered"]


def test_the_push_itself_applies_a_report_of_a_sent_message(aliyun, make_message) -> None:
    """No receipts worker involved: the web process's statement stores, matches and applies it, and
    leaves nothing pending; a report of a message still being sent waits for the worker instead."""
    from messaging_center.broker import broker_client

    client = broker_client()
    client.delete(matching.PENDING_KEY)
    sent, sending = make_message(), make_message(status="sending", provider_message_id="biz-later")
    early = json.loads(aliyun_report(sending))[0] | {"out_id": ""}
    body = json.dumps([json.loads(aliyun_report(sent))[0], early]).encode()
    response = Client().post(f"/api/v1/receipts/aliyun?token={RECEIPT_TOKEN}", body, content_type="application/json")
    assert response.status_code == 200
    sent.refresh_from_db()
    assert sent.status == "delivered" and sent.delivered_at is not None
    [event] = MessageEvent.objects.filter(message=sent, status="delivered")
    assert event.detail == "test-aliyun reported delivered (DELIVERED: ok)" and event.id.version == 7 and event.id > sent.id
    late = ProviderReceipt.objects.get(provider_message_id="biz-later")
    assert ProviderReceipt.objects.get(message_ref=sent.id).message_id == sent.id and late.message_id is None
    assert client.smembers(matching.PENDING_KEY) == {str(late.id).encode()}
    assert Message.objects.get(id=sending.id).status == "sending"


def test_report_that_beats_the_sent_finish_is_applied_when_the_message_is_sent(aliyun, make_message) -> None:
    message = make_message(status="sending", provider_message_id="")
    tencent_like = json.loads(aliyun_report(message))
    tencent_like[0]["biz_id"] = "biz-early"
    tencent_like[0]["out_id"] = ""  # no id of ours: only the provider id can match it
    assert push(f"/api/v1/receipts/aliyun?token={RECEIPT_TOKEN}", json.dumps(tencent_like).encode()).status_code == 200
    message.refresh_from_db()
    assert message.status == "sending" and ProviderReceipt.objects.get().message_id is None

    Message.objects.filter(id=message.id).update(status="sent", provider_message_id="biz-early")
    messages_reached([message.id], "sent")  # what the engine calls after its finish
    message.refresh_from_db()
    assert message.status == "delivered"
    assert ProviderReceipt.objects.get().message_id == message.id


@pytest.mark.parametrize("status", ["retry_wait", "expired"])
def test_receipt_settles_an_attempt_whose_outcome_was_unknown(aliyun, make_message, status) -> None:
    message = make_message(status=status, provider_message_id="")
    report = json.loads(aliyun_report(message))
    report[0]["biz_id"] = "biz-of-the-lost-answer"  # we never saw it; our id (OutId) matches
    assert push(f"/api/v1/receipts/aliyun?token={RECEIPT_TOKEN}", json.dumps(report).encode()).status_code == 200
    message.refresh_from_db()
    assert message.status == "delivered" and message.sent_at is not None


def test_tencent_report_matches_by_serial_number(make_message) -> None:
    make_provider("tencent", receipt_token=RECEIPT_TOKEN)
    message = make_message(provider="test-tencent", provider_message_id="2019:538884*")
    body = json.dumps(
        [
            {
                "user_receive_time": "2026-11-23 10:00:01",
                "nationcode": "86",
                "mobile": message.address.removeprefix("+86"),
                "report_status": "FAIL",
                "errmsg": "MK:0005",
                "description": "blocked",
                "sid": "2019:538884*",
            }
        ]
    ).encode()
    response = push(f"/api/v1/receipts/tencent?token={RECEIPT_TOKEN}", body)
    assert response.status_code == 200 and response.json()["result"] == 0
    message.refresh_from_db()
    assert (message.status, message.code, message.detail) == ("undelivered", "MK:0005", "blocked")


@override_settings(RECEIPTS_BASE_URL=PUBLIC)
def test_twilio_status_callback_is_verified_against_the_receipts_url(make_message) -> None:
    make_provider("twilio")
    message = make_message(provider="test-twilio", provider_message_id="SM123")
    path = "/api/v1/receipts/twilio?" + urlencode({"message_id": message.public_id})
    fields = {"MessageSid": "SM123", "MessageStatus": "delivered", "To": message.address}
    body = urlencode(fields).encode()
    good = compute_signature(SIM_SETTINGS["twilio"]["auth_token"], PUBLIC + path, sorted(fields.items()))
    form = "application/x-www-form-urlencoded"

    assert push(path, body, form, HTTP_X_TWILIO_SIGNATURE="bm90IGl0").status_code == 401
    signed_for_other_url = compute_signature(SIM_SETTINGS["twilio"]["auth_token"], "https://evil.example" + path, [])
    assert push(path, body, form, HTTP_X_TWILIO_SIGNATURE=signed_for_other_url).status_code == 401
    message.refresh_from_db()
    assert message.status == "sent"

    assert push(path, body, form, HTTP_X_TWILIO_SIGNATURE=good).status_code == 204
    message.refresh_from_db()
    assert message.status == "delivered"


@override_settings(RECEIPTS_BASE_URL=PUBLIC)
def test_wechat_template_job_finish_is_verified_by_its_query_signature(make_message) -> None:
    make_provider("wechat")
    message = make_message(provider="test-wechat", provider_message_id="200163836")
    token = SIM_SETTINGS["wechat"]["token"]
    body = (
        b"<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[oUser]]></FromUserName>"
        b"<CreateTime>1795000000</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        b"<Event><![CDATA[TEMPLATESENDJOBFINISH]]></Event><MsgID>200163836</MsgID>"
        b"<Status><![CDATA[failed:user block]]></Status></xml>"
    )
    query = {"timestamp": "1795000000", "nonce": "42", "signature": wechat_signature(token, "1795000000", "42")}
    assert push("/api/v1/receipts/wechat?" + urlencode({**query, "signature": "0" * 40}), body, "text/xml").status_code == 401
    response = push("/api/v1/receipts/wechat?" + urlencode(query), body, "text/xml")
    assert response.status_code == 200 and response.content == b"success"
    message.refresh_from_db()
    assert message.status == "undelivered"

    broken = push("/api/v1/receipts/wechat?" + urlencode(query), b"<xml><unclosed>", "text/xml")
    assert broken.status_code == 400


def test_a_failed_message_stays_failed(aliyun, make_message) -> None:
    message = make_message(status="failed")
    assert push(f"/api/v1/receipts/aliyun?token={RECEIPT_TOKEN}", aliyun_report(message)).status_code == 200
    message.refresh_from_db()
    assert message.status == "failed"


def test_one_batch_call_report_is_applied_to_each_number_on_its_own(aliyun, make_message) -> None:
    """An Aliyun SendBatchSms call has one BizId for all its numbers (and our batch reference as
    OutId): each report moves only the message to its own number."""
    delivered, undelivered, waiting = (make_message(provider_message_id="900000000000000042^0") for _ in range(3))
    report = [
        json.loads(aliyun_report(delivered))[0] | {"out_id": "mcb-0123"},
        json.loads(aliyun_report(undelivered, success=False, code="UNDELIV"))[0] | {"out_id": "mcb-0123"},
    ]
    body = json.dumps(report).encode()
    assert push(f"/api/v1/receipts/aliyun?token={RECEIPT_TOKEN}", body).status_code == 200
    assert push(f"/api/v1/receipts/aliyun?token={RECEIPT_TOKEN}", body).status_code == 200  # a replay changes nothing
    for message in (delivered, undelivered, waiting):
        message.refresh_from_db()
    assert (delivered.status, undelivered.status, waiting.status) == ("delivered", "undelivered", "sent")
    assert undelivered.code == "UNDELIV"
    assert sorted(ProviderReceipt.objects.values_list("message_id", flat=True)) == sorted([delivered.id, undelivered.id])


def test_a_report_whose_number_is_written_differently_matches_its_provider_ids_only_message(aliyun, make_message) -> None:
    """A number the provider writes otherwise than we stored it: the provider id decides, but only
    when no other message has that id (in a batch the number is needed to tell them apart)."""
    alone = make_message(provider_message_id="biz-alone")
    batch = [make_message(provider_message_id="biz-shared") for _ in range(2)]
    reports = [
        json.loads(aliyun_report(message))[0] | {"phone_number": f"000{i}", "out_id": ""}
        for i, message in enumerate((alone, *batch))
    ]
    assert push(f"/api/v1/receipts/aliyun?token={RECEIPT_TOKEN}", json.dumps(reports).encode()).status_code == 200
    for message in (alone, *batch):
        message.refresh_from_db()
    assert [alone.status, *(m.status for m in batch)] == ["delivered", "sent", "sent"]
    assert ProviderReceipt.objects.filter(message__isnull=True).count() == 2


def test_early_reports_of_one_batch_call_are_each_applied_to_their_number_when_it_is_sent(aliyun, make_message) -> None:
    first, second = (make_message(status="sending", provider_message_id="") for _ in range(2))
    report = [
        json.loads(aliyun_report(first))[0] | {"biz_id": "biz-batch-early", "out_id": "mcb-1"},
        json.loads(aliyun_report(second, success=False, code="UNDELIV"))[0] | {"biz_id": "biz-batch-early", "out_id": "mcb-1"},
    ]
    assert push(f"/api/v1/receipts/aliyun?token={RECEIPT_TOKEN}", json.dumps(report).encode()).status_code == 200
    assert ProviderReceipt.objects.filter(message__isnull=True).count() == 2

    Message.objects.filter(id__in=[first.id, second.id]).update(status="sent", provider_message_id="biz-batch-early")
    messages_reached([first.id, second.id], "sent")
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, second.status) == ("delivered", "undelivered")
    assert dict(ProviderReceipt.objects.values_list("status", "message_id")) == {
        "delivered": first.id,
        "undelivered": second.id,
    }


def test_the_receipts_listener_takes_reports_and_serves_nothing_else(aliyun, make_message) -> None:
    """RECEIPTS_PORT runs messaging_center.wsgi_receipts: these URLs and this middleware chain."""
    message = make_message()
    with override_settings(ROOT_URLCONF="messaging_center.urls_receipts", MIDDLEWARE=settings.RECEIPTS_MIDDLEWARE):
        response = push(f"/api/v1/receipts/t/{RECEIPT_TOKEN}/aliyun", aliyun_report(message))
        assert response.status_code == 200, response.content
        message.refresh_from_db()
        assert message.status == "delivered"
        assert push("/api/v1/receipts/aliyun?token=wrong", aliyun_report(message)).status_code == 401
        for path in ("/api/v1/messages", "/api/docs/"):
            response = Client().get(path)
            assert response.status_code == 404 and response.json()["code"] == "not_found"
        assert Client().get("/admin/").status_code == 404
        assert Client().get("/healthz").status_code == 200
