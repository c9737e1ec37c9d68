"""Hedged sends with a real worker against the simulator with one provider made slow: a verification
code goes through another provider once its call passes the critical lane's deadline
(PROVIDER_CALL_DEADLINE_CRITICAL_MS, 1.5 s), and the slow provider's late answer is recorded and
changes nothing else."""

from __future__ import annotations

import datetime as dt

import pytest

from apps.dispatch.models import Provider
from apps.dispatch.providers_config import provider_save
from tests.helpers import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

# Below the adapters' 5 s read timeout, so that the slow provider's answer arrives (late) rather than
# ending as a timeout; well above the 1.5 s deadline.
SLOW_MS = 4000


@pytest.fixture
def providers(sim):
    """Tencent first (its own priority group), Aliyun behind it: every message goes to Tencent."""
    for kind, group in (("tencent", 0), ("aliyun", 1)):
        provider_save(
            provider=Provider(name=f"test-{kind}", kind=kind, channel="sms", priority_group=group), settings=sim.settings(kind)
        )


@pytest.fixture
def templates(api, make_template):
    ids = {"aliyun": "SMS_100", "tencent": "1001"}
    make_template(api, code="login", category="verification", content="Your code is {{code}}.", provider_template_ids=ids)
    make_template(api, code="shipped", category="transactional", content="Order {{n}} shipped.", provider_template_ids=ids)


def _send(api, template: str, phone: str, params: dict[str, str]) -> str:
    response = api.post("/api/v1/messages", {"template": template, "to": {"phone": phone}, "params": params})
    assert response.status_code == 202, response.content
    [message] = response.json()["messages"]
    return str(message["id"])


def _message(api, message_id: str) -> dict:
    return api.get(f"/api/v1/messages/{message_id}").json()


def _accept_to_sent(body: dict) -> float:
    return (dt.datetime.fromisoformat(body["sent_at"]) - dt.datetime.fromisoformat(body["created_at"])).total_seconds()


def _late_answers(api, message_id: str) -> list[dict]:
    return [e for e in _message(api, message_id)["events"] if e["status"] == "late_answer"]


def test_a_code_goes_through_another_provider_at_the_deadline_and_the_late_acceptance_is_recorded(
    api, templates, providers, sim, dispatch_worker
) -> None:
    sim.behave("tencent", latency_ms=SLOW_MS)
    message_id = _send(api, "login", "+8613900000001", {"code": "123456"})

    wait_until(lambda: _message(api, message_id)["status"] == "sent", 30, "the code sent")
    body = _message(api, message_id)
    assert (body["provider"], body["attempts"]) == ("test-aliyun", 1)
    assert _accept_to_sent(body) < SLOW_MS / 1000 - 1  # it did not wait for Tencent
    [sent] = [e for e in body["events"] if e["status"] == "sent"]
    assert sent["provider"] == "test-aliyun" and "test-tencent had not answered within 1.5 s" in sent["detail"]

    # Tencent accepts it too, later: the person got two codes; the message stays Aliyun's.
    wait_until(lambda: _late_answers(api, message_id), 30, "Tencent's late answer")
    [late] = _late_answers(api, message_id)
    assert (late["code"], late["provider"], late["attempt"]) == ("duplicate_send", "test-tencent", 1)
    assert "may get it twice" in late["detail"]
    body = _message(api, message_id)
    assert (body["status"], body["provider"], body["attempts"]) == ("sent", "test-aliyun", 1)
    [aliyun] = [r for r in sim.messages(to="+8613900000001") if r["provider"] == "aliyun"]
    assert body["provider_message_id"] == aliyun["provider_message_id"]
    assert sorted(r["provider"] for r in sim.messages(to="+8613900000001")) == ["aliyun", "tencent"]
    # /stats: Tencent's late acceptance is a call it accepted, and a duplicate to the person.
    groups = {g["key"]: g for g in api.get("/api/v1/stats", {"group_by": "provider"}).json()["groups"]}
    assert (groups["test-tencent"]["duplicates"], groups["test-tencent"]["attempts"]) == (1, 1)
    assert (groups["test-tencent"]["success_rate"], groups["test-aliyun"]["duplicates"]) == (1.0, 0)


def test_codes_right_after_a_hedge_go_around_the_slow_provider(api, templates, providers, sim, dispatch_worker) -> None:
    sim.behave("tencent", latency_ms=SLOW_MS)
    first = _send(api, "login", "+8613900000004", {"code": "111111"})
    wait_until(lambda: _message(api, first)["status"] == "sent", 30, "the first code sent")

    # Tencent is still its first choice, but it was slow a moment ago: no waiting for it again.
    second = _send(api, "login", "+8613900000005", {"code": "222222"})
    wait_until(lambda: _message(api, second)["status"] == "sent", 30, "the second code sent")
    body = _message(api, second)
    assert body["provider"] == "test-aliyun" and _accept_to_sent(body) < 1.5
    assert [e["status"] for e in body["events"]] == ["queued", "sending", "sent"]
    assert [r["provider"] for r in sim.messages(to="+8613900000005")] == ["aliyun"]
    # The first code's late answer is recorded by a thread of the worker: before the test's data goes.
    wait_until(lambda: _late_answers(api, first), 30, "Tencent's late answer to the first code")


def test_a_message_of_another_lane_waits_for_the_slow_provider(api, templates, providers, sim, dispatch_worker) -> None:
    sim.behave("tencent", latency_ms=SLOW_MS)
    message_id = _send(api, "shipped", "+8613900000002", {"n": "42"})

    wait_until(lambda: _message(api, message_id)["status"] == "sent", 30, "the message sent")
    body = _message(api, message_id)
    assert (body["priority"], body["provider"], body["attempts"]) == ("high", "test-tencent", 1)
    assert _accept_to_sent(body) >= SLOW_MS / 1000
    assert [r["provider"] for r in sim.messages(to="+8613900000002")] == ["tencent"]
    assert [e["status"] for e in body["events"]] == ["queued", "sending", "sent"]


def test_a_late_failure_changes_nothing(api, templates, providers, sim, dispatch_worker) -> None:
    sim.behave("tencent", latency_ms=SLOW_MS, fail_rate=1.0, error="http_500")
    message_id = _send(api, "login", "+8613900000003", {"code": "654321"})

    wait_until(lambda: _late_answers(api, message_id), 30, "Tencent's late answer")
    [late] = _late_answers(api, message_id)
    assert (late["code"], late["provider"], late["attempt"]) == ("late_failure", "test-tencent", 1)
    assert "nothing changes" in late["detail"]
    # Still sent once, through Aliyun, in its first attempt: no retry, no failover, no second send.
    body = _message(api, message_id)
    assert (body["status"], body["provider"], body["attempts"], body["code"]) == ("sent", "test-aliyun", 1, None)
    assert [e["status"] for e in body["events"]] == ["queued", "sending", "sent", "late_answer"]
    assert [r["provider"] for r in sim.messages(to="+8613900000003")] == ["aliyun"]
