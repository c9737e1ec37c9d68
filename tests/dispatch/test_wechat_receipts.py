"""WeChat's TEMPLATESENDJOBFINISH event: the documented format, plain and safe (AES) mode signatures,
and the simulator's signed pushes."""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlencode

import pytest

from apps.dispatch.providers import adapter_class
from apps.dispatch.providers.base import Receipt, ReceiptFormatError
from apps.dispatch.providers.wechat import WechatTemplate, encrypt, signature
from tests.dispatch.conftest import SIM_SETTINGS, Simulator
from tests.dispatch.test_channel_adapters import adapter, message
from tests.helpers import wait_until

# developers.weixin.qq.com, template message interface: "event push after sending", both samples.
DELIVERED = b"""<xml>
<ToUserName><![CDATA[gh_7f083739789a]]></ToUserName>
<FromUserName><![CDATA[oia2TjuEGTNoeX76QEjQNrcURxG8]]></FromUserName>
<CreateTime>1395658920</CreateTime>
<MsgType><![CDATA[event]]></MsgType>
<Event><![CDATA[TEMPLATESENDJOBFINISH]]></Event>
<MsgID>200163836</MsgID>
<Status><![CDATA[success]]></Status>
</xml>"""
BLOCKED = DELIVERED.replace(b"200163836", b"200163840").replace(b"[success]", b"[failed:user block]")
SYSTEM_FAILED = DELIVERED.replace(b"[success]", b"[failed: system failed]")
RECEIVER = "https://mc.example/api/v1/receipts/wechat"
TOKEN = SIM_SETTINGS["wechat"]["token"]


def wechat() -> WechatTemplate:
    return WechatTemplate(SIM_SETTINGS["wechat"])


def plain_url(timestamp: str = "1395658920", nonce: str = "1320562132", **extra: str) -> str:
    query = {"signature": signature(TOKEN, timestamp, nonce), "timestamp": timestamp, "nonce": nonce, "openid": "oia2Tj"}
    return f"{RECEIVER}?{urlencode(query | extra)}"


def safe_request(xml: bytes, *, appid: str | None = None) -> tuple[str, bytes]:
    timestamp, nonce = "1395658920", "1320562132"
    encrypted = encrypt(
        xml, encoding_aes_key=SIM_SETTINGS["wechat"]["encoding_aes_key"], appid=appid or SIM_SETTINGS["wechat"]["appid"]
    )
    query = {
        "signature": signature(TOKEN, timestamp, nonce),
        "timestamp": timestamp,
        "nonce": nonce,
        "encrypt_type": "aes",
        "msg_signature": signature(TOKEN, timestamp, nonce, encrypted),
    }
    body = f"<xml><ToUserName><![CDATA[gh_7f083739789a]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
    return f"{RECEIVER}?{urlencode(query)}", body.encode()


def test_parses_the_documented_events() -> None:
    at = dt.datetime.fromtimestamp(1395658920, dt.UTC)
    assert wechat().parse_receipt(headers={}, body=DELIVERED) == [
        Receipt("wechat", "200163836", None, "oia2TjuEGTNoeX76QEjQNrcURxG8", "delivered", "success", "", at)
    ]
    assert wechat().parse_receipt(headers={}, body=BLOCKED) == [
        Receipt("wechat", "200163840", None, "oia2TjuEGTNoeX76QEjQNrcURxG8", "undelivered", "failed:user block", "user block", at)
    ]
    [failed] = wechat().parse_receipt(headers={}, body=SYSTEM_FAILED)
    assert (failed.status, failed.detail) == ("undelivered", "system failed")


def test_other_events_are_not_receipts_and_garbage_is_refused() -> None:
    subscribe = DELIVERED.replace(b"TEMPLATESENDJOBFINISH", b"subscribe")
    assert wechat().parse_receipt(headers={}, body=subscribe) == []
    for body in (b"not xml", b"<html></html>", DELIVERED.replace(b"<MsgID>200163836</MsgID>", b"")):
        with pytest.raises(ReceiptFormatError):
            wechat().parse_receipt(headers={}, body=body)


def test_a_dtd_is_refused_before_parsing() -> None:
    bomb = b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY a "aaaa">]><xml><Status>&a;</Status></xml>'
    with pytest.raises(ReceiptFormatError):
        wechat().parse_receipt(headers={}, body=bomb)


def test_plain_mode_signature_accepts_valid_and_rejects_tampered() -> None:
    adapter = wechat()
    assert adapter.verify_receipt_signature(method="POST", url=plain_url(), headers={}, body=DELIVERED)
    assert not adapter.verify_receipt_signature(
        method="POST", url=plain_url().replace("1320562132", "1320562133"), headers={}, body=DELIVERED
    )
    assert not adapter.verify_receipt_signature(method="POST", url=RECEIVER, headers={}, body=DELIVERED)
    other = WechatTemplate({**SIM_SETTINGS["wechat"], "token": "another-token"})
    assert not other.verify_receipt_signature(method="POST", url=plain_url(), headers={}, body=DELIVERED)


def test_safe_mode_signature_and_decryption() -> None:
    adapter = wechat()
    url, body = safe_request(BLOCKED)
    assert adapter.verify_receipt_signature(method="POST", url=url, headers={}, body=body)
    [receipt] = adapter.parse_receipt(headers={}, body=body)
    assert (receipt.provider_message_id, receipt.status) == ("200163840", "undelivered")

    tampered_body = body.replace(b"<![CDATA[", b"<![CDATA[A", 2)
    assert not adapter.verify_receipt_signature(method="POST", url=url, headers={}, body=tampered_body)
    tampered_url = url.replace("msg_signature=", "msg_signature=0")
    assert not adapter.verify_receipt_signature(method="POST", url=tampered_url, headers={}, body=body)
    # Correctly signed, but encrypted for another official account.
    foreign_url, foreign_body = safe_request(BLOCKED, appid="wx_someone_else")
    assert not adapter.verify_receipt_signature(method="POST", url=foreign_url, headers={}, body=foreign_body)
    with pytest.raises(ReceiptFormatError):
        adapter.parse_receipt(headers={}, body=foreign_body)


@pytest.mark.parametrize(("outcome", "status"), [("delivered", "delivered"), ("undelivered", "undelivered")])
def test_the_simulator_pushes_signed_events_the_adapter_accepts(sim: Simulator, outcome: str, status: str) -> None:
    sim.behave("wechat", receipt=outcome, receipt_delay_ms=0)
    sent = adapter(sim, "wechat").send(message("wechat", 40))

    wait_until(lambda: sim.receiver.on("/receipts/wechat"), 5, "the TEMPLATESENDJOBFINISH push")
    [pushed] = sim.receiver.on("/receipts/wechat")
    receiver = adapter_class("wechat")(sim.settings("wechat"))
    assert receiver.verify_receipt_signature(
        method="POST", url=sim.receiver.base_url + pushed.path, headers=pushed.headers, body=pushed.body
    )
    [receipt] = receiver.parse_receipt(headers=pushed.headers, body=pushed.body)
    assert (receipt.provider_message_id, receipt.status, receipt.to) == (sent.provider_message_id, status, "oABCD1234openid")
