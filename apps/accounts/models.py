from __future__ import annotations

import uuid

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from messaging_center import ids
from messaging_center.vocabulary import Category, Channel


def _default_timezone() -> str:
    return settings.TIME_ZONE


RETENTION_DAYS_DEFAULT = 30
RETENTION_DAYS_MIN = 1
RETENTION_DAYS_MAX = 400


class Account(models.Model):
    """A business system that sends through us; everything it owns hangs off this row."""

    id = models.UUIDField(primary_key=True, default=ids.uuid7, editable=False)
    name = models.CharField(max_length=200, unique=True)
    is_active = models.BooleanField(default=True, help_text="A disabled account's requests get 403 account_disabled.")
    rate_limit = models.PositiveIntegerField(default=100, help_text="API requests per second.")
    daily_quota = models.PositiveIntegerField(default=1_000_000, help_text="Messages per day.")
    retention_days = models.PositiveSmallIntegerField(
        default=30,
        validators=[MinValueValidator(1), MaxValueValidator(400)],
        help_text="Days messages, their events, receipts and callbacks are kept (1 to 400).",
    )
    timezone = models.CharField(
        max_length=64, default=_default_timezone, help_text="Used for quiet hours when a recipient has none."
    )
    retention_days = models.PositiveSmallIntegerField(
        default=RETENTION_DAYS_DEFAULT,
        db_default=RETENTION_DAYS_DEFAULT,
        validators=[MinValueValidator(RETENTION_DAYS_MIN), MaxValueValidator(RETENTION_DAYS_MAX)],
        help_text=f"Messages, their events, receipts and callbacks older than this many days are deleted "
        f"({RETENTION_DAYS_MIN} to {RETENTION_DAYS_MAX}).",
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
        constraints = [
            models.CheckConstraint(
                condition=models.Q(retention_days__gte=RETENTION_DAYS_MIN, retention_days__lte=RETENTION_DAYS_MAX),
                name="account_retention_days_range",
            )
        ]

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


class Recipient(models.Model):
    """An end user of a business system, known by the system's own `user_id`, and how to reach them."""

    id = models.UUIDField(primary_key=True, default=ids.uuid7, editable=False)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="recipients")
    user_id = models.CharField(max_length=128)
    phone = models.CharField(max_length=20, blank=True, default="", help_text="E.164.")
    email = models.EmailField(max_length=254, blank=True, default="")
    wechat_openid = models.CharField("WeChat openid", max_length=128, blank=True, default="")
    wecom_userid = models.CharField("WeCom user id", max_length=64, blank=True, default="")
    timezone = models.CharField(max_length=64, blank=True, default="", help_text="IANA; empty means the account's.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["user_id"]
        constraints = [models.UniqueConstraint(fields=["account", "user_id"], name="recipient_user_id_unique")]
        # The send path looks recipients up by address to honour opt-outs of directly addressed entries.
        indexes = [
            models.Index(fields=["account", "phone"], name="recipient_phone"),
            models.Index(fields=["account", "email"], name="recipient_email"),
            models.Index(fields=["account", "wechat_openid"], name="recipient_openid"),
            models.Index(fields=["account", "wecom_userid"], name="recipient_wecom"),
        ]

    def __str__(self) -> str:
        return self.user_id


class PushPlatform(models.TextChoices):
    FCM = "fcm", "Firebase Cloud Messaging"
    APNS = "apns", "Apple Push Notification service"
    JPUSH = "jpush", "JPush"


class PushToken(models.Model):
    """One device registration; a token a provider reports as unregistered is deactivated, not deleted."""

    recipient = models.ForeignKey(Recipient, on_delete=models.CASCADE, related_name="push_tokens")
    platform = models.CharField(max_length=8, choices=PushPlatform.choices)
    token = models.CharField(max_length=512)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["recipient", "platform", "token"], name="push_token_unique_per_recipient")]
        indexes = [models.Index(fields=["token"], name="push_token_token")]

    def __str__(self) -> str:
        return f"{self.platform}:{self.token[:12]}…"


class Preference(models.Model):
    """An explicit choice for one category and channel; without a row the recipient is subscribed."""

    recipient = models.ForeignKey(Recipient, on_delete=models.CASCADE, related_name="preferences")
    category = models.CharField(max_length=16, choices=Category.choices)
    channel = models.CharField(max_length=16, choices=Channel.choices)
    subscribed = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["category", "channel"]
        constraints = [
            models.UniqueConstraint(fields=["recipient", "category", "channel"], name="preference_unique"),
            models.CheckConstraint(
                condition=~models.Q(category=Category.VERIFICATION, subscribed=False), name="verification_always_on"
            ),
        ]
        # Opt-out lookups filter on exactly this: who said no to this category on this channel.
        indexes = [
            models.Index(
                fields=["category", "channel", "recipient"],
                condition=models.Q(subscribed=False),
                name="preference_opted_out",
            )
        ]

    def __str__(self) -> str:
        return f"{self.category}/{self.channel}: {'on' if self.subscribed else 'off'}"
