from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from messaging_center import ids


def _default_timezone() -> str:
    return settings.TIME_ZONE


class Account(models.Model):
    """A business system that sends through us; everything it owns hangs off this row."""

    id = models.UUIDField(primary_key=True, default=ids.uuid7, editable=False)
    name = models.CharField(max_length=200, unique=True)
    is_active = models.BooleanField(default=True, help_text="A disabled account's requests get 403 account_disabled.")
    rate_limit = models.PositiveIntegerField(default=100, help_text="API requests per second.")
    daily_quota = models.PositiveIntegerField(default=1_000_000, help_text="Messages per day.")
    timezone = models.CharField(
        max_length=64, default=_default_timezone, help_text="Used for quiet hours when a recipient has none."
    )
    callback_url = models.URLField(max_length=500, blank=True, default="")
    callback_secret_encrypted = models.TextField(blank=True, default="", editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    # DRF treats the authenticated principal as `request.user`.
    is_authenticated = True
    is_anonymous = False

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def public_id(self) -> str:
        return ids.encode("acc", self.id)

    @property
    def callback_secret_set(self) -> bool:
        return bool(self.callback_secret_encrypted)


class ApiKey(models.Model):
    """An API key, stored as a SHA-256 hash; `prefix` finds the row without revealing the key."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, blank=True, default="")
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "API key"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        state = "revoked" if self.revoked_at else "active"
        return f"mc_{self.prefix}_… ({state})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
