"""The simulator's control endpoints and its resilience to garbage, over real HTTP."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest

from apps.dispatch.providers import aliyun
from tests.dispatch.conftest import Simulator
from tests.dispatch.test_provider_adapters import adapter, message


def test_control_endpoints(sim: Simulator) -> None:
    assert sim.control("GET", "/_sim/providers") == [
        "aliyun",
        "tencent",
        "volcengine",
        "twilio",
        "wechat",
        "wecom",
        "fcm",
        "apns",
        "jpush",
        "smtp",
    ]
    changed = sim.behave("tencent", fail_rate=0.5, latency_ms=20)
    assert changed["tencent"]["fail_rate"] == 0.5 and changed["tencent"]["receipt"] == "delivered"
    assert sim.behave("*", receipt="none")["tencent"]["latency_ms"] == 20

    adapter(sim, "twilio").send(message(31))
    adapter(sim, "twilio").send(message(32))
    assert [m["to"] for m in sim.messages()] == ["+8613800100031", "+8613800100032"]
    assert [m["to"] for m in sim.messages(to="+8613800100032")] == ["+8613800100032"]
    assert set(sim.messages()[0]) >= {"provider", "to", "message_id", "request", "received_at"}

    assert sim.control("DELETE", "/_sim/messages") is None
    assert sim.messages() == []
    assert sim.control("POST", "/_sim/reset") == {"status": "reset"}
    assert sim.behave("tencent")["tencent"]["fail_rate"] == 0.0


@pytest.mark.parametrize(
    "body",
    [{"fail_rate": 2}, {"error": "boom"}, {"receipt": "maybe"}, {"latency_ms": -1}, {"colour": "red"}, {"provider": "nobody"}],
)
def test_bad_behavior_is_refused(sim: Simulator, body: dict[str, object]) -> None:
    status, answer = sim.raw("POST", "/_sim/behavior", json.dumps(body).encode(), {"Content-Type": "application/json"})
    assert status in (400, 404) and json.loads(answer)["code"] == "validation_error"


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "code_path"),
    [
        ("POST", "/", b"\x00\xff garbage", {}, 400, ("Code",)),
        ("GET", "/?Action=SendSms", b"", {}, 400, ("Code",)),
        ("POST", "/", b"{not json", {"X-TC-Action": "SendSms"}, 200, ("Response", "Error", "Code")),
        (
            "POST",
            "/",
            b"",
            {"X-TC-Action": "SendSms", "Authorization": "TC3-HMAC-SHA256 nonsense"},
            200,
            ("Response", "Error", "Code"),
        ),
        ("POST", "/2010-04-01/Accounts/AC1/Messages.json", b"\xff", {"Authorization": "Basic !!!"}, 401, ("code",)),
    ],
)
def test_garbage_gets_an_error_in_the_providers_format(
    sim: Simulator, method: str, path: str, body: bytes, headers: dict[str, str], status: int, code_path: tuple[str, ...]
) -> None:
    got_status, answer = sim.raw(method, path, body, headers)
    assert got_status == status
    value = json.loads(answer)
    for key in code_path:
        value = value[key]
    assert value
    assert sim.control("GET", "/_sim/providers")  # still alive


def test_signed_garbage_is_refused_with_a_provider_error(sim: Simulator) -> None:
    credentials = sim.settings("aliyun")
    params = aliyun.sign(
        "POST",
        {"Action": "SendSms", "PhoneNumbers": "138", "TemplateParam": "[1"},
        credentials["access_key_id"],
        credentials["access_key_secret"],
    )
    status, answer = sim.raw("POST", "/", urlencode(params).encode(), {"Content-Type": "application/x-www-form-urlencoded"})
    assert (status, json.loads(answer)["Code"]) == (400, "MissingSignName")
    params = aliyun.sign("POST", {"Action": "Nope"}, credentials["access_key_id"], credentials["access_key_secret"])
    status, answer = sim.raw("POST", "/", urlencode(params).encode(), {"Content-Type": "application/x-www-form-urlencoded"})
    assert (status, json.loads(answer)["Code"]) == (404, "InvalidAction.NotFound")


def test_aliyun_send_batch_sms_is_served(sim: Simulator) -> None:
    sender = adapter(sim, "aliyun")
    assert isinstance(sender, aliyun.AliyunSms)
    answer = sender.call(
        "SendBatchSms",
        {
            "PhoneNumberJson": json.dumps(["13800100041", "13800100042"]),
            "SignNameJson": json.dumps(["ACME", "ACME"]),
            "TemplateCode": "SMS_1",
            "TemplateParamJson": json.dumps([{"code": "1"}, {"code": "2"}]),
        },
    )
    assert answer["Code"] == "OK" and answer["BizId"]
    assert [m["to"] for m in sim.messages()] == ["+8613800100041", "+8613800100042"]


def test_token_control_endpoints(sim: Simulator) -> None:
    assert sim.control("GET", "/_sim/tokens") == {"requests": {}}
    assert sim.control("POST", "/_sim/tokens/expire", {"provider": "fcm"}) == {"expired": 0}
    status, answer = sim.raw("POST", "/_sim/tokens/expire", b'{"provider": "twilio"}', {"Content-Type": "application/json"})
    assert status == 400 and json.loads(answer)["code"] == "validation_error"


@pytest.mark.parametrize(
    ("path", "query", "errcode"),
    [
        ("/cgi-bin/token", {"grant_type": "client_credential", "appid": "wx_unknown", "secret": "x"}, 40013),
        ("/cgi-bin/gettoken", {"corpid": "ww_unknown", "corpsecret": "x"}, 40013),
    ],
)
def test_weixin_token_endpoints_refuse_unknown_apps(sim: Simulator, path: str, query: dict[str, str], errcode: int) -> None:
    status, answer = sim.raw("GET", f"{path}?{urlencode(query)}")
    assert status == 200 and json.loads(answer)["errcode"] == errcode


@pytest.mark.parametrize("path", ["/cgi-bin/message/template/send", "/cgi-bin/message/send"])
def test_weixin_sends_refuse_an_access_token_the_simulator_never_issued(sim: Simulator, path: str) -> None:
    status, answer = sim.raw("POST", f"{path}?access_token=forged", b"{}", {"Content-Type": "application/json"})
    assert status == 200 and json.loads(answer)["errcode"] in (40001, 40014)
    assert sim.messages() == []
