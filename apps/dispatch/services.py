"""Message operations other than the accept path (apps/dispatch/accept/) and delivery (apps/dispatch/delivery/)."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from django.db import connection, transaction
from django.utils import timezone

from apps.accounts.models import Account
from apps.dispatch import transitions
from apps.dispatch.accept.group import take_request_token
from apps.dispatch.accept.idempotency import IDEMPOTENCY_TTL
from apps.dispatch.accept.request import MAX_TTL_SECONDS
from apps.dispatch.contacts import CHANNEL_ADDRESS_KEY
from apps.dispatch.events import record_events
from apps.dispatch.models import Message, Status
from apps.dispatch.sealing import SEALED_PREFIX, unseal
from apps.dispatch.spool.accept import message_send
from messaging_center import ids
from messaging_center.db import bound_cursor
from messaging_center.errors import Conflict, ServiceError

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


@dataclass(frozen=True)
class SentAgain:
    status: str  # the new message's (queued, scheduled), or why there is none (suppressed, rejected, an error code)
    detail: str = ""  # the reason of a refusal, as an API send would give it
    public_id: str | None = None  # the new message, when one was accepted


def message_send_again(*, message: Message, by: str) -> SentAgain:
    """Operator action: the message's template, params, address, priority and TTL sent again through the
    accept path, as a new API send of its account, so every rule of one applies (opt-outs and
    preferences, quiet hours, dedup, frequency limits, the platform cap, the quota); the content is
    rendered from the template as it is now. A secret param (a verification code) is sealed again."""
    if not message.account.is_active:
        return SentAgain("account_disabled", "The account is disabled by an operator.")
    to: dict[str, str] = {"user_id": message.user_id} if message.user_id else {}
    key = CHANNEL_ADDRESS_KEY.get(message.channel)
    if key and message.address and not (message.channel == "push" and message.user_id):  # a user's push: all devices
        to[key] = message.address
    ttl = (message.expires_at - (message.scheduled_at or message.created_at)).total_seconds()
    data = {
        "template": message.template_code,
        "to": to,
        "params": unseal(message.params),
        "priority": message.priority,
        "ttl": min(max(int(ttl), 1), MAX_TTL_SECONDS),
    }
    secret = frozenset(k for k, v in message.params.items() if isinstance(v, str) and v.startswith(SEALED_PREFIX))
    try:
        with transaction.atomic():  # the new message and its first event, published on commit
            response = message_send(account=message.account, data=data, secret_params=secret)
            outcome = json.loads(response.body)["messages"][0]
            if outcome["status"] not in (Status.QUEUED, Status.SCHEDULED):
                return SentAgain(outcome["status"], outcome.get("detail") or outcome.get("code", ""))
            copy_id = ids.decode("msg", outcome["id"])
            assert copy_id is not None  # our own send's answer
            resent = f"sent again from {message.public_id} by operator {by}"
            record_events([(copy_id, outcome["status"], "resend", resent, "", None)], first=True)
    except ServiceError as error:
        return SentAgain(error.code, error.detail)
    return SentAgain(outcome["status"], public_id=outcome["id"])


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
