"""Status callbacks to business systems: signed, recorded per attempt, retried with backoff,
never to a private address unless allowed, never through a redirect."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid

import pytest
import urllib3
from django.test import Client, override_settings
from django.utils import timezone

from apps.accounts.services import account_callback_secret, account_set_callback
from apps.receipts import callbacks
from apps.receipts.callbacks import callbacks_deliver, callbacks_enqueue
from apps.receipts.hooks import messages_reached
from apps.receipts.models import CallbackAttempt, StatusCallback
from messaging_center.broker import broker_client
from tests.receipts.conftest import verify_signature

pytestmark = pytest.mark.django_db


@pytest.fixture
def subscribed(api, callback_receiver) -> str:  # type: ignore[no-untyped-def]
    account_set_callback(account=api.account, callback_url=callback_receiver.url)
    api.account.refresh_from_db()
    return account_callback_secret(account=api.account) or ""


@pytest.fixture
def published(monkeypatch) -> list[tuple[list, float]]:  # type: ignore[no-untyped-def,type-arg]
    """Tasks the service would publish (the worker lane is exercised by the end-to-end tests)."""
    calls: list[tuple[list, float]] = []  # type: ignore[type-arg]
    monkeypatch.setattr(callbacks, "publish", lambda ids, countdown=0: calls.append((list(ids), countdown)))
    return calls


def _deliver_due() -> list[callbacks.Outcome]:
    StatusCallback.objects.filter(state="pending").update(next_attempt_at=timezone.now() - dt.timedelta(hours=1))
    return callbacks_deliver(callback_ids=list(StatusCallback.objects.values_list("id", flat=True)))


def test_sent_hook_posts_a_signed_status_callback(
    subscribed, callback_receiver, make_message, published, django_capture_on_commit_callbacks
) -> None:
    message = make_message(status="sent")
    with django_capture_on_commit_callbacks(execute=True):
        messages_reached([message.id], "sent")
    [callback] = StatusCallback.objects.all()
    assert published == [([callback.id], 0)]

    [outcome] = callbacks_deliver(callback_ids=[callback.id])
    assert outcome.ok
    [hook] = callback_receiver.requests
    assert hook.json == {
        "type": "message.status",
        "message_id": message.public_id,
        "status": "sent",
        "code": "",
        "at": hook.json["at"],
    }
    assert dt.datetime.fromisoformat(hook.json["at"]) <= timezone.now()
    assert verify_signature(hook.headers["X-MC-Signature"], hook.body, subscribed)
    assert not verify_signature(hook.headers["X-MC-Signature"], hook.body + b" ", subscribed)
    callback.refresh_from_db()
    assert callback.state == "delivered" and callback.attempts == 1
    assert CallbackAttempt.objects.get().status_code == 200


def test_the_same_status_is_owed_once(subscribed, make_message, published) -> None:
    message = make_message(status="sent")
    messages_reached([message.id], "sent")
    messages_reached([message.id], "sent")
    assert StatusCallback.objects.count() == 1


def test_accounts_without_a_callback_url_owe_nothing(make_message, published) -> None:
    message = make_message(status="sent")
    assert callbacks_enqueue(message_ids=[message.id], status="sent") == []


def test_a_500_is_retried_with_backoff(subscribed, callback_receiver, make_message, published) -> None:
    message = make_message(status="sent")
    callbacks_enqueue(message_ids=[message.id], status="sent")
    callback_receiver.answers = [500, 503]
    [first] = _deliver_due()
    assert not first.ok and first.error == "HTTP 500"
    callback = StatusCallback.objects.get()
    assert callback.state == "pending" and callback.last_error == "HTTP 500"
    assert timezone.now() + dt.timedelta(seconds=3) < callback.next_attempt_at < timezone.now() + dt.timedelta(seconds=6)
    assert published[-1] == ([callback.id], 5)  # a short countdown retry
    assert callbacks_deliver(callback_ids=[callback.id]) == []  # not due yet: nothing happens

    _deliver_due()
    callback.refresh_from_db()
    assert callback.attempts == 2 and published[-1] == ([callback.id], 10)
    _deliver_due()
    callback.refresh_from_db()
    assert callback.state == "delivered" and callback.attempts == 3
    assert [a.status_code for a in CallbackAttempt.objects.order_by("at", "id")] == [500, 503, 200]


def test_backoff_never_uses_a_long_countdown(subscribed, make_message, published, callback_receiver) -> None:
    message = make_message(status="sent")
    callbacks_enqueue(message_ids=[message.id], status="sent")
    StatusCallback.objects.update(attempts=9)  # the 10th try waits 2560 s: left to the beat job
    callback_receiver.answers = [500]
    published.clear()
    _deliver_due()
    assert published == []
    callback = StatusCallback.objects.get()
    assert callback.next_attempt_at > timezone.now() + dt.timedelta(seconds=2000)
    callback.next_attempt_at = timezone.now() - dt.timedelta(hours=1)
    callback.save()
    assert callbacks.callbacks_publish_due() == 1 and published == [([callback.id], 0)]


def test_gives_up_after_24_hours(subscribed, make_message, published, callback_receiver) -> None:
    message = make_message(status="sent")
    callbacks_enqueue(message_ids=[message.id], status="sent")
    StatusCallback.objects.update(created_at=timezone.now() - dt.timedelta(hours=23, minutes=59, seconds=58))
    callback_receiver.answers = [500]
    _deliver_due()
    assert StatusCallback.objects.get().state == "failed"


def test_a_hanging_endpoint_times_out_and_is_retried(subscribed, make_message, published, callback_receiver, monkeypatch) -> None:
    monkeypatch.setattr(callbacks, "TIMEOUT", urllib3.Timeout(connect=2, read=0.5))
    message = make_message(status="sent")
    callbacks_enqueue(message_ids=[message.id], status="sent")
    callback_receiver.answers = ["hang"]
    [outcome] = _deliver_due()
    assert outcome.error.startswith("timeout") and outcome.status_code is None
    assert StatusCallback.objects.get().state == "pending"
    assert CallbackAttempt.objects.get().error.startswith("timeout")


def test_a_redirect_is_not_followed(subscribed, make_message, published, callback_receiver) -> None:
    message = make_message(status="sent")
    callbacks_enqueue(message_ids=[message.id], status="sent")
    callback_receiver.answers = [("redirect", "http://169.254.169.254/latest/meta-data/")]
    [outcome] = _deliver_due()
    assert not outcome.ok and outcome.status_code == 302
    assert "not followed" in outcome.error
    assert len(callback_receiver.requests) == 1
    assert StatusCallback.objects.get().state == "pending"


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/hook", "http://10.1.2.3/hook", "http://[::1]/hook", "http://localhost/x"])
def test_private_addresses_are_refused_unless_allowed(api, make_message, published, url) -> None:
    account_set_callback(account=api.account, callback_url=url)  # the development run allows them
    message = make_message(status="sent")
    callbacks_enqueue(message_ids=[message.id], status="sent")
    with override_settings(CALLBACK_ALLOW_PRIVATE=False):
        [outcome] = _deliver_due()
    assert outcome.error.startswith("refused")
    assert CallbackAttempt.objects.get().error.startswith("refused")


def test_a_removed_callback_url_stops_pending_callbacks(subscribed, api, make_message, published, callback_receiver) -> None:
    message = make_message(status="sent")
    callbacks_enqueue(message_ids=[message.id], status="sent")
    account_set_callback(account=api.account, callback_url=None)
    assert _deliver_due() == []
    assert StatusCallback.objects.get().state == "canceled"
    assert callback_receiver.requests == []


def test_failed_and_expired_are_reported(subscribed, make_message, published) -> None:
    failed, expired = make_message(status="failed"), make_message(status="expired")
    messages_reached([failed.id], "failed")
    messages_reached([expired.id], "expired")
    assert sorted(StatusCallback.objects.values_list("status", flat=True)) == ["expired", "failed"]


def test_callbacks_are_published_in_chunks() -> None:
    """Published by name onto the real broker: three tasks of the callback task on the receipts queue."""
    callbacks.publish([uuid.uuid4() for _ in range(250)])
    queued = [json.loads(raw) for raw in broker_client().lrange("mc.receipts", 0, -1)]
    assert {message["headers"]["task"] for message in queued} == {"receipts.deliver_callbacks"}
    bodies = [json.loads(base64.b64decode(message["body"])) for message in queued]
    assert sorted(len(args[0]) for args, _, _ in bodies) == [50, 100, 100]


def test_the_workers_sent_finish_owes_the_callback_and_applies_a_receipt_that_came_first(
    subscribed, make_message, published
) -> None:
    from apps.dispatch import routing
    from apps.dispatch.delivery import choice, claims, finishing
    from apps.dispatch.providers.base import SendResult
    from apps.receipts import matching
    from apps.receipts.models import ProviderReceipt
    from tests.receipts.conftest import make_provider
    from tests.receipts.test_receipt_webhooks import RECEIPT_TOKEN, aliyun_report

    make_provider("aliyun", receipt_token=RECEIPT_TOKEN)
    message = make_message(status="queued", provider_message_id="")
    [claimed] = claims.claim([message.id])
    message.provider_message_id = "biz-early"  # only for the report's body: the row stays unchanged
    body = aliyun_report(message)
    Client().post(f"/api/v1/receipts/aliyun?token={RECEIPT_TOKEN}", body, content_type="application/json")
    matching.receipts_match_pending()
    assert ProviderReceipt.objects.get().message_id is None  # still `sending`: kept for later

    routing.ROUTES.refresh()
    route = routing.ROUTES.named("test-aliyun")
    finishing._mark_sent([choice.Attempt(claimed, route, SendResult("biz-early", {}))])

    message.refresh_from_db()
    assert message.status == "delivered"  # the early report was applied by the finish
    assert list(
        StatusCallback.objects.filter(message_id=message.id).values_list("status", flat=True).order_by("created_at", "id")
    ) == [
        "sent",
        "delivered",
    ]
