"""Reconcile before resend (issue #22), with a real worker against the provider simulator: a provider
that takes a message and then times out is asked before any resend, and where it cannot tell, the
message is held — a verification code for seconds, anything else for the receipt window, in which a
receipt settles it."""

from __future__ import annotations

import collections
import datetime as dt

import pytest
from django.test import override_settings
from prometheus_client import REGISTRY

from apps.dispatch.models import Message, Provider
from apps.dispatch.providers.base import Receipt
from apps.dispatch.providers_config import provider_save
from apps.receipts.matching import receipts_record, receipts_rematch
from devstack.embedded import EmbeddedRedis
from messaging_center import ids
from tests.helpers import celery_worker, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

LANES = "mc.critical,mc.high,mc.normal,mc.bulk"


@pytest.fixture
def own_redis(tmp_path):
    """A broker of this test's own: no other worker takes its tasks."""
    redis = EmbeddedRedis(tmp_path / "redis")
    url = redis.ensure_running().rsplit("/", 1)[0] + "/1"
    with override_settings(REDIS_URL=url, CELERY_BROKER_URL=url):
        yield url
    redis.stop()


def _providers(sim, first: str) -> Provider:
    """`first` is tried first (and answers after 1 s at most); Aliyun is the failover."""
    made = provider_save(
        provider=Provider(name=f"test-{first}", kind=first, channel="sms", priority_group=1),
        settings=sim.settings(first, read_timeout="1"),
    )
    provider_save(
        provider=Provider(name="test-aliyun", kind="aliyun", channel="sms", priority_group=2), settings=sim.settings("aliyun")
    )
    return made


def _send(api, template: str, numbers: list[str]) -> list[str]:
    to = [{"phone": number, "params": {"n": number[-4:]}} for number in numbers]
    response = api.post("/api/v1/messages", {"template": template, "to": to})
    assert response.status_code == 202, response.content
    return [m["id"] for m in response.json()["messages"]]


def _message(public_id: str) -> Message:
    return Message.objects.get(id=ids.decode("msg", public_id))


def _received(sim, number: str) -> list[dict]:
    return sim.messages(to=number)


@pytest.mark.parametrize("kind", ["tencent", "twilio", "volcengine"])
def test_a_provider_that_takes_the_message_then_times_out_is_asked_and_nobody_gets_it_twice(
    api, make_template, sim, worker_env, own_redis, tmp_path, kind
) -> None:
    make_template(
        api,
        code="notice",
        content="Your parcel {{n}} is on its way.",
        provider_template_ids={"aliyun": "SMS_100", "tencent": "1001", "volcengine": "ST_1001abcd"},
    )
    _providers(sim, kind)
    sim.behave(kind, fail_rate=1.0, error="timeout")  # accepted, then no answer
    numbers = [f"+861380010{i:04d}" for i in range(5)]
    env = worker_env | {"REDIS_URL": own_redis}
    with celery_worker(env, LANES, tmp_path / "worker.log", name="reconcile"):
        message_ids = _send(api, "notice", numbers)
        wait_until(
            lambda: all(_message(m).status == "sent" for m in message_ids), 60, "every message settled as sent", interval=0.5
        )

    for number, public_id in zip(numbers, message_ids, strict=True):
        [record] = _received(sim, number)  # once, by the provider that timed out; Aliyun never had it
        assert record["provider"] == kind
        message = _message(public_id)
        assert message.provider == f"test-{kind}"
        assert message.provider_message_id == record["provider_message_id"]  # its receipts will match
        details = list(message.events.order_by("at").values_list("status", "code", "detail"))
        assert details[0][:2] == ("retry_wait", "timeout")
        assert "already had it" in details[-1][2]


def test_where_nothing_settles_the_outcome_a_code_goes_again_in_seconds_others_wait_for_the_receipt_window(
    api, make_template, sim, worker_env, own_redis, tmp_path
) -> None:
    """Tencent takes every message and times out, and no carrier report comes: its lookup cannot say.
    The verification code goes again through Aliyun after the 5 s hold; the transactional messages
    wait for the receipt window (20 s here), and the one whose receipt arrives meanwhile is never sent again."""
    make_template(
        api,
        code="login",
        category="verification",
        content="Code {{code}}",
        provider_template_ids={"aliyun": "SMS_1", "tencent": "1"},
    )
    make_template(api, code="notice", content="Parcel {{n}}", provider_template_ids={"aliyun": "SMS_2", "tencent": "2"})
    tencent = _providers(sim, "tencent")
    sim.behave("tencent", fail_rate=1.0, error="timeout", receipt="none")
    code_number, late_number, settled_number = "+8613800200001", "+8613800200002", "+8613800200003"
    env = worker_env | {"REDIS_URL": own_redis, "RECEIPT_TIMEOUT_SECONDS": "20", "AMBIGUOUS_RESEND_AFTER_VERIFICATION_S": "5"}
    with celery_worker(env, LANES, tmp_path / "worker.log", name="hold"):
        response = api.post("/api/v1/verifications", {"to": {"phone": code_number}, "template": "login"})
        assert response.status_code == 202, response.content
        code = response.json()["message_id"]
        late, settled = _send(api, "notice", [late_number, settled_number])
        wait_until(lambda: _message(code).status == "sent", 30, "the code sent again", interval=0.2)

        assert [r["provider"] for r in _received(sim, code_number)] == ["tencent", "aliyun"]
        assert {_message(late).status, _message(settled).status} == {"retry_wait"}  # held, not resent
        assert [r["provider"] for r in _received(sim, late_number)] == ["tencent"]
        [took] = _received(sim, settled_number)
        receipts_record(
            provider=tencent,
            receipts=[
                Receipt(
                    "tencent",
                    took["provider_message_id"],
                    settled,
                    settled_number,
                    "delivered",
                    "DELIVRD",
                    "",
                    dt.datetime.now(dt.UTC),
                )
            ],
            source="poll",
        )
        wait_until(lambda: _message(late).status == "sent", 40, "the transactional message sent again", interval=0.5)

    code_times = [dt.datetime.fromisoformat(r["received_at"]) for r in _received(sim, code_number)]
    assert dt.timedelta(seconds=4.5) <= code_times[1] - code_times[0] < dt.timedelta(seconds=15)
    late_times = [dt.datetime.fromisoformat(r["received_at"]) for r in _received(sim, late_number)]
    assert [r["provider"] for r in _received(sim, late_number)] == ["tencent", "aliyun"]
    assert late_times[1] - late_times[0] >= dt.timedelta(seconds=19)
    assert collections.Counter(r["provider"] for r in _received(sim, settled_number)) == {"tencent": 1}
    assert _message(settled).status == "delivered"
    held = _message(late).events.filter(code="outcome_unknown").values_list("detail", flat=True)
    assert held and all("no report of it yet" in detail for detail in held)

    # The code reached the person twice; Tencent's report of its copy (by our id) counts it, once.
    stats_before = _by_provider(api)
    assert {g["duplicates"] for g in stats_before.values()} == {0}
    before = REGISTRY.get_sample_value("mc_duplicate_sends_total", {"channel": "sms"})
    first = _received(sim, code_number)[0]
    for status in ("delivered", "delivered", "undelivered"):
        report = Receipt("tencent", first["provider_message_id"], code, code_number, status, "", "", dt.datetime.now(dt.UTC))
        receipts_record(provider=tencent, receipts=[report], source="poll")
        receipts_rematch()
    assert REGISTRY.get_sample_value("mc_duplicate_sends_total", {"channel": "sms"}) == before + 1
    [duplicate] = _message(code).events.filter(code="duplicate_send")
    assert duplicate.provider == "test-tencent" and _message(code).status == "sent"  # the report moved nothing
    # In /stats, under the provider that delivered it too; the report is no call of Tencent's.
    after = _by_provider(api)
    assert (after["test-tencent"]["duplicates"], after["test-aliyun"]["duplicates"]) == (1, 0)
    assert {k: g["attempts"] for k, g in after.items()} == {k: g["attempts"] for k, g in stats_before.items()}


def _by_provider(api) -> dict[str, dict]:
    return {g["key"]: g for g in api.get("/api/v1/stats", {"group_by": "provider"}).json()["groups"]}
