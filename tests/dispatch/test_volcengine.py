"""Volcengine SMS: its signature against the documented examples, the adapter against the simulator
over real HTTP, its status reports through our receipts endpoint, and a +86 SMS failing over to it
with a real worker."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from apps.dispatch.models import Message, Provider
from apps.dispatch.providers import volcengine
from apps.dispatch.providers.base import ProviderError, ReceiptFormatError, SendResult
from apps.dispatch.providers_config import provider_save
from apps.dispatch.routing import providers_changed
from apps.receipts import matching
from apps.receipts.intake import TOKEN_SETTING
from apps.receipts.models import ProviderReceipt
from devstack.providers import simulator_providers, simulator_providers_configure
from messaging_center import ids
from tests.dispatch.conftest import Receiver, Simulator, simulator_process
from tests.dispatch.test_provider_adapters import adapter, message
from tests.helpers import wait_until

# docs/6369/67269 (签名方法): its worked examples' access key pair.
DOC_AK = "AKLTYWViMTVmZGYzM2E0NDI5Mzk2MDZjNjFmMjc2MjRjMzg"
DOC_SK = "WkRZeE1EQmxPVGhsWWpWak5HVmtNbUUxTXpZeU9UVXlOMlE1TmpZeVlqTQ=="
TEMPLATE = "ST_6f8c0a1b"
RECEIPT_TOKEN = "volcengine-receipt-token-0123456789"
# docs/6361/171584 (短信状态报告回调): the documented sample, its masked digits filled in.
DOCUMENTED_REPORT = """[
  {"account": "2000000001", "sub_account": "15040000", "signature": "短信服务", "mobile": "18800000001",
   "channel_type": "CN_OTP", "service_id": "1069669400001", "send_time": 1669171012444, "template_id": "SPT_0fa70000",
   "ext": "123456", "message_id": "bde1b10d-19cf-460f-abcd-26231a820000", "msg_count": 1, "status_code": "0",
   "description": "DELIVRD", "recv_time": 1669171013444, "mccmnc": "46000", "iso_code": "CN"}
]""".encode()


def volc(sim: Simulator, **overrides: str) -> volcengine.VolcengineSms:
    sender = adapter(sim, "volcengine", **overrides)
    assert isinstance(sender, volcengine.VolcengineSms)
    return sender


def test_signature_matches_the_documented_post_example() -> None:
    # docs/6369/67269: POST ListBill with a JSON body, host and x-date signed, at 20250329T180937Z.
    signed = volcengine.signature(
        DOC_SK,
        method="POST",
        path="/",
        query={"Version": "2022-01-01", "Action": "ListBill"},
        signed_headers={"Host": "billing.volcengineapi.com", "X-Date": "20250329T180937Z"},
        payload=b'{"Limit":10,"BillPeriod":"2023-08"}',
        x_date="20250329T180937Z",
        region="cn-beijing",
        service="billing",
    )
    assert signed == "5e8480ceea12d0000a23c054151c50dd02c1a7dec835004057d19f13d53a7658"


def test_signature_matches_the_documented_get_example() -> None:
    signed = volcengine.signature(
        DOC_SK,
        method="GET",
        path="/",
        query={"Action": "QueryBalanceAcct", "Version": "2022-01-01"},
        signed_headers={"Host": "billing.volcengineapi.com", "X-Date": "20250329T180937Z"},
        payload=b"",
        x_date="20250329T180937Z",
        region="cn-beijing",
        service="billing",
    )
    assert signed == "1eda9e7e6b1728151a8e8791fdaf67cfbd28bd5c80d0fce2eb208746cf483105"


def test_requests_are_signed_as_the_sdk_signs_them() -> None:
    payload = b'{"SmsAccount":"7a2b0c1d"}'
    now = dt.datetime(2025, 3, 29, 18, 9, 37, tzinfo=dt.UTC)
    query = {"Action": "SendSms", "Version": "2020-01-01"}
    headers = volcengine.signed_request_headers(
        DOC_AK, DOC_SK, host="sms.volcengineapi.com", query=query, payload=payload, region="cn-north-1", now=now
    )
    assert headers["X-Date"] == "20250329T180937Z"
    assert headers["X-Content-Sha256"] == hashlib.sha256(payload).hexdigest()
    prefix = f"HMAC-SHA256 Credential={DOC_AK}/20250329/cn-north-1/volcSMS/request, "
    prefix += "SignedHeaders=content-type;host;x-content-sha256;x-date, Signature="
    assert headers["Authorization"].startswith(prefix)
    signed = {name: headers[name] for name in ("Content-Type", "Host", "X-Content-Sha256", "X-Date")}
    expected = volcengine.signature(
        DOC_SK,
        method="POST",
        path="/",
        query=query,
        signed_headers=signed,
        payload=payload,
        x_date="20250329T180937Z",
        region="cn-north-1",
        service="volcSMS",
    )
    assert headers["Authorization"].endswith(expected)
    assert volcengine.canonical_query({"b": "x y", "a": "1/2~"}) == "a=1%2F2~&b=x%20y"


def _signed(sim: Simulator, body: bytes, *, secret: str | None = None, now: dt.datetime | None = None) -> dict[str, str]:
    credentials = sim.settings("volcengine")
    return volcengine.signed_request_headers(
        credentials["access_key_id"],
        secret or credentials["secret_access_key"],
        host=sim.url.removeprefix("http://"),
        query={"Action": "SendSms", "Version": "2020-01-01"},
        payload=body,
        region="cn-north-1",
        now=now,
    )


def _error_code(answer: bytes) -> str:
    return str(json.loads(answer)["ResponseMetadata"]["Error"]["Code"])


def test_the_simulator_refuses_a_bad_signature_a_tampered_body_and_a_stale_date(sim: Simulator) -> None:
    body = json.dumps({"SmsAccount": "7a2b0c1d", "Sign": "ACME", "TemplateID": TEMPLATE, "PhoneNumbers": "13800100001"})
    path = "/?Action=SendSms&Version=2020-01-01"
    status, answer = sim.raw("POST", path, body.encode(), _signed(sim, body.encode(), secret="wrong"))
    assert (status, _error_code(answer)) == (401, "SignatureDoesNotMatch")
    tampered = body.replace("13800100001", "13800100002").encode()
    status, answer = sim.raw("POST", path, tampered, _signed(sim, body.encode()))
    assert (status, _error_code(answer)) == (401, "SignatureDoesNotMatch")
    stale = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=20)
    status, answer = sim.raw("POST", path, body.encode(), _signed(sim, body.encode(), now=stale))
    assert (status, _error_code(answer)) == (400, "InvalidTimestamp")
    # Unsigned, but naming a Volcengine API version: answered by Volcengine, not by Aliyun on the same path.
    status, answer = sim.raw("POST", path, body.encode(), {"Content-Type": "application/json"})
    assert (status, _error_code(answer)) == (401, "MissingSignature")
    status, answer = sim.raw("POST", path, body.encode(), _signed(sim, body.encode()))
    assert status == 200 and len(json.loads(answer)["Result"]["MessageID"]) == 1
    assert [m["to"] for m in sim.messages()] == ["+8613800100001"]


def test_bad_credentials_are_the_providers_fault(sim: Simulator) -> None:
    with pytest.raises(ProviderError) as caught:
        volc(sim, access_key_id="AKLT-nobody").send(message(1, provider_template_id=TEMPLATE))
    assert (caught.value.code, caught.value.permanent, caught.value.provider_fault) == ("InvalidAccessKey", True, True)
    with pytest.raises(ProviderError) as caught:
        volc(sim, secret_access_key="wrong").send(message(1, provider_template_id=TEMPLATE))
    assert (caught.value.code, caught.value.provider_fault) == ("SignatureDoesNotMatch", True)
    assert sim.messages() == []


def test_send_carries_the_message_group_named_params_and_our_id_as_tag(sim: Simulator) -> None:
    result = volc(sim).send(message(2, provider_template_id=TEMPLATE, sms_signature=""))
    [record] = sim.messages(to="+8613800100002")
    assert record["provider"] == "volcengine" and record["provider_message_id"] == result.provider_message_id
    assert record["message_id"] == "msg_01jtest000002"
    request = record["request"]
    assert request["SmsAccount"] == "7a2b0c1d"
    assert request["Sign"] == "ACME"  # the sign_name setting when the template has none
    assert request["TemplateID"] == TEMPLATE
    assert json.loads(request["TemplateParam"]) == {"order_no": "A2", "name": "Li"}
    assert request["PhoneNumbers"] == "13800100002"
    assert request["Tag"] == "msg_01jtest000002"


def test_an_international_number_is_sent_in_e164(sim: Simulator) -> None:
    volc(sim).send(message(3, to="+14155550103", provider_template_id=TEMPLATE))
    [record] = sim.messages(to="+14155550103")
    assert record["request"]["PhoneNumbers"] == "+14155550103"


def test_batch_sends_a_templates_messages_in_one_call_each_with_its_own_params_and_id(sim: Simulator) -> None:
    batch = [
        message(11, provider_template_id=TEMPLATE),
        message(12, provider_template_id=TEMPLATE),
        message(13, provider_template_id=TEMPLATE, to="+14155550113"),
        message(14, provider_template_id="ST_00000002"),  # another template: a call of its own
    ]
    outcomes = volc(sim).send_batch(batch)
    assert all(isinstance(o, SendResult) for o in outcomes)
    assert len({o.provider_message_id for o in outcomes if isinstance(o, SendResult)}) == 4
    [shared] = sim.messages(to="+8613800100011")
    assert "Messages" in shared["request"] and "Tag" not in shared["request"]
    assert [(m["PhoneNumber"], json.loads(m["TemplateParam"])["order_no"]) for m in shared["request"]["Messages"]] == [
        ("13800100011", "A11"),
        ("13800100012", "A12"),
        ("+14155550113", "A13"),
    ]
    for number, outcome in zip(("+8613800100011", "+8613800100012", "+14155550113"), outcomes, strict=False):
        [record] = sim.messages(to=number)
        assert record["provider_message_id"] == outcome.provider_message_id  # type: ignore[union-attr]
    [alone] = sim.messages(to="+8613800100014")
    assert alone["request"]["PhoneNumbers"] == "13800100014" and alone["message_id"] == "msg_01jtest000014"


def test_a_batch_refused_for_one_bad_number_gives_each_message_its_own_outcome(sim: Simulator) -> None:
    batch = [message(21, provider_template_id=TEMPLATE), message(22, provider_template_id=TEMPLATE, to="+86-bad")]
    batch.append(message(23, provider_template_id=TEMPLATE))
    outcomes = volc(sim).send_batch(batch)
    assert [type(o) for o in outcomes] == [SendResult, ProviderError, SendResult]
    bad = outcomes[1]
    assert isinstance(bad, ProviderError) and (bad.code, bad.permanent, bad.provider_fault) == ("RE:0006", True, False)
    assert [r["request"].get("PhoneNumbers") for r in sim.messages(to="+8613800100021")] == ["13800100021"]  # sent alone


def test_a_batch_failing_as_a_whole_fails_each_message_transiently(sim: Simulator) -> None:
    sim.behave("volcengine", fail_rate=1.0, error="http_500")
    outcomes = volc(sim).send_batch([message(31, provider_template_id=TEMPLATE), message(32, provider_template_id=TEMPLATE)])
    assert len(outcomes) == 2
    assert all(isinstance(o, ProviderError) and o.code == "InternalError" and not o.permanent for o in outcomes)


@pytest.mark.parametrize(
    ("error", "code", "permanent", "detail"),
    [
        ("invalid_number", "RE:0006", True, "手机号"),
        ("throttle", "throttle", False, "FlowLimitExceeded"),
        ("http_500", "InternalError", False, ""),
    ],
)
def test_injected_errors_look_like_volcengines_and_are_classified(
    sim: Simulator, error: str, code: str, permanent: bool, detail: str
) -> None:
    sim.behave("volcengine", fail_rate=1.0, error=error)
    with pytest.raises(ProviderError) as caught:
        volc(sim).send(message(41, provider_template_id=TEMPLATE))
    assert (caught.value.code, caught.value.permanent, caught.value.ambiguous) == (code, permanent, False)
    assert detail in caught.value.detail


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("RE:0005", 400, ("RE:0005", True, True)),  # template not approved: another provider may have it
        ("RE:0010", 200, ("RE:0010", True, True)),  # arrears, whatever the status
        ("RE:0009", 400, ("RE:0009", True, False)),
        ("RE:0013", 400, ("throttle", False, False)),  # the console's sending cap
        ("AccountFlowLimitExceeded", 429, ("throttle", False, False)),
        ("RE:0500", 400, ("RE:0500", False, False)),
        ("ServiceUnavailableTemp", 503, ("ServiceUnavailableTemp", False, False)),
        ("RE:9999", 200, ("RE:9999", False, False)),
        ("RE:9999", 400, ("RE:9999", True, False)),
    ],
)
def test_error_codes_are_classified(code: str, status: int, expected: tuple[str, bool, bool]) -> None:
    error = volcengine.error_for(code, "detail", status)
    assert (error.code, error.permanent, error.provider_fault) == expected


def test_parses_the_documented_report() -> None:
    [receipt] = volcengine.VolcengineSms({}).parse_receipt(headers={}, body=DOCUMENTED_REPORT)
    assert receipt.provider == "volcengine"
    assert receipt.provider_message_id == "bde1b10d-19cf-460f-abcd-26231a820000"
    assert (receipt.message_id, receipt.to, receipt.status, receipt.code, receipt.detail) == (
        "123456",
        "+8618800000001",
        "delivered",
        "0",
        "DELIVRD",
    )
    assert receipt.at == dt.datetime(2022, 11, 23, 2, 36, 53, 444000, tzinfo=dt.UTC)
    failed = DOCUMENTED_REPORT.replace(b'"status_code": "0"', b'"status_code": "NE:0105"')
    [undelivered] = volcengine.VolcengineSms({}).parse_receipt(headers={}, body=failed)
    assert (undelivered.status, undelivered.code) == ("undelivered", "NE:0105")


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b'{"message_id": "1"}',
        b'[{"message_id": "1", "mobile": "13800000001"}]',
        b'[{"message_id": "1", "status_code": "0", "recv_time": "yesterday"}]',
    ],
)
def test_malformed_reports_are_refused(body: bytes) -> None:
    with pytest.raises(ReceiptFormatError):
        volcengine.VolcengineSms({}).parse_receipt(headers={}, body=body)


@pytest.mark.parametrize("outcome", ["delivered", "undelivered"])
def test_the_simulator_pushes_reports_the_adapter_parses(sim: Simulator, outcome: str) -> None:
    sim.behave("volcengine", receipt=outcome, receipt_delay_ms=0)
    sender = volc(sim)
    results = sender.send_batch([message(n, provider_template_id=TEMPLATE) for n in (51, 52)])
    wait_until(lambda: sum(len(json.loads(r.body)) for r in sim.receiver.on("/receipts/volcengine")) >= 2, 5, "two reports")
    receipts = [
        r for pushed in sim.receiver.on("/receipts/volcengine") for r in sender.parse_receipt(headers={}, body=pushed.body)
    ]
    assert sorted((r.provider_message_id, r.to, r.status) for r in receipts) == sorted(
        (result.provider_message_id, f"+86138001000{n}", outcome)  # type: ignore[union-attr]
        for result, n in zip(results, (51, 52), strict=True)
    )
    assert {r.code for r in receipts} == {"0" if outcome == "delivered" else "NE:0105"}


def test_polling_asks_per_message_and_returns_its_final_status(sim: Simulator) -> None:
    sim.behave("volcengine", receipt="undelivered", receipt_delay_ms=300)
    sender = volc(sim)
    outbound = message(61, provider_template_id=TEMPLATE)
    message_id = sender.send(outbound).provider_message_id
    since = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)  # yesterday is asked first, and has nothing

    assert sender.poll_receipts(since=since, phones_and_ids=[(outbound.to, message_id)]) == []  # sent, no report yet
    wait_until(lambda: sender.poll_receipts(since=since, phones_and_ids=[(outbound.to, message_id)]), 5, "the final status")
    [receipt] = sender.poll_receipts(since=since, phones_and_ids=[(outbound.to, message_id)])
    assert (receipt.provider_message_id, receipt.to, receipt.status, receipt.code) == (
        message_id,
        outbound.to,
        "undelivered",
        "NE:0105",
    )
    assert sender.poll_receipts(since=since, phones_and_ids=[(outbound.to, "no-such-id"), (outbound.to, "")]) == []
    assert sender.poll_receipts(since=since) == []


def test_lookup_finds_our_send_to_the_number_by_template_and_values_alone_or_in_a_batch(sim: Simulator) -> None:
    """GetSmsSendDetails without a MessageID lists the number's sends of a Beijing day, with no Tag: ours
    is the one with our signature and template, sent since the message was made, whose content holds our
    values. It is listed from the moment it is accepted, so a miss means "not there"."""
    sender = volc(sim)
    assert sender.can_be_asked and sender.lookup_sees_unreported
    sim.behave("volcengine", receipt_delay_ms=60_000)  # no report: the lookup must not need one
    since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    ours = message(71, provider_template_id=TEMPLATE, params={"code": "482913"})
    other_values = message(72, provider_template_id=TEMPLATE, to=ours.to, params={"code": "111111"})
    other_template = message(73, provider_template_id="ST_00000000", to=ours.to, params={"code": "482913"})
    for other in (other_values, other_template):
        sender.send(other)
    assert sender.lookup_sent(ours, since=since) is None  # not sent yet: a "no"
    sent = sender.send(ours)

    found = sender.lookup_sent(ours, since=since)
    assert found is not None and found.provider_message_id == sent.provider_message_id and found.raw["reconciled"]
    assert sender.lookup_sent(ours, since=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)) is None  # sent before `since`

    batch = [message(74 + n, provider_template_id=TEMPLATE, params={"code": f"90{n}"}) for n in range(3)]
    outcomes = sender.send_batch(batch)
    assert ["Messages" in r["request"] for r in sim.messages(to=batch[1].to)] == [True]  # one SendBatchSms, no Tag
    found = sender.lookup_sent(batch[1], since=since)
    assert found is not None and found.provider_message_id == outcomes[1].provider_message_id  # type: ignore[union-attr]

    with pytest.raises(ProviderError) as refused:
        volc(sim, secret_access_key="wrong").lookup_sent(ours, since=since)
    assert refused.value.code == "SignatureDoesNotMatch"


def test_validate_settings_and_template_ids() -> None:
    assert volcengine.VolcengineSms.validate_settings({}) == ["access_key_id", "secret_access_key", "sms_account"]
    assert volcengine.VolcengineSms.validate_settings({"access_key_id": "a", "secret_access_key": "s", "sms_account": "g"}) == []
    pattern, _ = volcengine.VolcengineSms.template_id_format
    assert all(pattern.fullmatch(t) for t in (TEMPLATE, "SPT_0fa70000"))
    assert not any(pattern.fullmatch(t) for t in ("SMS_1234", "1234", "ST_"))


@pytest.mark.django_db
def test_a_template_refuses_an_id_volcengine_would_not_issue(api: Any) -> None:
    body = {
        "code": "t1",
        "name": "t1",
        "channel": "sms",
        "category": "transactional",
        "content": "Hi {{n}}",
        "sms_signature": "ACME",
    }
    response = api.post("/api/v1/templates", {**body, "provider_template_ids": {"volcengine": "SMS_1234"}})
    assert response.status_code == 400 and "provider_template_ids.volcengine" in response.json()["errors"]
    assert api.post("/api/v1/templates", {**body, "provider_template_ids": {"volcengine": TEMPLATE}}).status_code == 201


@pytest.mark.django_db
def test_the_pushed_report_is_verified_and_applied_through_the_receipts_endpoint(
    sim: Simulator, api: Any, make_template: Any
) -> None:
    provider = Provider(name="test-volcengine", kind="volcengine", channel="sms")
    provider_save(provider=provider, settings={**sim.settings("volcengine"), TOKEN_SETTING: RECEIPT_TOKEN})
    make_template(api, code="notice", content="Your code {{n}} is ready.", provider_template_ids={"volcengine": TEMPLATE})
    accepted = api.post("/api/v1/messages", {"template": "notice", "to": {"phone": "+8613800100071"}, "params": {"n": "7"}})
    public_id = accepted.json()["messages"][0]["id"]
    row = Message.objects.get(id=ids.decode("msg", public_id))

    sim.behave("volcengine", receipt_delay_ms=0)
    result = volc(sim).send(message(71, message_id=public_id, provider_template_id=TEMPLATE, params={"n": "7"}))
    row.status, row.provider, row.provider_message_id = "sent", "test-volcengine", result.provider_message_id
    row.attempts, row.sent_at = 1, timezone.now() - dt.timedelta(seconds=2)
    row.save()
    wait_until(lambda: sim.receiver.on("/receipts/volcengine"), 5, "the pushed report")
    [pushed] = sim.receiver.on("/receipts/volcengine")

    refused = Client().post("/api/v1/receipts/volcengine?token=wrong", pushed.body, content_type="application/json")
    assert refused.status_code == 401
    response = Client().post(f"/api/v1/receipts/volcengine?token={RECEIPT_TOKEN}", pushed.body, content_type="application/json")
    matching.receipts_match_pending()
    assert response.status_code == 200, response.content
    row.refresh_from_db()
    assert row.status == "delivered" and row.delivered_at is not None
    receipt = ProviderReceipt.objects.get()
    assert (receipt.provider, receipt.message_id, receipt.message_ref, receipt.code) == ("test-volcengine", row.id, row.id, "0")


def test_the_default_run_has_a_third_domestic_provider() -> None:
    specs = simulator_providers("http://127.0.0.1:8025")
    spec = specs["sim-volcengine"]
    assert (spec["kind"], spec["channel"], spec["destinations"], spec.get("priority_group", 1)) == ("volcengine", "sms", "+86", 1)
    assert specs["sim-twilio"]["priority_group"] == 2


@pytest.fixture(scope="module")
def live_simulator(live_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    """A simulator whose pushes reach our app on the live server, with RECEIPT_TOKEN in the URL."""
    log_path = tmp_path_factory.mktemp("volcengine-live-simulator") / "simulator.log"
    with simulator_process(f"{live_server.url}/api/v1/receipts/t/{RECEIPT_TOKEN}/", log_path) as process:
        yield Simulator(process, Receiver(""))


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_mainland_sms_goes_through_volcengine_when_the_others_fail_and_is_delivered_by_its_report(
    api: Any, make_template: Any, live_simulator: Simulator, dispatch_worker: Any
) -> None:
    sim = live_simulator
    sim.control("POST", "/_sim/reset")
    simulator_providers_configure(base_url=sim.url, apns_port=sim.process.apns_port, smtp_port=sim.process.smtp_port)
    # The token the simulator pushes with, on one row; the default run's command shares it with every unsigned one.
    aliyun = Provider.objects.get(name="sim-aliyun")
    provider_save(provider=aliyun, settings={**aliyun.settings, TOKEN_SETTING: RECEIPT_TOKEN})
    printed = io.StringIO()
    call_command("configure_simulator_receipts", stdout=printed)
    assert printed.getvalue().strip() == RECEIPT_TOKEN
    assert Provider.objects.get(name="sim-volcengine").settings[TOKEN_SETTING] == RECEIPT_TOKEN
    # The worst order: Aliyun first, then Tencent (the retry avoids Aliyun), then Volcengine, which
    # the weights make the least likely: a retry fails over through every provider that has not
    # failed the message yet instead of bouncing between the two failing ones.
    for name, weight in (("sim-aliyun", 1_000_000), ("sim-tencent", 1_000), ("sim-volcengine", 1)):
        Provider.objects.filter(name=name).update(weight=weight)
    providers_changed()
    for kind in ("aliyun", "tencent", "twilio"):
        sim.behave(kind, fail_rate=1.0, error="http_500")
    ids_by_kind = {"aliyun": "SMS_300", "tencent": "3001", "volcengine": TEMPLATE}
    make_template(api, code="shipped", provider_template_ids=ids_by_kind)

    phone = "+8613800000099"
    sent = api.post("/api/v1/messages", {"template": "shipped", "to": {"phone": phone}, "params": {"order_no": "A9"}})
    assert sent.status_code == 202, sent.content
    message_id = sent.json()["messages"][0]["id"]

    def status() -> str:
        return str(api.get(f"/api/v1/messages/{message_id}").json()["status"])

    wait_until(lambda: status() in ("delivered", "failed", "expired"), 60, "the delivered report")
    body = api.get(f"/api/v1/messages/{message_id}").json()
    assert body["status"] == "delivered", body["events"]
    assert body["provider"] == "sim-volcengine"
    attempts = [(e["status"], e["provider"]) for e in body["events"] if e["status"] in ("retry_wait", "sent")]
    assert attempts[-1] == ("sent", "sim-volcengine")
    assert {provider for _, provider in attempts[:-1]} <= {"sim-aliyun", "sim-tencent"}
    assert body["events"][-1]["status"] == "delivered"
    [record] = sim.messages(to=phone)  # the failing providers accepted nothing
    assert (record["provider"], record["message_id"]) == ("volcengine", message_id)
    assert record["request"]["TemplateID"] == TEMPLATE and json.loads(record["request"]["TemplateParam"]) == {"order_no": "A9"}
    receipt = ProviderReceipt.objects.get()
    assert (receipt.provider, receipt.source, receipt.status) == ("sim-volcengine", "push", "delivered")
