"""The delivery engine with real workers against the provider simulator: each SMS API, failover,
expiry, a worker killed mid-batch, and a broker that lost every queued task."""

from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
import time

import pytest
from django.test import override_settings

from apps.dispatch.delivery import sweeper
from apps.dispatch.models import Message, Provider
from apps.dispatch.providers_config import provider_save
from devstack.embedded import EmbeddedRedis
from messaging_center import ids
from tests.helpers import celery_worker, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

FINAL = {"sent", "delivered", "undelivered", "failed", "expired"}


@pytest.fixture
def sms_template(api, make_template):
    return make_template(
        api, code="notice", content="Your code {{n}} is ready.", provider_template_ids={"aliyun": "SMS_100", "tencent": "1001"}
    )


def _providers(sim, *kinds: str, **fields) -> list[Provider]:
    made = []
    for kind in kinds:
        provider = Provider(name=f"test-{kind}", kind=kind, channel="sms", **fields)
        made.append(provider_save(provider=provider, settings=sim.settings(kind)))
    return made


def _send(api, count: int, **extra) -> list[str]:
    to = [{"phone": f"+86138{i:08d}", "params": {"n": str(i)}} for i in range(count)]
    response = api.post("/api/v1/messages", {"template": "notice", "to": to, **extra})
    assert response.status_code == 202, response.content
    assert response.json()["accepted"] == count
    return [m["id"] for m in response.json()["messages"]]


def _statuses() -> collections.Counter[str]:
    return collections.Counter(Message.objects.values_list("status", flat=True))


def _received_per_message(sim) -> collections.Counter[str]:
    """How often the simulator received each message, found by its number: a batch call carries one
    client reference for all its numbers, and every message of these tests has a number of its own."""
    by_number = {address: ids.encode("msg", mid) for mid, address in Message.objects.values_list("id", "address")}
    return collections.Counter(by_number[r["to"]] for r in sim.messages())


@pytest.mark.parametrize("kind", ["aliyun", "tencent", "twilio"])
def test_sms_goes_out_through_each_provider_api(api, sms_template, sim, dispatch_worker, kind) -> None:
    _providers(sim, kind)
    [message_id] = _send(api, 1)
    wait_until(lambda: api.get(f"/api/v1/messages/{message_id}").json()["status"] == "sent", 30, f"a send via {kind}")

    body = api.get(f"/api/v1/messages/{message_id}").json()
    assert body["provider"] == f"test-{kind}" and body["provider_message_id"]
    assert [e["status"] for e in body["events"]] == ["queued", "sending", "sent"]
    [record] = sim.messages(to="+8613800000000")
    assert record["provider"] == kind
    assert record["message_id"] == message_id  # our id travelled as the provider's client reference


def test_failover_when_one_provider_returns_500_for_everything(api, sms_template, sim, dispatch_worker) -> None:
    _providers(sim, "aliyun", "tencent")
    sim.behave("aliyun", fail_rate=1.0, error="http_500")
    ids = _send(api, 30)
    with contextlib.suppress(AssertionError):
        wait_until(lambda: _statuses()["sent"] == 30, 60, "every message sent")
    unsent = list(Message.objects.exclude(status="sent").values_list("status", "code", "detail"))
    assert not unsent, unsent[:3]

    assert set(Message.objects.values_list("provider", flat=True)) == {"test-tencent"}
    received = _received_per_message(sim)
    assert sorted(received) == sorted(ids)
    assert set(received.values()) == {1}  # one send each that reached a provider
    retried = Message.objects.filter(attempts__gt=1)
    assert retried.exists()
    assert all(m.events.filter(status="retry_wait", provider="test-aliyun").exists() for m in retried)


def test_all_providers_failing_ends_expired_with_bounded_attempts(api, sms_template, sim, dispatch_worker) -> None:
    _providers(sim, "aliyun", "tencent")
    sim.behave("*", fail_rate=1.0, error="http_500")
    _send(api, 3, ttl=6)
    wait_until(lambda: _statuses()["expired"] == 3, 40, "expiry")
    for message in Message.objects.all():
        assert 1 <= message.attempts <= 5
        # Expired by the engine with the last error (the providers' 500, or ours once both circuits
        # opened), or by the claim when a retry arrived just after the TTL (last error in the detail).
        assert message.code in ("InternalError", "providers_unhealthy", "ttl_expired")
        if message.code == "ttl_expired":
            assert "last error" in message.detail
        # Every attempt ended in a retry, except the last when the engine itself gave up.
        retries = message.events.filter(status="retry_wait").count()
        assert retries == (message.attempts if message.code == "ttl_expired" else message.attempts - 1)


def test_aliyun_sends_a_chunk_in_one_batch_call_each_number_with_its_own_params(api, sms_template, sim, dispatch_worker) -> None:
    _providers(sim, "aliyun")
    sent = _send(api, 3)
    wait_until(lambda: _statuses()["sent"] == 3, 30, "the batch to be sent")
    bodies = [api.get(f"/api/v1/messages/{message_id}").json() for message_id in sent]
    assert len({body["provider_message_id"] for body in bodies}) == 1  # one SendBatchSms call, one BizId
    records = sorted(sim.messages(), key=lambda r: r["to"])
    assert [r["request"]["Action"] for r in records] == ["SendBatchSms"] * 3
    assert all(r["message_id"].startswith("mcb-") for r in records)  # our batch reference as OutId
    assert json.loads(records[0]["request"]["TemplateParamJson"]) == [{"n": "0"}, {"n": "1"}, {"n": "2"}]
    assert json.loads(records[0]["request"]["PhoneNumberJson"]) == ["13800000000", "13800000001", "13800000002"]


def test_invalid_number_fails_at_once_with_the_providers_code(api, sms_template, sim, dispatch_worker) -> None:
    _providers(sim, "aliyun")
    sim.behave("aliyun", fail_rate=1.0, error="invalid_number")
    [message_id] = _send(api, 1)
    wait_until(lambda: api.get(f"/api/v1/messages/{message_id}").json()["status"] == "failed", 30, "failure")
    body = api.get(f"/api/v1/messages/{message_id}").json()
    assert (body["code"], body["attempts"]) == ("isv.MOBILE_NUMBER_ILLEGAL", 1)


def test_no_enabled_provider_fails_with_no_provider(api, sms_template, sim, dispatch_worker) -> None:
    _providers(sim, "aliyun", enabled=False)
    [message_id] = _send(api, 1)
    wait_until(lambda: api.get(f"/api/v1/messages/{message_id}").json()["status"] == "failed", 30, "failure")
    assert api.get(f"/api/v1/messages/{message_id}").json()["code"] == "no_provider"


def _send_to(api, *phones: str) -> dict[str, str]:
    to = [{"phone": phone, "params": {"n": str(i)}} for i, phone in enumerate(phones)]
    response = api.post("/api/v1/messages", {"template": "notice", "to": to})
    assert response.status_code == 202, response.content
    return {phone: m["id"] for phone, m in zip(phones, response.json()["messages"], strict=True)}


def test_numbers_go_to_the_providers_that_serve_them_and_fail_over_to_the_next_group(
    api, sms_template, sim, dispatch_worker
) -> None:
    """Mainland numbers through the domestic API (destinations +86), every other number through
    the catch-all provider of the failover group, which also takes mainland numbers the domestic
    one cannot send."""
    _providers(sim, "aliyun", destinations="+86")
    _providers(sim, "twilio", priority_group=2)
    sent = _send_to(api, "+8613800000001", "+8613800000002", "+14155550100", "+85291234567")
    wait_until(lambda: _statuses()["sent"] == 4, 30, "every message sent")
    providers = {phone: api.get(f"/api/v1/messages/{mid}").json()["provider"] for phone, mid in sent.items()}
    assert providers == {
        "+8613800000001": "test-aliyun",
        "+8613800000002": "test-aliyun",
        "+14155550100": "test-twilio",
        "+85291234567": "test-twilio",
    }
    assert {r["to"]: r["provider"] for r in sim.messages()} == {
        "+8613800000001": "aliyun",
        "+8613800000002": "aliyun",
        "+14155550100": "twilio",
        "+85291234567": "twilio",
    }

    sim.behave("aliyun", fail_rate=1.0, error="http_500")
    [message_id] = _send_to(api, "+8613800000003").values()
    wait_until(lambda: api.get(f"/api/v1/messages/{message_id}").json()["status"] == "sent", 30, "the failover")
    body = api.get(f"/api/v1/messages/{message_id}").json()
    assert (body["provider"], body["attempts"]) == ("test-twilio", 2)
    assert [e["provider"] for e in body["events"] if e["status"] == "retry_wait"] == ["test-aliyun"]


def test_a_number_no_provider_serves_fails_with_no_provider(api, sms_template, sim, dispatch_worker) -> None:
    _providers(sim, "aliyun", "tencent", destinations="+86")
    [message_id] = _send_to(api, "+14155550100").values()
    wait_until(lambda: api.get(f"/api/v1/messages/{message_id}").json()["status"] == "failed", 30, "failure")
    body = api.get(f"/api/v1/messages/{message_id}").json()
    assert (body["code"], body["attempts"]) == ("no_provider", 1)
    assert "to this address" in body["detail"]
    assert sim.messages() == []


@pytest.fixture
def own_redis(tmp_path):
    """A Redis of this test's own, for tests that kill workers or flush the broker."""
    redis = EmbeddedRedis(tmp_path / "redis")
    url = redis.ensure_running().rsplit("/", 1)[0] + "/1"
    with override_settings(REDIS_URL=url, CELERY_BROKER_URL=url, DISPATCH_QUEUED_LEASE_SECONDS=2):
        yield url
    redis.stop()


def test_worker_killed_mid_batch_every_message_ends_and_none_is_sent_twice(
    api, sms_template, sim, worker_env, own_redis, tmp_path
) -> None:
    _providers(sim, "aliyun")
    # Aliyun takes the SendBatchSms calls at once and holds its answers: the kill lands after the
    # provider has the messages and before the worker has heard so.
    sim.behave("aliyun", fail_rate=1.0, error="timeout")
    env = worker_env | {"REDIS_URL": own_redis, "DISPATCH_SENDING_LEASE_SECONDS": "3", "DISPATCH_SEND_THREADS": "8"}
    ids = _send(api, 200)
    with celery_worker(env, "mc.high", tmp_path / "doomed.log", name="doomed") as doomed:
        wait_until(lambda: len(sim.messages()) >= 100, 30, "a batch call to be in flight")
        os.killpg(doomed.pid, signal.SIGKILL)
    in_flight = _statuses()["sending"]
    assert in_flight >= 100  # the kill really landed mid-call

    sim.behave("aliyun", fail_rate=0.0)
    with celery_worker(env, "mc.high", tmp_path / "heir.log", name="heir"):

        def settled() -> bool:
            sweeper.sweep()
            return sum(_statuses()[s] for s in FINAL) == 200

        wait_until(settled, 90, "every message to reach a final state", interval=1)
    received = _received_per_message(sim)
    assert set(received) == set(ids)
    assert max(received.values()) == 1, [m for m, n in received.items() if n > 1][:5]
    assert Message.objects.filter(events__detail__contains="already had it").exists()


def test_broker_flushed_with_messages_queued_sweeper_delivers(api, sms_template, sim, worker_env, own_redis, tmp_path) -> None:
    import redis

    _providers(sim, "tencent")
    ids = _send(api, 20)
    redis.Redis.from_url(own_redis).flushall()  # every queued task is gone
    time.sleep(2.5)  # past the queued lease
    with celery_worker(worker_env | {"REDIS_URL": own_redis}, "mc.high", tmp_path / "worker.log", name="sweeper"):

        def delivered() -> bool:
            sweeper.sweep()
            return _statuses()["sent"] == 20

        wait_until(delivered, 60, "the sweeper to bring the messages back", interval=1)
    assert sorted(_received_per_message(sim)) == sorted(ids)
