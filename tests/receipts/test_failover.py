"""Receipt-aware failover of verification codes: once, through another provider, inside the TTL."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import override_settings
from django.utils import timezone

from apps.dispatch.models import Message, MessageEvent
from apps.receipts.failover import failover_on_undelivered, failover_silent
from apps.receipts.models import Failover
from tests.receipts.conftest import make_provider

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_providers():  # type: ignore[no-untyped-def]
    return make_provider("aliyun"), make_provider("tencent")


def _verification(message: Message, **fields) -> Message:  # type: ignore[no-untyped-def]
    Message.objects.filter(id=message.id).update(category="verification", priority="critical", **fields)
    message.refresh_from_db()
    return message


def test_undelivered_code_is_resent_once_avoiding_the_failed_provider(two_providers, make_message) -> None:
    original = _verification(make_message(status="undelivered"))
    [resend] = failover_on_undelivered(message_ids=[original.id])
    assert (resend.status, resend.provider, resend.attempts) == ("queued", "test-aliyun", 1)
    assert resend.expires_at == original.expires_at and resend.content == original.content
    assert MessageEvent.objects.filter(message=original, status="failover").exists()
    assert failover_on_undelivered(message_ids=[original.id]) == []  # once
    Message.objects.filter(id=resend.id).update(status="undelivered")
    assert failover_on_undelivered(message_ids=[resend.id]) == []  # a resend is not resent
    assert Failover.objects.count() == 1


def test_no_failover_for_other_categories_after_the_ttl_or_without_another_provider(make_message) -> None:
    make_provider("aliyun")
    lonely = _verification(make_message(status="undelivered"))
    assert failover_on_undelivered(message_ids=[lonely.id]) == []
    make_provider("tencent")
    transactional = make_message(status="undelivered")
    late = _verification(make_message(status="undelivered"), expires_at=timezone.now() + dt.timedelta(seconds=1))
    assert failover_on_undelivered(message_ids=[transactional.id, late.id]) == []


@override_settings(VERIFICATION_FAILOVER_SECONDS=30)
def test_a_silent_provider_triggers_the_failover(two_providers, make_message) -> None:
    fresh = _verification(make_message(status="sent"))
    silent = _verification(make_message(status="sent"), sent_at=timezone.now() - dt.timedelta(seconds=31))
    [resend] = failover_silent()
    assert Failover.objects.get().original_id == silent.id and Failover.objects.get().reason == "no_receipt"
    assert resend.address == silent.address and fresh.id != silent.id
    assert failover_silent() == []
