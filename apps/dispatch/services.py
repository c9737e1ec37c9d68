"""Message operations other than the accept path (apps/dispatch/accept/) and delivery (apps/dispatch/delivery/)."""

from __future__ import annotations

import datetime as dt

from django.db import connection, transaction
from django.utils import timezone

from apps.accounts.models import Account
from apps.dispatch import outbox, transitions
from apps.dispatch.accept.group import take_request_token
from apps.dispatch.accept.idempotency import IDEMPOTENCY_TTL
from apps.dispatch.events import record_events
from apps.dispatch.leases import queued_lease
from apps.dispatch.models import Message, Status
from apps.dispatch.spool.accept import message_send
from messaging_center.db import bound_cursor
from messaging_center.errors import Conflict

__all__ = ["message_send", "take_request_token"]


def message_cancel(*, message: Message) -> Message:
    """scheduled/queued → canceled; anything a provider may already have → 409 not_cancelable."""
    with bound_cursor() as cursor:
        cursor.execute(transitions.CANCEL, {"id": message.id, "detail": "Canceled by the sender."})
        updated = cursor.fetchone() is not None
    if not updated:
        message.refresh_from_db(fields=["status"])
        raise Conflict(
            f"The message is {message.status}; only scheduled or queued messages can be canceled.", code="not_cancelable"
        )
    record_events([(message.id, Status.CANCELED, "canceled", "Canceled by the sender.", "", None)])
    message.refresh_from_db()
    return message


def message_send_again(*, message: Message) -> Message:
    """Operator action: a copy of a finished message, queued on its lane with a fresh TTL."""
    now = timezone.now()
    ttl = message.expires_at - (message.scheduled_at or message.created_at)
    copy = Message.objects.create(
        account_id=message.account_id,
        batch_id=message.batch_id,
        template_id=message.template_id,
        template_code=message.template_code,
        channel=message.channel,
        category=message.category,
        priority=message.priority,
        address=message.address,
        user_id=message.user_id,
        params=message.params,
        title=message.title,
        content=message.content,
        segments=message.segments,
        segment=message.segment,
        status=Status.QUEUED,
        created_at=now,
        expires_at=now + ttl,
        lease_until=now + queued_lease(),
    )
    resent = f"sent again from {message.public_id} by an operator"
    record_events([(copy.id, Status.QUEUED, "resend", resent, "", None)], first=True)
    with transaction.atomic():
        outbox.enqueue([(copy.id, copy.priority)])
    return copy


def inbox_mark_read(*, account: Account, user_id: str, message: Message) -> Message:
    if message.read_at is None:
        Message.objects.filter(id=message.id, read_at__isnull=True).update(read_at=timezone.now())
        message.refresh_from_db(fields=["read_at"])
    return message


def inbox_mark_all_read(*, account: Account, user_id: str) -> int:
    return Message.objects.filter(
        account=account, user_id=user_id, channel="inbox", status=Status.DELIVERED, read_at__isnull=True
    ).update(read_at=timezone.now())


# The purge's statement: a batch of the oldest records, through `idempotency_created` (created_at), then
# deleted by primary key (`= ANY(ARRAY(…))`: a join would let the planner hash the whole table).
PURGE_IDEMPOTENCY = """
    DELETE FROM dispatch_idempotencyrecord WHERE id = ANY(ARRAY(
        SELECT id FROM dispatch_idempotencyrecord WHERE created_at < %(before)s ORDER BY created_at LIMIT %(batch)s
    ))
"""


def idempotency_purge(*, older_than: dt.timedelta = IDEMPOTENCY_TTL, batch: int = 10_000) -> int:
    """Records past their 24 h, deleted in batches (each its own short statement)."""
    before = timezone.now() - older_than
    purged = 0
    with connection.cursor() as cursor:
        while True:
            cursor.execute(PURGE_IDEMPOTENCY, {"before": before, "batch": batch})
            purged += cursor.rowcount
            if cursor.rowcount < batch:
                return purged
