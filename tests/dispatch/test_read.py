"""GET /messages/{id} with events, search with every filter, keyset pages, cancel."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from django.test import override_settings
from django.utils import timezone

from apps.dispatch import services
from apps.dispatch.delivery import chunk, claims, sweeper
from apps.dispatch.models import Message
from messaging_center import ids
from tests.helpers import wait_until

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(api, make_template):
    make_template(api)
    make_template(api, code="promo", category="marketing", channel="email", content="Hello {{name}}")

    def send(template="order_shipped", to=None, **extra):
        to = to or {"phone": "+8613800138000"}
        body = {"template": template, "to": to, "params": {"order_no": "A1", "name": "Ann"}, **extra}
        response = api.post("/api/v1/messages", body)
        assert response.status_code == 202, response.content
        return response.json()

    return send


def test_get_message_with_events(api, sent) -> None:
    [outcome] = sent()["messages"]
    body = api.get(f"/api/v1/messages/{outcome['id']}").json()
    assert body["id"] == outcome["id"]
    assert body["to"] == {"phone": "+8613800138000"}
    assert body["content"] == "Your order A1 has shipped."
    assert (body["status"], body["channel"], body["category"], body["priority"], body["template"]) == (
        "queued",
        "sms",
        "transactional",
        "high",
        "order_shipped",
    )
    assert body["segments"] == 1 and body["attempts"] == 0
    assert dt.datetime.fromisoformat(body["expires_at"]) - dt.datetime.fromisoformat(body["created_at"]) == dt.timedelta(hours=1)
    assert [e["status"] for e in body["events"]] == ["queued"]


def test_other_accounts_message_is_404(api, sent, make_api_client) -> None:
    [outcome] = sent()["messages"]
    other = make_api_client("other")
    for path in (f"/api/v1/messages/{outcome['id']}", "/api/v1/messages/msg_nonsense"):
        response = other.get(path)
        assert (response.status_code, response.json()["code"]) == (404, "not_found")
    assert other.post(f"/api/v1/messages/{outcome['id']}/cancel").status_code == 404


def test_search_filters_combine(api, sent) -> None:
    a = sent()["messages"][0]["id"]
    batch = sent(to=[{"phone": "+8613800138001"}, {"phone": "bad"}])
    c = sent(
        "promo", to={"email": "ann@example.com"}, send_at=(timezone.now() + dt.timedelta(days=1)).replace(hour=4).isoformat()
    )

    def ids(**filters):
        return [m["id"] for m in api.get("/api/v1/messages", filters).json()["results"]]

    everything = ids()
    assert len(everything) == 4
    assert everything[-1] == a  # newest first
    assert ids(status="rejected") == [batch["messages"][1]["id"]]
    assert ids(channel="email") == [c["messages"][0]["id"]]
    assert ids(template="promo", category="marketing") == [c["messages"][0]["id"]]
    assert ids(batch_id=batch["batch_id"]) == [m["id"] for m in reversed(batch["messages"])]
    assert ids(to="+8613800138000") == [a]
    assert ids(to="ann@example.com") == [c["messages"][0]["id"]]
    assert ids(q="order A1", status="queued") == [batch["messages"][0]["id"], a]
    assert ids(provider="aliyun") == []
    assert ids(created_after=(timezone.now() + dt.timedelta(minutes=1)).isoformat()) == []
    assert len(ids(created_before=(timezone.now() + dt.timedelta(minutes=1)).isoformat())) == 4


def test_search_by_user_id(api, sent) -> None:
    from apps.accounts.models import Recipient

    Recipient.objects.create(account=api.account, user_id="u7", phone="+8613800138007")
    outcome = sent(to={"user_id": "u7"})["messages"][0]
    assert [m["id"] for m in api.get("/api/v1/messages", {"user_id": "u7"}).json()["results"]] == [outcome["id"]]


def test_keyset_pagination_walks_every_message_once(api, sent) -> None:
    sent(to=[{"phone": f"+86138001380{i:02d}"} for i in range(7)])
    seen, cursor = [], None
    while True:
        page = api.get("/api/v1/messages", {"limit": 3, **({"cursor": cursor} if cursor else {})}).json()
        seen += [m["id"] for m in page["results"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 7


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 501},
        {"limit": "x"},
        {"cursor": "garbage"},
        {"status": "lost"},
        {"created_after": "yesterday"},
        {"batch_id": "nope"},
    ],
)
def test_bad_search_parameters_are_400(api, params) -> None:
    response = api.get("/api/v1/messages", params)
    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"


def test_cancel_queued_and_scheduled_but_not_after_handoff(api, sent) -> None:
    queued = sent()["messages"][0]["id"]
    scheduled = sent(send_at=(timezone.now() + dt.timedelta(hours=2)).isoformat())["messages"][0]["id"]
    for message_id in (queued, scheduled):
        response = api.post(f"/api/v1/messages/{message_id}/cancel")
        assert response.status_code == 200
        assert response.json()["status"] == "canceled"
        assert response.json()["events"][-1]["status"] == "canceled"

    handed = sent(to={"phone": "+8613800138009"})["messages"][0]["id"]
    message = Message.objects.get(address="+8613800138009")
    claims.claim([message.id])
    response = api.post(f"/api/v1/messages/{handed}/cancel")
    assert (response.status_code, response.json()["code"]) == (409, "not_cancelable")
    again = api.post(f"/api/v1/messages/{queued}/cancel")
    assert again.status_code == 409


def test_claim_is_conditional_so_a_duplicate_task_does_nothing(api, sent) -> None:
    sent()
    message = Message.objects.get()
    assert len(claims.claim([message.id])) == 1
    assert claims.claim([message.id]) == []  # second task: lease still held


def test_first_event_of_each_outcome_is_made_from_the_message(api, sent, operator) -> None:
    """The accept path stores no event; the timeline's first one says what the stored one said."""
    at = (timezone.now() + dt.timedelta(hours=2)).replace(microsecond=0)
    scheduled = sent(send_at=at.isoformat())["messages"][0]["id"]
    api.post(f"/api/v1/messages/{scheduled}/cancel")
    refused = sent(to=[{"phone": "not-a-number"}])["messages"][0]

    events = api.get(f"/api/v1/messages/{scheduled}").json()["events"]
    assert [(e["status"], e["detail"]) for e in events] == [
        ("scheduled", f"scheduled for {at.astimezone(dt.UTC):%Y-%m-%dT%H:%M:%SZ}"),
        ("canceled", "Canceled by the sender."),
    ]
    body = api.get(f"/api/v1/messages/{refused['id']}").json()
    [event] = body["events"]
    assert (event["status"], event["code"], event["detail"]) == ("rejected", "invalid_address", refused["detail"])
    assert event["at"] == body["created_at"]

    # A message made elsewhere keeps its own stored first event, and gets no second one.
    original = Message.objects.get(id=ids.decode("msg", scheduled))
    copy = services.message_send_again(message=original, by="ops")
    events = api.get(f"/api/v1/messages/{copy.public_id}").json()["events"]
    assert [(e["status"], e["code"]) for e in events] == [("queued", "resend")]
    assert original.public_id in events[0]["detail"]

    page = operator.get(f"/admin/dispatch/message/{original.pk}/change/").content.decode()
    assert "scheduled for" in page and "Canceled by the sender." in page


def _timeline(api, message_id: str) -> list[tuple[str, str | None, int | None]]:
    return [(e["status"], e["code"], e["attempt"]) for e in api.get(f"/api/v1/messages/{message_id}").json()["events"]]


@pytest.mark.django_db(transaction=True)  # each statement's now() its own, as in a worker
@override_settings(DISPATCH_SENDING_LEASE_SECONDS=1)
def test_each_attempts_sending_is_made_from_the_event_that_ended_it(api, make_template) -> None:
    """No `sending` row is stored per attempt: the outcome's event carries the claim's time, the
    attempt under way is read from the message row, and an attempt whose worker died gets an event
    that ends it (from the sweeper, or from the claim that takes the message over); so does an expiry."""
    make_template(api, code="notice", channel="inbox", content="Hello {{name}}", title="Hi")
    later = (timezone.now() + dt.timedelta(hours=1)).isoformat()

    def waiting() -> Message:
        """A message waiting for a worker. Scheduled, then made due by hand: published, it could be
        taken by a worker of another test that is still running."""
        body = {"template": "notice", "to": {"user_id": "u1"}, "params": {"name": "Ann"}, "send_at": later}
        response = api.post("/api/v1/messages", body)
        assert response.status_code == 202, response.content
        message = Message.objects.get(id=ids.decode("msg", response.json()["messages"][0]["id"]))
        Message.objects.filter(id=message.id).update(status="queued")
        return message

    def lapse() -> None:  # its worker died: the lease runs out
        time.sleep(1.1)

    accepted = ("scheduled", None, None)
    # A delivery: one stored event, and the timeline's `sending` at that attempt's claim.
    message = waiting()
    chunk.deliver_messages([message.id])
    assert _timeline(api, message.public_id) == [accepted, ("sending", None, 1), ("delivered", None, 1)]
    [stored] = message.events.all()
    events = api.get(f"/api/v1/messages/{message.public_id}").json()["events"]
    assert dt.datetime.fromisoformat(events[1]["at"]) == stored.started_at
    assert events[1]["detail"] == "attempt 1"
    assert message.created_at <= stored.started_at <= stored.at

    # Under way: made from the row.
    message = waiting()
    [claimed] = claims.claim([message.id])
    assert _timeline(api, message.public_id) == [accepted, ("sending", None, 1)]
    under_way = api.get(f"/api/v1/messages/{message.public_id}").json()["events"][1]
    assert dt.datetime.fromisoformat(under_way["at"]) == claimed.claimed_at

    # Its worker dies; the sweeper ends the attempt (and enqueues the message again), and the next
    # attempt delivers it.
    lapse()
    sweeper.sweep()
    assert _timeline(api, message.public_id)[:3] == [accepted, ("sending", None, 1), ("retry_wait", "worker_lost", 1)]
    lost = message.events.order_by("id").first()
    assert lost is not None and lost.started_at == claimed.claimed_at
    chunk.deliver_messages([message.id])
    wait_until(lambda: Message.objects.get(id=message.id).status == "delivered", 10, "the next attempt")
    assert _timeline(api, message.public_id) == [
        accepted,
        ("sending", None, 1),
        ("retry_wait", "worker_lost", 1),
        ("sending", None, 2),
        ("delivered", None, 2),
    ]

    # A lapsed attempt taken over by a claim before the sweeper saw it ends the same way.
    message = waiting()
    claims.claim([message.id])
    lapse()
    chunk.deliver_messages([message.id])
    assert [status for status, _, _ in _timeline(api, message.public_id)] == [
        "scheduled",
        "sending",
        "retry_wait",
        "sending",
        "delivered",
    ]
    assert message.events.count() == 2

    # An attempt under way when the TTL ran out ends with the expiry, found by the sweeper (its
    # worker died) or by a later task for the message.
    for by_sweeper in (True, False):
        message = waiting()
        claims.claim([message.id])
        Message.objects.filter(id=message.id).update(expires_at=timezone.now())
        lapse()
        if by_sweeper:
            sweeper.sweep()
        else:
            chunk.deliver_messages([message.id])
        assert _timeline(api, message.public_id) == [accepted, ("sending", None, 1), ("expired", "ttl_expired", 1)]
