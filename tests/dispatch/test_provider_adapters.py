"""Each adapter against the real simulator process: sends, auth failures, error classification."""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest

from apps.dispatch.providers import ADAPTERS, adapter_class
from apps.dispatch.providers.base import OutboundMessage, ProviderAdapter, ProviderError, SendResult
from tests.dispatch.conftest import Simulator
from tests.helpers import free_port, wait_until

PROVIDERS = sorted(kind for kind in ADAPTERS if adapter_class(kind).channel == "sms")
AUTH_ERRORS = {
    "aliyun": ("access_key_secret", "SignatureDoesNotMatch"),
    "tencent": ("secret_key", "AuthFailure.SignatureFailure"),
    "twilio": ("auth_token", "20003"),
    "volcengine": ("secret_access_key", "SignatureDoesNotMatch"),
}


def message(number: int = 1, **fields: object) -> OutboundMessage:
    defaults: dict[str, object] = {
        "message_id": f"msg_01jtest{number:06d}",
        "to": f"+86138001{number:05d}",
        "content": f"【ACME】Your order A{number} has shipped.",
        "params": {"order_no": f"A{number}", "name": "Li"},
        "variables": ("name", "order_no"),
        "provider_template_id": "SMS_1234",
        "sms_signature": "ACME",
        "callback_url": None,
    }
    return OutboundMessage(**(defaults | fields))  # type: ignore[arg-type]


def adapter(sim: Simulator, provider: str, **overrides: str) -> ProviderAdapter:
    return adapter_class(provider)(sim.settings(provider, **overrides))


@pytest.mark.parametrize("provider", PROVIDERS)
def test_send_returns_the_provider_id_and_the_simulator_records_our_id(sim: Simulator, provider: str) -> None:
    # Twilio carries our id only in the StatusCallback URL.
    outbound = message(1, provider_template_id="1234567", callback_url=sim.receiver.base_url + "/cb")
    result = adapter(sim, provider).send(outbound)

    assert result.provider_message_id
    [record] = sim.messages(to=outbound.to)
    assert record["provider"] == provider
    assert record["message_id"] == outbound.message_id
    assert record["provider_message_id"] == result.provider_message_id


def test_aliyun_request_carries_named_params_sign_name_and_out_id(sim: Simulator) -> None:
    adapter(sim, "aliyun").send(message(2, sms_signature=""))
    [record] = sim.messages(to="+8613800100002")
    request = record["request"]
    assert request["Action"] == "SendSms"
    assert request["PhoneNumbers"] == "13800100002"
    assert request["SignName"] == "ACME"  # the adapter's sign_name setting when the template has none
    assert request["TemplateCode"] == "SMS_1234"
    assert request["TemplateParam"] == '{"order_no":"A2","name":"Li"}'
    assert request["OutId"] == "msg_01jtest000002"


def test_tencent_request_carries_positional_params_in_variable_order(sim: Simulator) -> None:
    adapter(sim, "tencent").send(message(3, provider_template_id="1110"))
    [record] = sim.messages(to="+8613800100003")
    request = record["request"]
    assert request["TemplateParamSet"] == ["Li", "A3"]
    assert request["TemplateId"] == "1110"
    assert request["SmsSdkAppId"] == "1400000001"
    assert request["SessionContext"] == "msg_01jtest000003"
    assert request["PhoneNumberSet"] == ["+8613800100003"]


def test_twilio_request_carries_body_and_a_status_callback_with_our_id(sim: Simulator) -> None:
    adapter(sim, "twilio").send(message(4, callback_url="https://mc.example/api/v1/receipts/twilio?t=secret"))
    [record] = sim.messages(to="+8613800100004")
    request = record["request"]
    assert request["Body"] == "【ACME】Your order A4 has shipped."
    assert request["From"] == "+15005550006"
    assert request["StatusCallback"] == "https://mc.example/api/v1/receipts/twilio?t=secret&message_id=msg_01jtest000004"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_bad_credentials_are_permanent_with_the_providers_auth_code(sim: Simulator, provider: str) -> None:
    secret_setting, code = AUTH_ERRORS[provider]
    with pytest.raises(ProviderError) as caught:
        adapter(sim, provider, **{secret_setting: "wrong"}).send(message(5, provider_template_id="1"))
    assert caught.value.code == code
    assert caught.value.permanent and not caught.value.ambiguous
    assert sim.messages() == []


def test_unknown_aliyun_access_key_is_permanent(sim: Simulator) -> None:
    with pytest.raises(ProviderError) as caught:
        adapter(sim, "aliyun", access_key_id="nobody").send(message(6))
    assert (caught.value.code, caught.value.permanent) == ("InvalidAccessKeyId.NotFound", True)


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(
    ("error", "code", "permanent"),
    [("http_500", "server_error", False), ("throttle", "throttle", False), ("invalid_number", "bad_number", True)],
)
def test_injected_errors_are_classified(sim: Simulator, provider: str, error: str, code: str | None, permanent: bool) -> None:
    sim.behave(provider, fail_rate=1.0, error=error)
    with pytest.raises(ProviderError) as caught:
        adapter(sim, provider).send(message(7, provider_template_id="1"))
    provider_codes = {
        "server_error": {"aliyun": "InternalError", "tencent": "InternalError", "twilio": "20500", "volcengine": "InternalError"},
        "bad_number": {
            "aliyun": "isv.MOBILE_NUMBER_ILLEGAL",
            "tencent": "InvalidParameterValue.IncorrectPhoneNumber",
            "twilio": "21211",
            "volcengine": "RE:0006",
        },
    }
    assert caught.value.code == provider_codes.get(code, {}).get(provider, code)
    assert caught.value.permanent is permanent
    assert not caught.value.ambiguous
    assert sim.messages() == []


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_timeout_is_ambiguous_because_the_provider_did_accept_it(sim: Simulator, provider: str) -> None:
    sim.behave(provider, fail_rate=1.0, error="timeout")
    started = time.monotonic()
    with pytest.raises(ProviderError) as caught:
        adapter(sim, provider, read_timeout="0.3").send(message(8, provider_template_id="1", callback_url=sim.receiver.base_url))
    assert time.monotonic() - started < 3
    assert caught.value.code == "timeout"
    assert not caught.value.permanent and caught.value.ambiguous
    [record] = sim.messages()
    assert record["message_id"] == "msg_01jtest000008"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_nothing_listening_is_a_transient_unambiguous_connect_error(provider: str) -> None:
    settings = {
        "access_key_id": "k",
        "access_key_secret": "s",
        "secret_access_key": "s",
        "sms_account": "a",
        "secret_id": "i",
        "secret_key": "k",
        "sdk_app_id": "1",
        "account_sid": "AC1",
        "auth_token": "t",
        "from_number": "+15005550006",
        "endpoint": f"http://127.0.0.1:{free_port()}",
    }
    with pytest.raises(ProviderError) as caught:
        adapter_class(provider)(settings).send(message(9, provider_template_id="1"))
    assert caught.value.code == "connect_error"
    assert not caught.value.permanent and not caught.value.ambiguous


def test_latency_is_applied(sim: Simulator) -> None:
    sim.behave("twilio", latency_ms=300)
    started = time.monotonic()
    adapter(sim, "twilio").send(message(10))
    assert time.monotonic() - started >= 0.3


@pytest.mark.parametrize("provider", ["aliyun", "tencent", "volcengine"])
def test_template_providers_refuse_a_template_without_their_id(sim: Simulator, provider: str) -> None:
    with pytest.raises(ProviderError) as caught:
        adapter(sim, provider).send(message(11, provider_template_id=None))
    assert (caught.value.code, caught.value.permanent) == ("missing_template", True)


def test_send_batch_gives_one_outcome_per_message_in_order(sim: Simulator) -> None:
    outcomes = adapter(sim, "twilio").send_batch([message(12), message(13, to="not-a-number"), message(14)])
    assert [type(outcome) for outcome in outcomes] == [SendResult, ProviderError, SendResult]
    assert isinstance(outcomes[1], ProviderError) and outcomes[1].code == "21211" and outcomes[1].permanent


def test_tencent_batch_puts_one_notice_to_many_numbers_into_one_request(sim: Simulator) -> None:
    same = {"params": {"order_no": "A1", "name": "Li"}, "provider_template_id": "1110"}
    batch = [
        message(21, **same),
        message(22, **same),
        message(23, **same, to="+86-bad"),
        message(24, **same),
        message(25, provider_template_id="1110"),  # other params: a request of its own
    ]
    outcomes = adapter(sim, "tencent").send_batch(batch)
    assert [type(outcome) for outcome in outcomes] == [SendResult, SendResult, ProviderError, SendResult, SendResult]
    bad = outcomes[2]
    assert isinstance(bad, ProviderError) and bad.code == "InvalidParameterValue.IncorrectPhoneNumber" and bad.permanent
    serials = [o.provider_message_id for o in outcomes if isinstance(o, SendResult)]
    assert len(set(serials)) == 4  # each number its own SerialNo, so receipts match message by message
    shared = sim.messages(to="+8613800100021")[0]["request"]
    assert shared["PhoneNumberSet"] == ["+8613800100021", "+8613800100022", "+86-bad", "+8613800100024"]
    assert shared["SessionContext"] == ""  # one per request: it cannot name four messages
    alone = sim.messages(to="+8613800100025")[0]["request"]
    assert alone["PhoneNumberSet"] == ["+8613800100025"] and alone["SessionContext"] == "msg_01jtest000025"
    for number, outcome in zip((21, 22, 24), (outcomes[0], outcomes[1], outcomes[3]), strict=True):
        [record] = sim.messages(to=f"+86138001000{number}")
        assert record["provider_message_id"] == outcome.provider_message_id  # type: ignore[union-attr]


def test_tencent_batch_failing_as_a_whole_fails_each_message(sim: Simulator) -> None:
    sim.behave("tencent", fail_rate=1.0, error="http_500")
    outcomes = adapter(sim, "tencent").send_batch([message(31, provider_template_id="1"), message(32, provider_template_id="1")])
    assert all(isinstance(o, ProviderError) and not o.permanent for o in outcomes) and len(outcomes) == 2


@pytest.mark.parametrize(
    ("provider", "settings", "invalid"),
    [
        ("aliyun", {}, ["access_key_id", "access_key_secret"]),
        ("aliyun", {"access_key_id": "k", "access_key_secret": "s", "endpoint": "ftp://x"}, ["endpoint"]),
        ("tencent", {"secret_id": "i", "secret_key": "k"}, ["sdk_app_id"]),
        ("tencent", {"secret_id": "i", "secret_key": "k", "sdk_app_id": "1", "read_timeout": "soon"}, ["read_timeout"]),
        ("twilio", {"account_sid": "AC1", "auth_token": "t"}, ["from_number"]),
        ("twilio", {"account_sid": "AC1", "auth_token": "t", "messaging_service_sid": "MG1"}, []),
    ],
)
def test_validate_settings_names_what_is_missing_or_invalid(provider: str, settings: dict[str, str], invalid: list[str]) -> None:
    assert adapter_class(provider).validate_settings(settings) == invalid


def test_adapters_declare_their_kind_and_nature() -> None:
    classes = {kind: adapter_class(kind) for kind in ADAPTERS}
    assert {kind: cls.kind for kind, cls in classes.items()} == {kind: kind for kind in ADAPTERS}
    assert {kind for kind, cls in classes.items() if cls.template_based} == {"aliyun", "tencent", "volcengine", "wechat"}
    assert {kind: cls.channel for kind, cls in classes.items()} == {
        "aliyun": "sms",
        "tencent": "sms",
        "twilio": "sms",
        "volcengine": "sms",
        "wechat": "wechat",
        "wecom": "wecom",
        "fcm": "push",
        "apns": "push",
        "jpush": "push",
        "smtp": "email",
    }
    assert all(cls.max_batch >= 1 for cls in classes.values())


def test_aliyun_batch_puts_a_templates_messages_into_one_call_each_with_its_own_params(sim: Simulator) -> None:
    batch = [
        message(41, batch_reference="mcb-41"),
        message(42, batch_reference="mcb-41", sms_signature="Other"),
        message(43, batch_reference="mcb-41", provider_template_id="SMS_9"),  # another template: a call of its own
    ]
    outcomes = adapter(sim, "aliyun").send_batch(batch)
    assert all(isinstance(o, SendResult) for o in outcomes)
    assert outcomes[0].provider_message_id == outcomes[1].provider_message_id != outcomes[2].provider_message_id  # type: ignore[union-attr]
    [shared] = sim.messages(to="+8613800100041")
    assert shared["request"]["Action"] == "SendBatchSms" and shared["request"]["OutId"] == "mcb-41"
    assert json.loads(shared["request"]["SignNameJson"]) == ["ACME", "Other"]
    assert json.loads(shared["request"]["TemplateParamJson"]) == [
        {"order_no": "A41", "name": "Li"},
        {"order_no": "A42", "name": "Li"},
    ]
    [alone] = sim.messages(to="+8613800100043")
    assert alone["request"]["Action"] == "SendSms" and alone["message_id"] == "msg_01jtest000043"  # our own id as OutId


def test_aliyun_batch_takes_mainland_numbers_only(sim: Simulator) -> None:
    """Aliyun reports numbers without '+': a US "14155550100" would read as a mainland number and its
    report could not be told apart by number, so international messages go alone with our id."""
    batch = [message(71, batch_reference="mcb-71"), message(72, batch_reference="mcb-71", to="+14155550172")]
    batch.append(message(73, batch_reference="mcb-71"))
    outcomes = adapter(sim, "aliyun").send_batch(batch)
    assert all(isinstance(o, SendResult) for o in outcomes)
    assert outcomes[0].provider_message_id == outcomes[2].provider_message_id != outcomes[1].provider_message_id  # type: ignore[union-attr]
    actions = {r["message_id"] or r["request"]["OutId"]: r["request"]["Action"] for r in sim.messages()}
    assert actions["msg_01jtest000072"] == "SendSms"
    assert actions["mcb-71"] == "SendBatchSms"


def test_aliyun_batch_refused_for_one_bad_number_gives_each_message_its_own_outcome(sim: Simulator) -> None:
    batch = [
        message(51, batch_reference="mcb-51"),
        message(52, batch_reference="mcb-51", to="+8612"),
        message(53, batch_reference="mcb-51"),
    ]
    outcomes = adapter(sim, "aliyun").send_batch(batch)
    assert [type(outcome) for outcome in outcomes] == [SendResult, ProviderError, SendResult]
    bad = outcomes[1]
    assert isinstance(bad, ProviderError) and bad.code == "isv.MOBILE_NUMBER_ILLEGAL" and bad.permanent
    assert [r["request"]["Action"] for r in sim.messages(to="+8613800100051")] == ["SendSms"]  # sent alone after the refusal


def test_aliyun_lookup_finds_a_message_sent_in_a_batch_by_the_batch_reference(sim: Simulator) -> None:
    aliyun = adapter(sim, "aliyun")
    aliyun.send_batch([message(61, batch_reference="mcb-61"), message(62, batch_reference="mcb-61")])
    since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    found = aliyun.lookup_sent(message(62, batch_reference="mcb-61"), since=since)
    assert found is not None and found.raw["reconciled"]
    assert aliyun.lookup_sent(message(62), since=since) is None


def test_tencent_lookup_finds_our_session_context_once_the_carrier_reported(sim: Simulator) -> None:
    """PullSmsSendStatusByPhoneNumber lists delivery reports with the SessionContext of their SendSms:
    our id for a lone message, the batch reference for a call to several numbers. Before the report a
    miss is no proof, which the adapter says of itself."""
    tencent = adapter(sim, "tencent")
    sim.behave("tencent", receipt_delay_ms=60_000)
    since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    lone = message(81, provider_template_id="1001")
    tencent.send(lone)
    assert tencent.lookup_sent(lone, since=since) is None and not tencent.lookup_sees_unreported
    sim.behave("tencent", receipt_delay_ms=0)
    batch = [
        message(82, provider_template_id="1001", batch_reference="mcb-82", params={}),
        message(83, provider_template_id="1001", batch_reference="mcb-82", params={}),
    ]
    outcomes = tencent.send_batch(batch)
    other = message(84, provider_template_id="1001", to=lone.to)
    tencent.send(other)
    wait_until(lambda: tencent.lookup_sent(other, since=since) is not None, 5, "the report of the second message")

    found = tencent.lookup_sent(other, since=since)
    assert found is not None and found.raw["reconciled"]
    [record] = [r for r in sim.messages(to=lone.to) if r["message_id"] == other.message_id]
    assert found.provider_message_id == record["provider_message_id"]  # the SerialNo, by which receipts match
    assert (
        tencent.lookup_sent(message(83, provider_template_id="1001", batch_reference="mcb-82"), since=since).provider_message_id
        == outcomes[1].provider_message_id
    )  # type: ignore[union-attr]
    assert tencent.lookup_sent(lone, since=since) is None  # still no report: a miss

    with pytest.raises(ProviderError) as refused:
        adapter(sim, "tencent", secret_key="wrong").lookup_sent(other, since=since)
    assert refused.value.code == "AuthFailure.SignatureFailure"


def test_twilio_lookup_finds_our_body_to_the_number_since_the_message_was_made(sim: Simulator) -> None:
    """A Twilio Message carries no client reference: ours is the outbound one with our body to our
    number, made since the message was, listed by To and DateSent>= across pages."""
    twilio = adapter(sim, "twilio")
    since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    ours = message(91, content="Your code is 123456")
    for n in range(60):  # more than a page of other messages to the same number
        twilio.send(message(91, message_id=f"msg_01jother{n:05d}", content=f"Other {n}"))
    sent = twilio.send(ours)
    for n in range(3):
        twilio.send(message(91, message_id=f"msg_01jlater{n:05d}", content=f"Later {n}"))
    found = twilio.lookup_sent(ours, since=since)
    assert found is not None and found.provider_message_id == sent.provider_message_id and found.raw["reconciled"]
    assert twilio.lookup_sent(message(91, content="Never sent"), since=since) is None
    assert twilio.lookup_sent(message(92, content=ours.content), since=since) is None  # another number
    assert twilio.lookup_sent(ours, since=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)) is None  # made before

    with pytest.raises(ProviderError) as refused:
        adapter(sim, "twilio", auth_token="wrong").lookup_sent(ours, since=since)
    assert refused.value.code == "20003"


def test_twilio_list_pages_and_filters_as_twilio_does(sim: Simulator) -> None:
    twilio = adapter(sim, "twilio")
    for n in range(5):
        twilio.send(message(95, content=f"Note {n}"))
    sid = sim.settings("twilio")["account_sid"]
    path = f"/2010-04-01/Accounts/{sid}/Messages.json"
    auth = {"Authorization": twilio._headers()["Authorization"]}  # type: ignore[attr-defined]
    today = dt.datetime.now(dt.UTC).date()
    status, body = sim.raw("GET", f"{path}?To=%2B8613800100095&PageSize=2&DateSent%3E={today}", headers=auth)
    page = json.loads(body)
    assert status == 200 and [m["body"] for m in page["messages"]] == ["Note 4", "Note 3"]
    assert page["messages"][0]["direction"] == "outbound-api" and page["messages"][0]["date_sent"]
    status, body = sim.raw("GET", page["next_page_uri"], headers=auth)
    assert [m["body"] for m in json.loads(body)["messages"]] == ["Note 2", "Note 1"]
    tomorrow = today + dt.timedelta(days=1)
    status, body = sim.raw("GET", f"{path}?To=%2B8613800100095&DateSent%3E={tomorrow}", headers=auth)
    assert json.loads(body)["messages"] == [] and json.loads(body)["next_page_uri"] is None
    assert sim.raw("GET", f"{path}?To=%2B8613800100095", headers={})[0] == 401


def test_twilio_batch_sends_its_requests_concurrently(sim: Simulator) -> None:
    """The Messages API has no batch call: a chunk's messages go as concurrent requests, each with
    its own outcome."""
    sim.behave("twilio", latency_ms=300)
    started = time.monotonic()
    outcomes = adapter(sim, "twilio").send_batch([message(30 + i) for i in range(8)])
    assert time.monotonic() - started < 1.2  # one by one: 2.4 s
    assert all(isinstance(outcome, SendResult) for outcome in outcomes)
    assert len({outcome.provider_message_id for outcome in outcomes}) == 8  # type: ignore[union-attr]
