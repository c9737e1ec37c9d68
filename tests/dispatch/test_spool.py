"""Sends through a database outage (apps/dispatch/spool): with PostgreSQL unreachable for this
process (its port swapped for a closed one, as tests/test_database_down.py does), a verification code
is accepted into the Redis spool with its final id, shown by GET, delivered from the spool by a real
worker through the simulator, and stored in PostgreSQL once when it is back, with its events and its
code still checkable; marketing sends and sends past a full spool answer 503 `unavailable`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client, override_settings

from apps.dispatch.models import Message, MessageEvent, Provider
from apps.dispatch.providers_config import provider_save
from apps.dispatch.spool import accept as spool_accept
from apps.dispatch.spool import replay, store
from apps.receipts import intake
from apps.verifications.models import Verification
from messaging_center import ids
from messaging_center.broker import redis_client
from tests.helpers import wait_until
from tests.test_database_down import database_unreachable

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

PHONE = "+8613800001234"
RECEIPT_TOKEN = "spool-receipts-token"


def _report(phone: str, provider_message_id: str, public_id: str) -> Any:
    """Aliyun's push of a delivered report, as it reaches the receipts endpoint."""
    report = {
        "phone_number": phone.removeprefix("+86"),
        "send_time": "2026-11-23 10:00:00",
        "report_time": "2026-11-23 10:00:01",
        "success": True,
        "err_code": "DELIVERED",
        "err_msg": "ok",
        "sms_size": "1",
        "biz_id": provider_message_id,
        "out_id": public_id,
    }
    return Client().post(f"/api/v1/receipts/aliyun?token={RECEIPT_TOKEN}", json.dumps([report]), content_type="application/json")


@pytest.fixture(autouse=True)
def _fresh_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts as a process that has not seen the database down (after an outage, sends go
    on to the spool for up to a second); the spool switches the test Redis to `appendfsync always`,
    the suite goes on without it."""
    monkeypatch.setattr(spool_accept, "_down_until", 0.0)
    yield
    store.restore_fsync()


@pytest.fixture
def login_code(api, make_template, sim):  # type: ignore[no-untyped-def]
    settings = sim.settings("aliyun", receipt_token=RECEIPT_TOKEN)
    provider_save(provider=Provider(name="test-aliyun", kind="aliyun", channel="sms"), settings=settings)
    make_template(api, code="promo", category="marketing", content="Sale {{n}}", provider_template_ids={"aliyun": "SMS_300"})
    return make_template(
        api,
        code="login_code",
        category="verification",
        content="Your code is {{code}}.",
        provider_template_ids={"aliyun": "SMS_200"},
    )


def _code_sent_to(sim, phone: str) -> str:  # type: ignore[no-untyped-def]
    [record] = sim.messages(to=phone)
    return str(json.loads(record["request"]["TemplateParam"])["code"])


def _replay_all() -> int:
    """Replays until the spool is empty (a message a worker is sending waits for its finish), as the
    beat job does every 2 s."""
    replayed = [0]

    def empty() -> bool:
        replayed[0] += replay.replay_spool()
        return redis_client().zcard(store.IDS_KEY) == 0

    wait_until(empty, 30, "the spool replayed")
    return replayed[0]


def test_a_code_sent_during_an_outage_is_delivered_from_the_spool_and_stored_once_with_its_report(
    api, login_code, sim, dispatch_worker
) -> None:
    # Before the outage: this process has read the key and the templates, the worker the providers.
    warm = api.post("/api/v1/verifications", {"to": {"phone": "+8613800009999"}, "template": "login_code"})
    assert warm.status_code == 202, warm.content
    # (held by quiet hours or sent: either way this process has read the marketing template)
    assert (
        api.post("/api/v1/messages", {"template": "promo", "to": {"phone": "+8613800009998"}, "params": {"n": "1"}}).status_code
        == 202
    )
    wait_until(lambda: sim.messages(to="+8613800009999"), 30, "the code sent before the outage")
    assert _report("+8613800009999", "unknown", "msg_unknown").status_code == 200  # the receipts endpoint too

    with database_unreachable():
        # The request that finds the database gone is refused; nothing of it is stored anywhere.
        first = api.post("/api/v1/verifications", {"to": {"phone": PHONE}, "template": "login_code"})
        assert first.status_code == 503 and first.json()["code"] == "unavailable" and first["Retry-After"]
        sent = api.post("/api/v1/verifications", {"to": {"phone": PHONE}, "template": "login_code"})
        assert sent.status_code == 202, sent.content
        message_id = sent.json()["message_id"]

        marketing = api.post("/api/v1/messages", {"template": "promo", "to": {"phone": PHONE}, "params": {"n": "2"}})
        assert marketing.status_code == 503 and marketing.json()["code"] == "unavailable" and marketing["Retry-After"]

        def status() -> str:
            response = api.get(f"/api/v1/messages/{message_id}")
            assert response.status_code == 200, response.content
            return str(response.json()["status"])

        wait_until(lambda: status() == "sent", 30, "the code sent from the spool")
        body = api.get(f"/api/v1/messages/{message_id}").json()
        assert body["provider"] == "test-aliyun" and body["provider_message_id"] and body["content"] == "Your code is ******."
        assert [e["status"] for e in body["events"]] == ["queued", "sending", "sent"]
        assert api.get("/api/v1/messages").status_code == 503  # a search waits for the database
        # The provider's report of the code is answered as usual and waits in the spool.
        assert _report(PHONE, body["provider_message_id"], message_id).status_code == 200

    code = _code_sent_to(sim, PHONE)
    assert _replay_all() == 1
    assert _replay_all() == 0  # once
    assert intake.receipts_replay_spooled() == 1
    assert intake.receipts_replay_spooled() == 0
    message = Message.objects.get(id=ids.decode("msg", message_id))
    assert (message.status, message.provider, message.attempts) == ("delivered", "test-aliyun", 1)
    assert [e.status for e in MessageEvent.objects.filter(message_id=message.id).order_by("id")] == ["sent", "delivered"]
    assert Verification.objects.filter(message_id=message.id).count() == 1
    assert store.size() == 0 and not redis_client().keys("mc:spool:[me]:*")
    events = api.get(f"/api/v1/messages/{message_id}").json()["events"]
    assert [e["status"] for e in events] == ["queued", "sending", "sent", "delivered"]
    assert api.post("/api/v1/verifications/check", {"to": {"phone": PHONE}, "code": code}).json() == {"valid": True}
    assert len(sim.messages(to=PHONE)) == 1  # the refused request sent nothing


@override_settings(SPOOL_MAX_MESSAGES=2)
def test_a_full_spool_answers_503(api, login_code, sim) -> None:
    api.post("/api/v1/verifications", {"to": {"phone": "+8613800009999"}, "template": "login_code"})
    phones = [f"+86138000012{i:02d}" for i in range(4)]
    with database_unreachable():
        answers = [api.post("/api/v1/verifications", {"to": {"phone": p}, "template": "login_code"}) for p in phones]
    assert [a.status_code for a in answers] == [503, 202, 202, 503]  # the first found the outage
    assert answers[3].json()["code"] == "unavailable" and "spool is full" in answers[3].json()["detail"]
    assert redis_client().zcard(store.IDS_KEY) == 2
    assert _replay_all() == 2
    assert Verification.objects.filter(address__in=phones).count() == 2


def test_transactional_sends_wait_in_the_spool_and_their_opt_outs_are_checked_when_the_database_is_back(
    api, login_code, make_template, sim, dispatch_worker
) -> None:
    make_template(api, code="shipped", content="Order {{n}} shipped.", provider_template_ids={"aliyun": "SMS_100"})
    api.put("/api/v1/recipients/u-out", {"phone": "+8613800001301"})
    assert api.patch("/api/v1/recipients/u-out/preferences", {"transactional": {"sms": False}}).status_code == 200
    to = [{"phone": "+8613800001300"}, {"phone": "+8613800001301"}]
    assert api.post("/api/v1/messages", {"template": "shipped", "to": to[0], "params": {"n": "0"}}).status_code == 202
    wait_until(lambda: sim.messages(to=to[0]["phone"]), 30, "a send before the outage")

    with database_unreachable():
        assert api.post("/api/v1/messages", {"template": "shipped", "to": to, "params": {"n": "1"}}).status_code == 503
        sent = api.post("/api/v1/messages", {"template": "shipped", "to": to, "params": {"n": "1"}})
        assert sent.status_code == 202, sent.content
        assert [m["status"] for m in sent.json()["messages"]] == ["queued", "queued"]
        kept, opted_out = (m["id"] for m in sent.json()["messages"])
        assert api.get(f"/api/v1/messages/{kept}").json()["status"] == "queued"
    assert len(sim.messages(to=to[0]["phone"])) == 1  # waited in the spool: nothing sent while down

    assert _replay_all() == 2
    wait_until(lambda: api.get(f"/api/v1/messages/{kept}").json()["status"] == "sent", 30, "the replayed message sent")
    refused = api.get(f"/api/v1/messages/{opted_out}").json()
    assert (refused["status"], refused["code"]) == ("suppressed", "opted_out")
    assert sim.messages(to=to[1]["phone"]) == []
    assert len(sim.messages(to=to[0]["phone"])) == 2
