"""Concurrent small send requests in one process are written as one group (one transaction, one
limits round trip, shared tasks), and each still gets its own outcome.

A group forms deterministically here: the first request's Idempotency-Key is held by an open
transaction of the test, so its write waits on the unique index while the other requests queue up
behind it; when the test lets go, they are all written by the next group."""

from __future__ import annotations

import datetime as dt
import functools
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
from django.db import connection

from apps.accounts.models import Preference, Recipient
from apps.dispatch.accept import group, send
from apps.dispatch.models import IdempotencyRecord, Message, MessageEvent
from apps.dispatch.selectors import message_timeline
from messaging_center import ids, metrics
from tests.helpers import post_send_from_thread, wait_until

pytestmark = pytest.mark.django_db(transaction=True)
TOMORROW = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()


def _body(phone: str, order_no: str = "1") -> dict[str, Any]:
    return {"template": "order_shipped", "to": {"phone": phone}, "params": {"order_no": order_no}, "send_at": TOMORROW}


def _group_sizes() -> dict[float, float]:
    """Cumulative bucket counts of the group-size histogram (this process)."""
    [family] = metrics.SEND_GROUP_REQUESTS.collect()
    return {s.labels["le"]: s.value for s in family.samples if s.name.endswith("_bucket")}  # type: ignore[misc]


def _held_key(account_id: Any, key: str) -> psycopg.Connection:
    """An open transaction holding (account, key) in the idempotency index: a claim of it waits."""
    held = psycopg.connect(_dsn())
    held.execute(
        "INSERT INTO dispatch_idempotencyrecord (id, account_id, key, body_hash, created_at) VALUES (%s, %s, %s, '', now())",
        [ids.uuid7(), account_id, key],
    )
    return held


def _dsn() -> str:
    params = connection.get_connection_params()
    wanted = ("host", "port", "user", "password", "dbname")
    return psycopg.conninfo.make_conninfo(**{k: v for k, v in params.items() if k in wanted})


def _in_one_group(api: Any, requests: list[tuple[dict[str, Any], dict[str, str]]]) -> list[Any]:
    """Posts a gate request (its key held by the test), then `requests` in order while the gate's
    write waits; lets go once all are queued. Returns the responses to `requests`."""
    held = _held_key(api.account.id, "gate")

    post = functools.partial(post_send_from_thread, api)

    with ThreadPoolExecutor(max_workers=len(requests) + 1) as pool:
        gate: Future[Any] = pool.submit(post, (_body("+8613900000000", "gate"), {"HTTP_IDEMPOTENCY_KEY": "gate"}))
        wait_until(lambda: group.SENDS.waiting() == 1, 10, "the gate request to lead")
        futures = []
        for queued, item in enumerate(requests, start=2):  # one at a time: the group keeps this order
            futures.append(pool.submit(post, item))
            wait_until(lambda queued=queued: group.SENDS.waiting() == queued, 10, "the request to queue", 0.01)
        held.rollback()
        held.close()
        assert gate.result().status_code == 202
        return [f.result() for f in futures]


def test_queued_requests_are_written_as_one_group_each_with_its_own_outcome(make_api_client, make_template) -> None:
    api = make_api_client("grouped", rate_limit=1000)
    make_template(api)
    before = _group_sizes()
    phones = [f"+86138001380{i:02d}" for i in range(12)]
    requests = [(_body(phone, str(i)), {"HTTP_IDEMPOTENCY_KEY": f"k{i}"}) for i, phone in enumerate(phones)]
    requests.append((_body("bad-number"), {}))

    responses = _in_one_group(api, requests)

    after = _group_sizes()
    assert after["16.0"] - after["8.0"] - (before["16.0"] - before["8.0"]) == 1  # one group of 9 to 16 requests: ours
    assert [r.status_code for r in responses] == [202] * 13
    for phone, response in zip(phones, responses, strict=False):
        [outcome] = response.json()["messages"]
        message = Message.objects.get(id=ids.decode("msg", outcome["id"]))
        assert (message.address, message.status, outcome["status"]) == (phone, "scheduled", "scheduled")
        [event] = message_timeline(message)  # made from the row: the accept path stores no event
        assert (event.id, event.status, event.at) == (message.id, "scheduled", message.created_at)
        assert not MessageEvent.objects.filter(message=message).exists()
    rejected = responses[-1].json()
    assert (rejected["accepted"], rejected["messages"][0]["code"]) == (0, "invalid_address")
    assert len({r.json()["batch_id"] for r in responses}) == 13
    assert Message.objects.filter(account=api.account).count() == 14  # 12 + the rejected one + the gate
    replay = api.post("/api/v1/messages", _body(phones[3], "3"), HTTP_IDEMPOTENCY_KEY="k3")
    assert replay.content == responses[3].content


def test_one_key_twice_in_a_group_same_body_one_set_other_body_conflict(make_api_client, make_template) -> None:
    api = make_api_client("grouped-keys", rate_limit=1000)
    make_template(api)
    same = (_body("+8613800138000"), {"HTTP_IDEMPOTENCY_KEY": "twice"})
    other = (_body("+8613800138001"), {"HTTP_IDEMPOTENCY_KEY": "twice"})

    first, second, third = _in_one_group(api, [same, same, other])

    assert (first.status_code, second.status_code) == (202, 202)
    assert first.content == second.content
    assert third.status_code == 409
    assert third.json()["code"] == "idempotency_conflict"
    assert Message.objects.filter(account=api.account, address="+8613800138000").count() == 1
    assert not Message.objects.filter(account=api.account, address="+8613800138001").exists()


def test_quota_refuses_whole_requests_within_a_group_and_frees_their_keys(make_api_client, make_template) -> None:
    api = make_api_client("grouped-quota", rate_limit=1000, daily_quota=5)  # the gate takes one
    make_template(api)
    requests = [(_body(f"+86138001380{i:02d}"), {"HTTP_IDEMPOTENCY_KEY": f"q{i}"}) for i in range(6)]

    responses = _in_one_group(api, requests)

    codes = [r.status_code for r in responses]
    assert sorted(codes) == [202] * 4 + [429] * 2
    assert all(r.json()["code"] == "quota_exceeded" for r in responses if r.status_code == 429)
    assert Message.objects.filter(account=api.account).count() == 5
    refused_keys = {f"q{i}" for i, code in enumerate(codes) if code == 429}
    assert not IdempotencyRecord.objects.filter(account=api.account, key__in=refused_keys).exists()
    assert IdempotencyRecord.objects.filter(account=api.account, key__startswith="q").count() == 4


def test_opt_outs_are_looked_up_per_request_within_a_group(make_api_client, make_template) -> None:
    """A group looks up every request's opt-outs in its claim statement: each request's entries
    get their own recipients' preferences for their own template's category and channel."""
    api = make_api_client("grouped-prefs", rate_limit=1000)
    make_template(api)
    make_template(api, code="promo_mail", channel="email", category="marketing", content="Sale {{order_no}}", title="Sale")
    out = Recipient.objects.create(account=api.account, user_id="u-out", phone="+8613800138077", email="out@example.com")
    Preference.objects.create(recipient=out, category="transactional", channel="sms", subscribed=False)
    Preference.objects.create(recipient=out, category="marketing", channel="email", subscribed=False)
    mail = {"template": "promo_mail", "params": {"order_no": "1"}, "send_at": TOMORROW}
    requests = [
        (_body("+8613800138077"), {}),  # the opted-out phone
        (_body("+8613800138078"), {}),
        ({**_body("unused"), "to": [{"user_id": "u-out"}, {"phone": "+8613800138079"}]}, {"HTTP_IDEMPOTENCY_KEY": "p"}),
        ({**mail, "to": [{"email": "out@example.com"}, {"email": "in@example.com"}]}, {}),
    ]

    responses = _in_one_group(api, requests)

    assert [r.status_code for r in responses] == [202] * 4
    codes = [[m.get("code") for m in r.json()["messages"]] for r in responses]
    assert codes == [["opted_out"], [None], ["opted_out", None], ["opted_out", None]]


def test_the_request_rate_refuses_whole_requests_within_a_group_and_frees_their_keys(make_api_client, make_template) -> None:
    api = make_api_client("grouped-rate", rate_limit=3)  # a burst of 3; the gate takes one
    make_template(api)
    requests = [(_body(f"+86138001380{i:02d}"), {"HTTP_IDEMPOTENCY_KEY": f"r{i}"}) for i in range(6)]

    responses = _in_one_group(api, requests)

    codes = [r.status_code for r in responses]
    assert 2 <= codes.count(202) <= 3 and codes.count(202) + codes.count(429) == 6, codes
    assert all(r.json()["code"] == "rate_limited" and int(r["Retry-After"]) >= 1 for r in responses if r.status_code == 429)
    assert Message.objects.filter(account=api.account).count() == codes.count(202) + 1
    refused_keys = {f"r{i}" for i, code in enumerate(codes) if code == 429}
    assert not IdempotencyRecord.objects.filter(account=api.account, key__in=refused_keys).exists()


def test_a_send_inside_a_callers_transaction_is_not_handed_to_another_thread(make_api_client, make_template) -> None:
    """Within an atomic block the write joins the caller's transaction: rolled back with it."""
    from django.db import transaction

    api = make_api_client("in-atomic", rate_limit=1000)
    make_template(api)
    done = threading.Event()

    class Rollback(Exception):
        pass

    with pytest.raises(Rollback), transaction.atomic():
        send.message_send(account=api.account, data=_body("+8613800138000"))
        done.set()
        raise Rollback
    assert done.is_set()
    assert not Message.objects.filter(account=api.account).exists()


def test_a_request_the_database_refuses_fails_alone_and_the_others_keep_their_limits(make_api_client, make_template) -> None:
    """A group whose transaction fails is written again send by send: the refused request gets a
    503, the others are stored once — with the dedup outcome they got the first time (had their
    limits been decided again, each would be a duplicate of itself)."""
    api = make_api_client("grouped-poison", rate_limit=1000)
    make_template(api, dedup_window=3600)
    poison = "+8613800000666"
    with connection.cursor() as cursor:  # a row the database refuses, for real
        cursor.execute(f"ALTER TABLE dispatch_message ADD CONSTRAINT test_poison CHECK (address <> '{poison}')")
    try:
        requests = [
            (_body("+8613800138000"), {"HTTP_IDEMPOTENCY_KEY": "good-1"}),
            (_body(poison), {"HTTP_IDEMPOTENCY_KEY": "poison"}),
            (_body("+8613800138001"), {}),
        ]
        good_1, bad, good_2 = _in_one_group(api, requests)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE dispatch_message DROP CONSTRAINT test_poison")

    assert bad.status_code == 503
    assert bad.json()["code"] == "unavailable"
    assert (good_1.status_code, good_2.status_code) == (202, 202)
    assert [m["status"] for m in good_1.json()["messages"] + good_2.json()["messages"]] == ["scheduled", "scheduled"]
    assert set(Message.objects.filter(account=api.account).values_list("address", flat=True)) == {
        "+8613800138000",
        "+8613800138001",
        "+8613900000000",  # the gate
    }
    assert not IdempotencyRecord.objects.filter(account=api.account, key="poison").exists()
    assert IdempotencyRecord.objects.get(account=api.account, key="good-1").response_body == good_1.content
