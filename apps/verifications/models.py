"""Verification codes: only an HMAC of each code is kept."""

from __future__ import annotations

from django.db import models

from apps.dispatch.contacts import mask_any
from messaging_center import ids


class Verification(models.Model):
    """A one-time code sent to an address. Only an HMAC of the code is stored."""

    class State(models.TextChoices):
        LIVE = "live"
        USED = "used"
        BURNED = "burned"

    id = models.UUIDField(primary_key=True, default=ids.uuid7, editable=False)
    account = models.ForeignKey("accounts.Account", on_delete=models.CASCADE, related_name="+", db_index=False)
    address = models.CharField(max_length=255)
    template_code = models.CharField(max_length=64)
    message = models.ForeignKey(  # no constraint in the database: see dispatch.Message.account
        "dispatch.Message", on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    code_hash = models.CharField(max_length=64)
    state = models.CharField(max_length=8, choices=State.choices, default=State.LIVE)
    failed_checks = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    verified_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "receipts_verification"  # made by apps.receipts before the codes had an app of their own
        indexes = [
            models.Index(fields=["account", "address", "-created_at"], name="verification_latest"),
            models.Index(fields=["message"], name="verification_message"),
        ]

    def __str__(self) -> str:  # admin shows it (lists, deletions): the number masked
        return f"{mask_any(self.address)} ({self.state})"

    @property
    def public_id(self) -> str:
        return ids.encode("ver", self.id)
