"""Status reports: the providers' documented formats, the simulator's pushes, and polling."""

from __future__ import annotations

import datetime as dt
import json
from urllib.parse import parse_qs

import pytest

from apps.dispatch.providers import adapter_class
from apps.dispatch.providers.base import Receipt, ReceiptFormatError
from tests.dispatch.conftest import Simulator
from tests.dispatch.test_provider_adapters import adapter, message
from tests.helpers import wait_until

CHINA = dt.timezone(dt.timedelta(hours=8))

# help.aliyun.com/document_detail/101867 (SmsReport, HTTP batch push), the documented sample.
ALIYUN_REPORT = """[
  {"phone_number": "13900000001", "send_time": "2017-01-01 11:12:13", "report_time": "2017-02-02 22:23:24",
   "success": true, "err_code": "DELIVERED", "err_msg": "用户接收成功", "sms_size": "1", "biz_id": "12345", "out_id": "67890"},
  {"phone_number": "13900000002", "send_time": "2017-01-01 11:12:13", "report_time": "2017-02-02 22:23:25",
   "success": false, "err_code": "MK:0001", "err_msg": "failed", "sms_size": "1", "biz_id": "12346", "out_id": ""}
]""".encode()
# cloud.tencent.com/document/product/382/52077 (SMS sending status notification), the documented sample.
TENCENT_REPORT = b"""[
  {"user_receive_time": "2015-10-17 08:03:04", "nationcode": "86", "mobile": "13xxxxxxxxx", "report_status": "SUCCESS",
   "errmsg": "DELIVRD", "description": "The SMS message is successfully delivered", "sid": "xxxxxxx"}
]"""
# twilio.com/docs/messaging/guides/track-outbound-message-status: a StatusCallback body.
TWILIO_REPORT = (
    b"AccountSid=ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX&ApiVersion=2010-04-01&ErrorCode=30003&From=%2B15017122661"
    b"&MessageSid=SMXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX&MessageStatus=undelivered&SmsSid=SMXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"
    b"&SmsStatus=undelivered&To=%2B15558675310"
)


def test_aliyun_parses_its_documented_report() -> None:
    receipts = adapter_class("aliyun")({}).parse_receipt(headers={}, body=ALIYUN_REPORT)
    assert receipts == [
        Receipt(
            "aliyun",
            "12345",
            "67890",
            "+8613900000001",
            "delivered",
            "DELIVERED",
            "用户接收成功",
            dt.datetime(2017, 2, 2, 22, 23, 24, tzinfo=CHINA),
        ),
        Receipt(
            "aliyun",
            "12346",
            None,
            "+8613900000002",
            "undelivered",
            "MK:0001",
            "failed",
            dt.datetime(2017, 2, 2, 22, 23, 25, tzinfo=CHINA),
        ),
    ]


def test_tencent_parses_its_documented_report() -> None:
    [receipt] = adapter_class("tencent")({}).parse_receipt(headers={}, body=TENCENT_REPORT)
    assert receipt == Receipt(
        "tencent",
        "xxxxxxx",
        None,
        "+8613xxxxxxxxx",
        "delivered",
        "DELIVRD",
        "The SMS message is successfully delivered",
        dt.datetime(2015, 10, 17, 8, 3, 4, tzinfo=CHINA),
    )


def test_twilio_parses_final_statuses_and_skips_intermediate_ones() -> None:
    twilio = adapter_class("twilio")({})
    [receipt] = twilio.parse_receipt(headers={}, body=TWILIO_REPORT)
    assert (receipt.provider_message_id, receipt.status, receipt.code, receipt.to) == (
        "SMXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
        "undelivered",
        "30003",
        "+15558675310",
    )
    assert receipt.at.tzinfo is not None
    assert twilio.parse_receipt(headers={}, body=TWILIO_REPORT.replace(b"=undelivered", b"=sent")) == []


@pytest.mark.parametrize(
    ("provider", "body"),
    [
        ("aliyun", b"not json"),
        ("aliyun", b'{"phone_number": "1"}'),
        ("aliyun", b'[{"phone_number": "1", "success": "yes", "biz_id": "1"}]'),
        ("aliyun", b'[{"phone_number": "1", "success": true, "biz_id": "1", "report_time": "yesterday"}]'),
        ("tencent", b"\xff\xfe"),
        ("tencent", b'[{"sid": "1", "report_status": "MAYBE"}]'),
        ("twilio", b"MessageStatus=delivered"),
        ("twilio", b"\xff=\xfe"),
    ],
)
def test_malformed_reports_raise_receipt_format_error(provider: str, body: bytes) -> None:
    with pytest.raises(ReceiptFormatError):
        adapter_class(provider)({}).parse_receipt(headers={}, body=body)


def test_unsigned_providers_accept_any_report_and_twilio_needs_its_signature() -> None:
    for kind in ("aliyun", "tencent"):
        assert adapter_class(kind)({}).verify_receipt_signature(method="POST", url="http://x/", headers={}, body=b"[]")
    twilio = adapter_class("twilio")({"auth_token": "t"})
    assert not twilio.verify_receipt_signature(method="POST", url="http://x/", headers={}, body=TWILIO_REPORT)


@pytest.mark.parametrize(("outcome", "status"), [("delivered", "delivered"), ("undelivered", "undelivered")])
@pytest.mark.parametrize("provider", ["aliyun", "tencent"])
def test_the_simulator_pushes_reports_the_adapter_parses(sim: Simulator, provider: str, outcome: str, status: str) -> None:
    sim.behave(provider, receipt=outcome, receipt_delay_ms=0)
    sender = adapter(sim, provider)
    sent = [sender.send(message(n, provider_template_id="1")) for n in (21, 22)]

    path = f"/receipts/{provider}"
    wait_until(lambda: sum(len(json.loads(r.body)) for r in sim.receiver.on(path)) >= 2, 5, "two pushed reports")
    receipts = [
        receipt for pushed in sim.receiver.on(path) for receipt in sender.parse_receipt(headers=pushed.headers, body=pushed.body)
    ]
    assert sorted((r.provider_message_id, r.to, r.status) for r in receipts) == sorted(
        (result.provider_message_id, f"+86138001000{n}", status) for result, n in zip(sent, (21, 22), strict=True)
    )
    if provider == "aliyun":
        assert {r.message_id for r in receipts} == {"msg_01jtest000021", "msg_01jtest000022"}


def test_the_simulator_pushes_signed_twilio_callbacks_to_the_status_callback(sim: Simulator) -> None:
    sim.behave("twilio", receipt="undelivered", receipt_delay_ms=0)
    sender = adapter(sim, "twilio")
    callback = f"{sim.receiver.base_url}/twilio-status?token=abc"
    result = sender.send(message(23, callback_url=callback))

    wait_until(lambda: sim.receiver.on("/twilio-status"), 5, "the status callback")
    [pushed] = sim.receiver.on("/twilio-status")
    url = sim.receiver.base_url + pushed.path
    assert parse_qs(pushed.path.partition("?")[2]) == {"token": ["abc"], "message_id": ["msg_01jtest000023"]}
    assert sender.verify_receipt_signature(method="POST", url=url, headers=pushed.headers, body=pushed.body)
    assert not sender.verify_receipt_signature(method="POST", url=url + "x", headers=pushed.headers, body=pushed.body)
    [receipt] = sender.parse_receipt(headers=pushed.headers, body=pushed.body)
    assert (receipt.provider_message_id, receipt.status, receipt.code) == (result.provider_message_id, "undelivered", "30003")


def test_no_push_when_receipts_are_off(sim: Simulator) -> None:
    sim.behave("*", receipt="none", receipt_delay_ms=0)
    adapter(sim, "aliyun").send(message(24))
    adapter(sim, "twilio").send(message(25))
    with pytest.raises(AssertionError):
        wait_until(lambda: sim.receiver.requests, 0.5, "a push")


def test_aliyun_polling_returns_receipts_once_reported(sim: Simulator) -> None:
    sim.behave("aliyun", receipt_delay_ms=300)
    sender = adapter(sim, "aliyun")
    outbound = message(26)
    biz_id = sender.send(outbound).provider_message_id
    since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)

    assert sender.poll_receipts(since=since, phones_and_ids=[(outbound.to, biz_id)]) == []  # still waiting (SendStatus 1)
    wait_until(lambda: sender.poll_receipts(since=since, phones_and_ids=[(outbound.to, biz_id)]), 5, "the delivered status")
    [receipt] = sender.poll_receipts(since=since, phones_and_ids=[(outbound.to, biz_id)])
    assert (receipt.provider_message_id, receipt.message_id, receipt.to, receipt.status, receipt.code) == (
        biz_id,
        outbound.message_id,
        outbound.to,
        "delivered",
        "DELIVERED",
    )
    assert sender.poll_receipts(since=since, phones_and_ids=[(outbound.to, "unknown^0")]) == []
    # Without a BizId (after an ambiguous timeout) the phone's receipts carry our id back.
    [by_phone] = sender.poll_receipts(since=since, phones_and_ids=[(outbound.to, "")])
    assert (by_phone.message_id, by_phone.status) == (outbound.message_id, "delivered")
    assert sender.poll_receipts(since=since) == []


def test_tencent_polling_hands_out_each_status_once(sim: Simulator) -> None:
    sim.behave("tencent", receipt="undelivered", receipt_delay_ms=0)
    sender = adapter(sim, "tencent")
    results = [sender.send(message(n, provider_template_id="1")) for n in (27, 28)]
    since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)

    collected: list[Receipt] = []
    wait_until(lambda: collected.extend(sender.poll_receipts(since=since)) or len(collected) >= 2, 5, "two pulled statuses")
    assert sorted((r.provider_message_id, r.message_id, r.status) for r in collected) == sorted(
        (result.provider_message_id, f"msg_01jtest0000{n}", "undelivered") for result, n in zip(results, (27, 28), strict=True)
    )
    assert sender.poll_receipts(since=since) == []
