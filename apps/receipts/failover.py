"""Receipt-aware failover for verification codes: a code the provider reports undelivered, or does
not confirm within VERIFICATION_FAILOVER_SECONDS, is sent once more through another provider while
its TTL lasts. The resend is a new message row linked to the original (`Failover`), queued with
`provider` = the failed provider and `attempts` = 1, so that routing avoids that provider."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Sequence

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone

from apps.dispatch import outbox
from apps.dispatch.events import record_events
from apps.dispatch.leases import queued_lease
from apps.dispatch.models import Message, Provider, Status
from apps.dispatch.spool import store as spool_store
from apps.receipts.models import Failover, ProviderReceipt

logger = logging.getLogger(__name__)


def candidates_query(message_ids: Sequence[uuid.UUID] | None, status: str, sent_before: dt.datetime | None) -> QuerySet[Message]:
    """The beat job's read (`message_ids` None) goes through `msg_verification_sent` (expires_at) WHERE
    status = 'sent' AND category = 'verification': unexpired codes awaiting a receipt, and no others."""
    now = timezone.now()
    query = Message.objects.filter(category="verification", status=status, expires_at__gt=now + dt.timedelta(seconds=5))
    if message_ids is not None:
        query = query.filter(id__in=message_ids)
    if sent_before is not None:
        query = query.filter(sent_at__lt=sent_before, sent_at__gt=now - dt.timedelta(days=1))
        query = query.exclude(Exists(ProviderReceipt.objects.filter(message=OuterRef("pk"))))
    # Neither a message resent already nor a resend itself goes again.
    query = query.exclude(Exists(Failover.objects.filter(original=OuterRef("pk"))))
    query = query.exclude(Exists(Failover.objects.filter(resend=OuterRef("pk"))))
    return query[:500]


def _candidates(message_ids: Sequence[uuid.UUID] | None, status: str, sent_before: dt.datetime | None) -> list[Message]:
    return list(candidates_query(message_ids, status, sent_before))


def _has_other_provider(message: Message) -> bool:
    others = Provider.objects.filter(channel=message.channel, enabled=True).exclude(name=message.provider)
    return any(provider.serves(message.address) for provider in others.only("destinations"))


def failover_resend(*, originals: Sequence[Message], reason: str, explanation: str) -> list[Message]:
    now = timezone.now()
    resends = []
    for original in originals:
        if not _has_other_provider(original):
            continue
        resend = Message(
            account_id=original.account_id,
            batch_id=original.batch_id,
            template_id=original.template_id,
            template_code=original.template_code,
            channel=original.channel,
            category=original.category,
            priority=original.priority,
            address=original.address,
            user_id=original.user_id,
            params=original.params,
            title=original.title,
            content=original.content,
            segments=original.segments,
            segment=original.segment,
            status=Status.QUEUED,
            provider=original.provider,  # with attempts=1, routing avoids it on the next claim
            attempts=1,
            created_at=now,
            expires_at=original.expires_at,
            lease_until=now + queued_lease(),
        )
        try:
            with transaction.atomic():
                resend.save(force_insert=True)
                Failover.objects.create(
                    original=original, resend=resend, reason=reason, failed_provider=original.provider, created_at=now
                )
                record_events(
                    [(original.id, "failover", reason, f"{explanation}; resent as {resend.public_id}", original.provider, None)]
                )
                resent = f"resend of {original.public_id}: {explanation}"
                record_events([(resend.id, Status.QUEUED, "failover", resent, "", None)], first=True)
                outbox.enqueue([(resend.id, resend.priority)])
        except IntegrityError:
            continue  # another worker resent it first
        resends.append(resend)
    return resends


def failover_on_undelivered(*, message_ids: Sequence[uuid.UUID]) -> list[Message]:
    """Called when receipts moved messages to `undelivered`."""
    if not message_ids:
        return []
    originals = _candidates(message_ids, Status.UNDELIVERED, None)
    return failover_resend(originals=originals, reason="undelivered", explanation="the provider reported it undelivered")


def failover_silent() -> list[Message]:
    """Beat job: verification codes still without a receipt VERIFICATION_FAILOVER_SECONDS after sending."""
    wait = settings.VERIFICATION_FAILOVER_SECONDS
    if spool_store.replayed_recently():
        return []  # the reports of codes sent during a database outage are still coming in
    originals = _candidates(None, Status.SENT, timezone.now() - dt.timedelta(seconds=wait))
    return failover_resend(originals=originals, reason="no_receipt", explanation=f"no delivery receipt within {wait} s")
