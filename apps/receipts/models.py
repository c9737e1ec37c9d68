"""Delivery receipts from providers, and the status callbacks we owe business systems."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from messaging_center import ids


class ProviderReceipt(models.Model):
    """One final status a provider reported for one message, stored once.

    Unique per (provider, provider id, number, status) so that a replayed push or a poll that sees
    the same status again changes nothing (the number, because one Aliyun SendBatchSms call has one
    BizId for all its numbers); a report that only carries our id (no provider id) is unique per
    (provider, our id, status) instead. `message` is set once the receipt is matched to a message
    that a provider accepted; a receipt that arrives before we stored the provider id stays
    unmatched until the message becomes `sent` (the sent hook and a beat job match it then).
    """

    id = models.UUIDField(primary_key=True, default=ids.uuid7, editable=False)
    provider = models.CharField(max_length=64, help_text="The Provider row's name.")
    kind = models.CharField(max_length=32)
    provider_message_id = models.CharField(max_length=128, blank=True, default="")
    message_ref = models.UUIDField(null=True, blank=True, help_text="Our message id, when the report carries it.")
    to = models.CharField(max_length=255, blank=True, default="")
    status = models.CharField(max_length=16)
    code = models.CharField(max_length=64, blank=True, default="")
    detail = models.TextField(blank=True, default="")
    source = models.CharField(max_length=8, default="push")
    reported_at = models.DateTimeField()
    received_at = models.DateTimeField()
    message = models.ForeignKey(  # no constraint in the database: see dispatch.Message.account
        "dispatch.Message",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    matched_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "provider_message_id", "to", "status"],
                name="receipt_provider_id_status",
                condition=~Q(provider_message_id=""),
            ),
            models.UniqueConstraint(
                fields=["provider", "message_ref", "status"],
                name="receipt_provider_ref_status",
                condition=Q(provider_message_id=""),
            ),
        ]
        indexes = [
            # The partial indexes of unmatched receipts have predicates that no other one's query
            # implies. Each is then the only partial index a probe can use: with statistics from before
            # a storm of receipts, the planner read a whole other partial index of unmatched receipts
            # (the re-match job's, say) per probe instead (pg_stat_user_indexes: ~930 entries a probe).
            # The re-match job: `matched_at` is set with `message` and says the same.
            models.Index(fields=["received_at"], name="receipt_unmatched", condition=Q(matched_at__isnull=True)),
            models.Index(fields=["message"], name="receipt_message", condition=Q(message__isnull=False)),
            models.Index(
                fields=["message_ref"],
                name="receipt_unmatched_ref",
                condition=Q(message__isnull=True, message_ref__isnull=False),
            ),
            # The sent hook's look for receipts that came before their message was `sent`.
            models.Index(
                fields=["provider", "provider_message_id"],
                name="receipt_unmatched_pid",
                condition=Q(message__isnull=True) & ~Q(provider_message_id=""),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.provider} {self.provider_message_id or self.message_ref}: {self.status}"


class StatusCallback(models.Model):
    """One status notification owed to an account's callback URL, retried with backoff for 24 h."""

    class State(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        FAILED = "failed"
        CANCELED = "canceled"

    id = models.UUIDField(primary_key=True, default=ids.uuid7, editable=False)
    # No constraints in the database on these links: the tables are partitioned (messaging_center/partitions.py).
    account = models.ForeignKey(
        "accounts.Account", on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    message = models.ForeignKey(
        "dispatch.Message", on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    status = models.CharField(max_length=16)
    body = models.TextField(help_text="The exact JSON body posted (signed as is).")
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    created_at = models.DateTimeField()
    last_error = models.TextField(blank=True, default="")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["message", "status"], name="callback_message_status")]
        indexes = [models.Index(fields=["next_attempt_at"], name="callback_due", condition=Q(state="pending"))]

    def __str__(self) -> str:
        return f"{self.status} of {ids.encode('msg', self.message_id)} ({self.state})"


class CallbackAttempt(models.Model):
    """One HTTP POST of a status callback: what the business system answered, or why it failed."""

    id = models.UUIDField(primary_key=True, default=ids.uuid7, editable=False)
    callback = models.ForeignKey(
        StatusCallback, on_delete=models.CASCADE, related_name="attempt_log", db_index=False, db_constraint=False
    )
    # The callback's message: attempts are partitioned by it, and leave with the message's day.
    message_id = models.UUIDField()
    at = models.DateTimeField()
    url = models.CharField(max_length=500)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        indexes = [models.Index(fields=["callback", "at"], name="callback_attempt")]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.status_code or self.error}"


class Failover(models.Model):
    """A verification message sent again through another provider because the first one reported
    it undelivered (or stayed silent). One per original; a resend is never resent again."""

    original = models.OneToOneField(
        "dispatch.Message", on_delete=models.CASCADE, related_name="+", primary_key=True, db_constraint=False
    )
    resend = models.OneToOneField("dispatch.Message", on_delete=models.CASCADE, related_name="+", db_constraint=False)
    reason = models.CharField(max_length=32)
    failed_provider = models.CharField(max_length=64)
    created_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{ids.encode('msg', self.original_id)} → {ids.encode('msg', self.resend_id)} ({self.reason})"
