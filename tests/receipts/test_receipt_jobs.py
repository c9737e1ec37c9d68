"""The receipts lane's beat jobs: receipt timeouts, re-matching early receipts, /metrics."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.test import Client, override_settings
from django.utils import timezone

from apps.dispatch.models import Due, Message, MessageEvent
from apps.dispatch.providers.base import Receipt
from apps.receipts.matching import RECENT_MESSAGES, receipts_match_pending, receipts_record, receipts_rematch
from apps.receipts.models import ProviderReceipt
from apps.receipts.polling import receipts_flag_timeouts
from messaging_center.broker import redis_client
from tests.helpers import move_back
from tests.receipts.conftest import RECEIPT_TOKEN, make_provider
from tests.receipts.test_receipt_webhooks import aliyun_report

pytestmark = pytest.mark.django_db


@override_settings(RECEIPT_TIMEOUT_SECONDS=600)
def test_a_sent_message_without_a_receipt_gets_one_timeout_event(make_message) -> None:
    make_provider("aliyun")
    make_provider("wecom")
    late = make_message()
    fresh = make_message()
    no_receipts = make_message(provider="test-wecom")  # WeCom has no receipts: never late
    eleven_minutes_ago = timezone.now() - dt.timedelta(minutes=11)
    Message.objects.filter(id__in=[late.id, no_receipts.id]).update(sent_at=eleven_minutes_ago)

    assert receipts_flag_timeouts() == 1
    assert receipts_flag_timeouts() == 0  # once
    [event] = MessageEvent.objects.filter(status="receipt_timeout")
    assert event.message_id == late.id and "600 s" in event.detail
    assert Message.objects.get(id=late.id).status == "sent"
    assert not MessageEvent.objects.filter(message_id=fresh.id, status="receipt_timeout").exists()


@override_settings(RECEIPT_TIMEOUT_SECONDS=600)
def test_timeouts_are_flagged_in_batches_each_once_even_if_the_cursor_is_lost(make_message) -> None:
    make_provider("aliyun")
    messages = [make_message() for _ in range(5)]
    for n, message in enumerate(messages):
        Message.objects.filter(id=message.id).update(sent_at=timezone.now() - dt.timedelta(minutes=30 - n))

    assert receipts_flag_timeouts(batch=2) == 2  # the two sent first
    assert receipts_flag_timeouts(batch=2) == 2
    redis_client().flushdb()  # the cursor is lost: the events still say who was flagged
    assert receipts_flag_timeouts(batch=2) == 1
    assert receipts_flag_timeouts(batch=2) == 0
    flagged = MessageEvent.objects.filter(status="receipt_timeout").order_by("id").values_list("message_id", flat=True)
    assert list(flagged) == [m.id for m in messages]


def test_the_jobs_table_follows_each_sent_message_and_forgets_those_past_every_window(make_message) -> None:
    """dispatch_due (kept by the triggers) holds a row per `sent` message while it is sent; the
    timeouts job drops the rows of messages sent before any job looks back."""
    make_provider("aliyun")
    waiting, answered, old = make_message(), make_message(), make_message()
    assert set(Due.objects.filter(kind="sent").values_list("message_id", flat=True)) == {waiting.id, answered.id, old.id}
    Message.objects.filter(id=answered.id).update(status="delivered")
    Message.objects.filter(id=old.id).update(sent_at=timezone.now() - dt.timedelta(days=2))
    assert Due.objects.get(message_id=old.id).at == Message.objects.get(id=old.id).sent_at
    receipts_flag_timeouts()
    assert list(Due.objects.values_list("kind", "message_id", "provider")) == [("sent", waiting.id, waiting.provider)]
    assert Message.objects.get(id=old.id).status == "sent"  # only the job's row went


def test_rematch_job_applies_receipts_that_beat_the_sent_finish(make_message) -> None:
    make_provider("aliyun", receipt_token=RECEIPT_TOKEN)
    message = make_message(status="sending")
    body = aliyun_report(message)
    Client().post(f"/api/v1/receipts/aliyun?token={RECEIPT_TOKEN}", body, content_type="application/json")
    assert ProviderReceipt.objects.get().message_id is None
    assert receipts_rematch() == 0

    Message.objects.filter(id=message.id).update(status="sent", sent_at=timezone.now())
    assert receipts_rematch() == 1
    assert Message.objects.get(id=message.id).status == "delivered"
    assert receipts_rematch() == 0


def test_reports_of_messages_made_days_ago_are_applied_too(make_message) -> None:
    """A report as it comes looks among the last days' messages first (one probe per daily partition
    otherwise); a message made before that — sent late from a schedule — still gets its report, pushed
    (through the receipts worker's match) or polled (at once)."""
    provider = make_provider("aliyun", receipt_token=RECEIPT_TOKEN)
    days = RECENT_MESSAGES.days + 3
    pushed, polled = (Message.objects.get(id=move_back(make_message().id, days)) for _ in range(2))
    report = json.loads(aliyun_report(pushed))
    report[0]["out_id"] = ""  # by the provider's id and number alone
    response = Client().post(
        f"/api/v1/receipts/aliyun?token={RECEIPT_TOKEN}", json.dumps(report), content_type="application/json"
    )
    assert response.status_code == 200
    receipts_match_pending()  # the receipts worker's task
    assert Message.objects.get(id=pushed.id).status == "delivered"

    receipt = Receipt(provider.name, polled.provider_message_id, None, polled.address, "delivered", "DELIVRD", "", timezone.now())
    [applied] = receipts_record(provider=provider, receipts=[receipt], source="poll")
    assert applied.message_id == polled.id
    assert Message.objects.get(id=polled.id).status == "delivered"


def test_metrics_show_receipts_and_latency(make_message, django_capture_on_commit_callbacks) -> None:
    make_provider("aliyun", receipt_token=RECEIPT_TOKEN)
    message = make_message()
    report = json.loads(aliyun_report(message))
    report[0]["report_time"] = (timezone.now() + dt.timedelta(hours=8)).strftime("%Y-%m-%d %H:%M:%S")
    with django_capture_on_commit_callbacks(execute=True):  # counted once the reports commit
        Client().post(f"/api/v1/receipts/aliyun?token={RECEIPT_TOKEN}", json.dumps(report), content_type="application/json")
    text = Client().get("/metrics").content.decode()
    for name in (
        'mc_messages_delivered_total{channel="sms",provider="test-aliyun"}',
        "mc_receipt_latency_seconds_bucket",
        "mc_receipts_received_total",
        "mc_messages_accepted_total",
        "mc_messages_sent_total",
        "mc_messages_failed_total",
        "mc_messages_undelivered_total",
        "mc_queue_depth",
    ):
        assert name in text, name
