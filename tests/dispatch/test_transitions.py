"""The message state machine (apps/dispatch/transitions.py): the moves are declared once and the
statements keep to them; a send still under way is never expired under its worker."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from apps.dispatch import routing, transitions
from apps.dispatch.delivery import choice, claims, finishing
from apps.dispatch.models import Message, Status
from apps.dispatch.providers.base import SendResult
from tests.receipts.conftest import make_provider

pytestmark = pytest.mark.django_db


def test_moves_end_in_known_statuses_and_terminal_ones_stay() -> None:
    statuses = set(Status.values)
    for source, targets in transitions.MOVES.items():
        assert source in statuses and targets <= statuses
    for terminal in (Status.DELIVERED, Status.FAILED, Status.CANCELED, Status.SUPPRESSED, Status.REJECTED):
        assert terminal not in transitions.MOVES
    assert transitions.moving_to(Status.CANCELED) == (Status.QUEUED, Status.SCHEDULED)
    assert set(transitions.RECEIPT_APPLICABLE_FROM) == {Status.SENT, Status.RETRY_WAIT, Status.EXPIRED}


def test_a_send_under_way_is_not_expired_by_a_duplicate_task(api, make_message) -> None:
    """Its TTL passes while its worker still holds the lease: a second task for the same chunk
    leaves it alone, and the worker's finish records the provider's acceptance."""
    make_provider("aliyun")
    message = make_message(status="queued", provider_message_id="")
    [claimed] = claims.claim([message.id])
    Message.objects.filter(id=message.id).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert claims.read_claimable([message.id]) == []
    assert Message.objects.get(id=message.id).status == Status.SENDING
    routing.ROUTES.refresh()
    finishing._mark_sent([choice.Attempt(claimed, routing.ROUTES.named("test-aliyun"), SendResult("biz-1", {}))])
    assert Message.objects.get(id=message.id).status == Status.SENT


def test_a_sending_message_whose_worker_died_is_expired_once_its_ttl_passed(api, make_message) -> None:
    message = make_message(status="queued", provider_message_id="")
    claims.claim([message.id])
    past = timezone.now() - dt.timedelta(seconds=1)
    Message.objects.filter(id=message.id).update(expires_at=past, lease_until=past)
    assert claims.read_claimable([message.id]) == []
    expired = Message.objects.get(id=message.id)
    assert (expired.status, expired.code) == (Status.EXPIRED, "ttl_expired")
