"""The WeChat, WeCom, push and e-mail adapters against the real simulator process (HTTP, HTTP/2, SMTP)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.conf import settings

from apps.dispatch.providers import adapter_class, apns, jws
from apps.dispatch.providers.base import OutboundMessage, ProviderAdapter, ProviderError, SendResult
from apps.dispatch.providers.fcm import FCM_ERROR_TYPE
from apps.dispatch.providers.fcm import _error_reply as fcm_error_reply
from apps.dispatch.providers.http import HttpResponse
from devstack.simulator.fcm import service_account_json
from devstack.simulator.state import DEFAULT_CREDENTIALS
from tests.dispatch.conftest import Simulator
from tests.helpers import BASE_DIR, free_port

CHANNEL_PROVIDERS = ["wechat", "wecom", "fcm", "apns", "jpush", "smtp"]
TOKEN_PROVIDERS = ["wechat", "wecom", "fcm"]
DEVICE_TOKEN = "a1" * 32
RECIPIENTS = {
    "wechat": "oABCD1234openid",
    "wecom": "lisi",
    "fcm": "fcm-registration-token-1",
    "apns": DEVICE_TOKEN,
    "jpush": "1a0018970a2b3c4d",
    "smtp": "li@example.com",
}


def message(provider: str, number: int = 1, **fields: object) -> OutboundMessage:
    defaults: dict[str, object] = {
        "message_id": f"msg_01jchan{number:06d}",
        "to": RECIPIENTS[provider],
        "content": f"Your order A{number} has shipped.",
        "title": "Order shipped",
        "params": {"order_no": f"A{number}", "name": "Li"},
        "variables": ("name", "order_no"),
        "provider_template_id": "TPL_order_shipped",
    }
    return OutboundMessage(**(defaults | fields))  # type: ignore[arg-type]


def adapter(sim: Simulator, provider: str, **overrides: str) -> ProviderAdapter:
    return adapter_class(provider)(sim.settings(provider, **overrides))


def _other_rsa_account(sim: Simulator) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return service_account_json(sim.url, {**DEFAULT_CREDENTIALS["fcm"], "private_key": pem.decode()})


def _other_ec_key() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()


@pytest.mark.parametrize("provider", CHANNEL_PROVIDERS)
def test_send_returns_the_provider_id_the_simulator_recorded(sim: Simulator, provider: str) -> None:
    outbound = message(provider)
    result = adapter(sim, provider).send(outbound)

    [record] = sim.messages(to=outbound.to)
    assert record["provider"] == provider
    assert record["provider_message_id"] == result.provider_message_id
    if provider in ("wechat", "smtp"):
        assert record["message_id"] == outbound.message_id  # client_msg_id / Message-ID carry our id


@pytest.mark.parametrize(
    ("provider", "code"),
    [
        ("wechat", "40001"),
        ("wecom", "40001"),
        ("fcm", "invalid_grant"),
        ("apns", "InvalidProviderToken"),
        ("jpush", "1004"),
        ("smtp", "smtp_535"),
    ],
)
def test_bad_credentials_are_permanent_with_the_providers_code(sim: Simulator, provider: str, code: str) -> None:
    wrong = {
        "wechat": {"secret": "wrong"},
        "wecom": {"corpsecret": "wrong"},
        "fcm": {"service_account_json": _other_rsa_account(sim)},
        "apns": {"private_key": _other_ec_key()},
        "jpush": {"master_secret": "wrong"},
        "smtp": {"password": "wrong"},
    }[provider]
    with pytest.raises(ProviderError) as caught:
        adapter(sim, provider, **wrong).send(message(provider, 2))
    assert caught.value.code == code
    assert caught.value.permanent and not caught.value.ambiguous
    assert sim.messages() == []


INJECTED = {
    "invalid_number": {
        "wechat": "40003",
        "wecom": "invalid_user",
        "fcm": "unregistered_token",
        "apns": "unregistered_token",
        "jpush": "invalid_token",
        "smtp": "smtp_550",
    },
    "throttle": {
        "wechat": "throttle",
        "wecom": "throttle",
        "fcm": "throttle",
        "apns": "throttle",
        "jpush": "throttle",
        "smtp": "smtp_450",
    },
    "http_500": {
        "wechat": "-1",
        "wecom": "-1",
        "fcm": "INTERNAL",
        "apns": "InternalServerError",
        "jpush": "1000",
        "smtp": "smtp_451",
    },
}


@pytest.mark.parametrize("provider", CHANNEL_PROVIDERS)
@pytest.mark.parametrize(("error", "permanent"), [("invalid_number", True), ("throttle", False), ("http_500", False)])
def test_injected_errors_are_classified(sim: Simulator, provider: str, error: str, permanent: bool) -> None:
    sim.behave(provider, fail_rate=1.0, error=error)
    with pytest.raises(ProviderError) as caught:
        adapter(sim, provider).send(message(provider, 3))
    assert (caught.value.code, caught.value.permanent, caught.value.ambiguous) == (INJECTED[error][provider], permanent, False)
    assert sim.messages() == []


@pytest.mark.parametrize("provider", CHANNEL_PROVIDERS)
def test_a_timeout_is_ambiguous(sim: Simulator, provider: str) -> None:
    sim.behave(provider, fail_rate=1.0, error="timeout")
    timeouts = {"timeout": "0.5"} if provider == "smtp" else {"read_timeout": "0.5"}
    started = time.monotonic()
    with pytest.raises(ProviderError) as caught:
        adapter(sim, provider, **timeouts).send(message(provider, 4))
    assert time.monotonic() - started < 5
    assert not caught.value.permanent and caught.value.ambiguous
    assert len(sim.messages()) == 1  # the provider did take it


@pytest.mark.parametrize("provider", CHANNEL_PROVIDERS)
def test_nothing_listening_is_a_transient_connect_error(sim: Simulator, provider: str) -> None:
    port = free_port()
    where = {"smtp": {"port": str(port)}, "apns": {"endpoint": f"http://127.0.0.1:{port}"}}.get(provider)
    if provider == "fcm":
        # The token endpoint is the first thing FCM's adapter reaches.
        where = {"service_account_json": service_account_json(f"http://127.0.0.1:{port}", DEFAULT_CREDENTIALS["fcm"])}
    with pytest.raises(ProviderError) as caught:
        adapter(sim, provider, **(where or {"endpoint": f"http://127.0.0.1:{port}"})).send(message(provider, 5))
    assert caught.value.code == "connect_error"
    assert not caught.value.permanent and not caught.value.ambiguous


@pytest.mark.parametrize(("provider", "to", "code"), [("apns", "not-hex", "invalid_token"), ("fcm", "", "invalid_token")])
def test_a_malformed_device_token_is_permanent_invalid_token(sim: Simulator, provider: str, to: str, code: str) -> None:
    with pytest.raises(ProviderError) as caught:
        adapter(sim, provider).send(message(provider, 6, to=to))
    assert (caught.value.code, caught.value.permanent) == (code, True)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        # firebase-admin-java#1064: what FCM answers for a malformed registration token.
        (
            {
                "message": "The registration token is not a valid FCM registration token",
                "details": [{"@type": FCM_ERROR_TYPE, "errorCode": "INVALID_ARGUMENT"}],
            },
            "invalid_token",
        ),
        # An unknown field in the message: also INVALID_ARGUMENT, but the token is fine.
        (
            {
                "message": "Invalid JSON payload received. Unknown name \"key\" at 'message': Cannot find field.",
                "details": [{"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": [{"field": "message"}]}],
            },
            "INVALID_ARGUMENT",
        ),
    ],
)
def test_fcm_invalid_argument_deactivates_a_token_only_when_it_is_about_the_token(error: dict[str, object], code: str) -> None:
    body = json.dumps({"error": {"code": 400, "status": "INVALID_ARGUMENT", **error}}).encode()
    classified = fcm_error_reply(HttpResponse(400, {}, body))
    assert classified is not None and (classified.code, classified.permanent) == (code, True)


@pytest.mark.parametrize(("provider", "limit"), [("apns", "4096"), ("fcm", "4000"), ("jpush", "4000")])
def test_an_oversized_push_is_refused_before_sending(sim: Simulator, provider: str, limit: str) -> None:
    with pytest.raises(ProviderError) as caught:
        adapter(sim, provider).send(message(provider, 7, content="长" * 1500))  # 4,500 bytes of UTF-8
    assert (caught.value.code, caught.value.permanent) == ("payload_too_large", True)
    assert limit in caught.value.detail
    assert sim.messages() == []
    assert sim.token_requests(provider) == 0  # not even a token was fetched


# --- Access tokens: cached in Redis, one fetch for every worker, one refresh when rejected ------------


@pytest.mark.parametrize("provider", TOKEN_PROVIDERS)
def test_two_sends_share_one_token_fetch(sim: Simulator, provider: str) -> None:
    adapter(sim, provider).send(message(provider, 10))
    adapter(sim, provider).send(message(provider, 11))  # a new adapter, as in another task: the token is in Redis
    assert sim.token_requests(provider) == 1
    assert len(sim.messages()) == 2


@pytest.mark.parametrize("provider", TOKEN_PROVIDERS)
def test_an_expired_token_is_refreshed_once_and_the_send_retried(sim: Simulator, provider: str) -> None:
    adapter(sim, provider).send(message(provider, 12))
    assert sim.control("POST", "/_sim/tokens/expire", {"provider": provider}) == {"expired": 1}

    result = adapter(sim, provider).send(message(provider, 13))

    assert result.provider_message_id
    assert sim.token_requests(provider) == 2
    assert len(sim.messages()) == 2


def test_wechat_token_refresh_race_between_threads_makes_one_request(sim: Simulator) -> None:
    adapter(sim, "wechat").send(message("wechat", 14))
    sim.control("POST", "/_sim/tokens/expire", {"provider": "wechat"})
    # A slow token endpoint: the second thread is surely rejected before the first has a new token.
    sim.behave("wechat", latency_ms=300)
    start = threading.Barrier(4)

    def send(number: int) -> SendResult:
        start.wait()
        return adapter(sim, "wechat").send(message("wechat", number))

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(send, [15, 16, 17, 18]))

    assert all(result.provider_message_id for result in results)
    assert sim.token_requests("wechat") == 2  # the first fetch, and exactly one refresh


RACE_SCRIPT = """
import sys, time
import django
django.setup()
from apps.dispatch.providers import adapter_class
from apps.dispatch.providers.base import OutboundMessage
import json
settings, number, go = json.loads(sys.argv[1]), sys.argv[2], float(sys.argv[3])
time.sleep(max(go - time.time(), 0))
result = adapter_class("wecom")(settings).send(OutboundMessage(message_id=f"msg_race{number}", to=f"user{number}", content="hi"))
print(result.provider_message_id)
"""


def test_wecom_token_refresh_race_between_processes_makes_one_request(sim: Simulator) -> None:
    adapter(sim, "wecom").send(message("wecom", 19))
    sim.control("POST", "/_sim/tokens/expire", {"provider": "wecom"})
    sim.behave("wecom", latency_ms=300)
    env = os.environ | {"DJANGO_SETTINGS_MODULE": "tests.settings", "REDIS_URL": settings.REDIS_URL, "PYTHONPATH": str(BASE_DIR)}
    go = str(time.time() + 4)  # both interpreters are up and importing Django well before then
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", RACE_SCRIPT, json.dumps(sim.settings("wecom")), str(n), go],
            cwd=BASE_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for n in (1, 2)
    ]
    outputs = [process.communicate(timeout=60) for process in processes]

    assert [process.returncode for process in processes] == [0, 0], outputs
    assert all(out.strip() for out, _ in outputs)
    assert sim.token_requests("wecom") == 2


# --- Request shapes -------------------------------------------------------------------------------


def test_wechat_request_maps_params_to_template_fields(sim: Simulator) -> None:
    outbound = message("wechat", 20, params={"order_no": "A20", "name": "Li", "url": "https://acme.example/o/A20"})
    adapter(sim, "wechat", field_map='{"order_no": "keyword1"}').send(outbound)
    [record] = sim.messages(to=outbound.to)
    assert record["request"] == {
        "touser": outbound.to,
        "template_id": "TPL_order_shipped",
        "data": {"name": {"value": "Li"}, "keyword1": {"value": "A20"}},
        "client_msg_id": outbound.message_id,
        "url": "https://acme.example/o/A20",
    }


def test_wechat_without_a_template_id_is_permanent(sim: Simulator) -> None:
    with pytest.raises(ProviderError) as caught:
        adapter(sim, "wechat").send(message("wechat", 21, provider_template_id=None))
    assert (caught.value.code, caught.value.permanent) == ("missing_template", True)


def test_wecom_batch_groups_equal_content_and_maps_invalid_users(sim: Simulator) -> None:
    outbound = [
        message("wecom", 22, to="zhangsan"),
        message("wecom", 22, to="nobody-left-the-company"),
        message("wecom", 22, to="wangwu"),
        message("wecom", 23, to="zhaoliu"),
    ]
    outcomes = adapter(sim, "wecom").send_batch(outbound)

    assert [type(outcome) for outcome in outcomes] == [SendResult, ProviderError, SendResult, SendResult]
    assert isinstance(outcomes[1], ProviderError)
    assert (outcomes[1].code, outcomes[1].permanent) == ("invalid_user", True)
    records = sim.messages()
    assert {r["request"]["touser"] for r in records} == {"zhangsan|nobody-left-the-company|wangwu", "zhaoliu"}
    ids = [outcome.provider_message_id for outcome in outcomes if isinstance(outcome, SendResult)]
    assert len(set(ids)) == 3 and ids[0].split(":")[0] == ids[1].split(":")[0] != ids[2].split(":")[0]


def test_wecom_sends_a_textcard_when_there_is_a_title_and_a_link(sim: Simulator) -> None:
    adapter(sim, "wecom", url="https://acme.example/inbox").send(message("wecom", 24))
    [record] = sim.messages()
    assert record["request"]["msgtype"] == "textcard"
    assert record["request"]["textcard"] == {
        "title": "Order shipped",
        "description": "Your order A24 has shipped.",
        "url": "https://acme.example/inbox",
    }
    assert record["request"]["agentid"] == 1000002


def test_apns_headers_follow_priority_and_expiry(sim: Simulator) -> None:
    expires_at = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    result = adapter(sim, "apns").send(message("apns", 25, priority="bulk", expires_at=expires_at))
    [record] = sim.messages()
    assert record["request"]["headers"] == {
        "apns-topic": "com.example.app",
        "apns-push-type": "alert",
        "apns-priority": "5",
        "apns-expiration": str(int(expires_at.timestamp())),
        "apns-id": result.provider_message_id,
    }
    assert record["request"]["payload"]["aps"]["alert"] == {"title": "Order shipped", "body": "Your order A25 has shipped."}


def test_fcm_message_carries_notification_data_and_ttl(sim: Simulator) -> None:
    expires_at = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    adapter(sim, "fcm").send(message("fcm", 26, expires_at=expires_at))
    [record] = sim.messages()
    sent = record["request"]["message"]
    assert sent["notification"] == {"title": "Order shipped", "body": "Your order A26 has shipped."}
    assert sent["data"] == {"order_no": "A26", "name": "Li"}
    assert 3590 <= int(sent["android"]["ttl"].rstrip("s")) <= 3600


def test_jpush_request_targets_the_registration_id(sim: Simulator) -> None:
    adapter(sim, "jpush").send(message("jpush", 27, expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=30)))
    [record] = sim.messages()
    request = record["request"]
    assert request["audience"] == {"registration_id": [RECIPIENTS["jpush"]]}
    assert request["notification"]["android"]["title"] == "Order shipped"
    assert request["options"] == {"apns_production": False, "time_to_live": 864000}  # capped at 10 days


def test_smtp_sends_text_and_escaped_html_with_our_message_id(sim: Simulator) -> None:
    outbound = message("smtp", 28, content="Tom & <Jerry>\nsecond line")
    result = adapter(sim, "smtp").send(outbound)
    [record] = sim.messages(to="li@example.com")
    request = record["request"]
    assert request["subject"] == "Order shipped"
    assert request["text"].strip() == "Tom & <Jerry>\nsecond line"
    assert request["html"].strip() == "<p>Tom &amp; &lt;Jerry&gt;<br>second line</p>"
    assert result.provider_message_id == request["message_id"] == "<msg_01jchan000028@acme.example>"


def test_smtp_prefers_the_templates_html_and_reuses_one_session_for_a_batch(sim: Simulator) -> None:
    batch = [message("smtp", 29, html="<p>Hi <b>Li</b></p>"), message("smtp", 30, to="wang@example.com")]
    outcomes = adapter(sim, "smtp").send_batch(batch)
    assert all(isinstance(outcome, SendResult) for outcome in outcomes)
    assert sim.messages(to="li@example.com")[0]["request"]["html"].strip() == "<p>Hi <b>Li</b></p>"
    assert len(sim.messages(to="wang@example.com")) == 1


@pytest.mark.parametrize(
    ("provider", "given", "invalid"),
    [
        ("wechat", {}, ["appid", "secret"]),
        (
            "wechat",
            {"appid": "wx1", "secret": "s", "field_map": "[1]", "encoding_aes_key": "short"},
            ["field_map", "encoding_aes_key"],
        ),
        ("wecom", {"corpid": "ww1", "corpsecret": "s"}, ["agentid"]),
        ("wecom", {"corpid": "ww1", "agentid": "1000002", "url": "ftp://x"}, ["corpsecret", "url"]),
        ("fcm", {"project_id": "p"}, ["service_account_json"]),
        (
            "fcm",
            {"service_account_json": '{"client_email": "a@b", "private_key": "not a key"}'},
            ["project_id", "service_account_json"],
        ),
        ("apns", {"team_id": "T", "key_id": "K", "topic": "com.x"}, ["private_key"]),
        ("apns", {"team_id": "T", "key_id": "K", "topic": "com.x", "private_key": "-----BEGIN nothing"}, ["private_key"]),
        ("jpush", {"app_key": "k", "apns_production": "maybe"}, ["master_secret", "apns_production"]),
        ("smtp", {"host": "mail", "from_email": "a@b.example", "username": "u"}, ["password"]),
        (
            "smtp",
            {"host": "mail", "from_email": "nobody", "use_tls": "true", "use_ssl": "true", "port": "x"},
            ["from_email", "port", "use_ssl"],
        ),
    ],
)
def test_validate_settings_names_what_is_missing_or_invalid(provider: str, given: dict[str, str], invalid: list[str]) -> None:
    assert adapter_class(provider).validate_settings(given) == invalid


@pytest.mark.parametrize("provider", CHANNEL_PROVIDERS)
def test_the_simulator_settings_are_valid(sim: Simulator, provider: str) -> None:
    assert adapter_class(provider).validate_settings(sim.settings(provider)) == []


def test_apns_renews_a_provider_token_apple_calls_expired_and_sends_again(sim: Simulator) -> None:
    apns_settings = sim.settings("apns")
    stale = jws.sign(
        {"iss": apns_settings["team_id"], "iat": int(time.time()) - 7200},
        apns_settings["private_key"],
        alg="ES256",
        kid=apns_settings["key_id"],
    )
    cache_key = (
        apns_settings["team_id"],
        apns_settings["key_id"],
        hashlib.sha256(apns_settings["private_key"].encode()).hexdigest(),
    )
    apns._jwts[cache_key] = (stale, time.time())  # cached as fresh by this process, yet two hours old

    result = adapter(sim, "apns").send(message("apns", 31))

    assert result.provider_message_id
    assert apns._jwts[cache_key][0] != stale
