from __future__ import annotations

from django.db import models

from apps.accounts.models import Account
from messaging_center import ids
from messaging_center.vocabulary import (
    DEFAULT_DEDUP_WINDOW,
    DEFAULT_FREQUENCY_LIMITS,
    DEFAULT_PRIORITY,
    DEFAULT_TTL,
    Category,
    Channel,
    Priority,
)


class Status(models.TextChoices):
    ACTIVE = "active"
    DISABLED = "disabled"


class MessageTemplate(models.Model):
    """What a business system sends, by code; a soft-deleted template stays for its old messages."""

    id = models.UUIDField(primary_key=True, default=ids.uuid7, editable=False)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="templates")
    code = models.CharField(max_length=64, help_text="Unique per account among templates that are not deleted.")
    name = models.CharField(max_length=200)
    channel = models.CharField(max_length=16, choices=Channel.choices)
    category = models.CharField(max_length=16, choices=Category.choices)
    title = models.CharField(max_length=200, blank=True, default="", help_text="Inbox, push, e-mail subject, WeChat.")
    content = models.TextField(help_text="Text with {{name}} placeholders.")
    variables = models.JSONField(default=list, editable=False, help_text="Placeholder names, in order of first appearance.")
    sms_signature = models.CharField(max_length=32, blank=True, default="", help_text="Sent as 【signature】.")
    # Overrides; empty means the category default (see the effective_* properties).
    priority = models.CharField(max_length=16, choices=Priority.choices, blank=True, default="")
    ttl = models.PositiveIntegerField(null=True, blank=True, help_text="Seconds a message stays worth delivering.")
    dedup_window = models.PositiveIntegerField(null=True, blank=True, help_text="Seconds; 0 turns dedup off.")
    frequency_limits = models.JSONField(
        null=True, blank=True, help_text='[{"limit": 3, "window": 86400}, …]; [] turns limits off.'
    )
    provider_template_ids = models.JSONField(default=dict, blank=True)
    sample_params = models.JSONField(default=dict, blank=True, help_text="Values the admin preview renders with.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    deleted_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "message template"
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "code"], condition=models.Q(deleted_at__isnull=True), name="template_code_unique_live"
            )
        ]
        indexes = [models.Index(fields=["account", "-id"], name="template_account_id")]

    def __str__(self) -> str:
        return self.code

    @property
    def effective_priority(self) -> str:
        return self.priority or DEFAULT_PRIORITY[Category(self.category)]

    @property
    def effective_ttl(self) -> int:
        return self.ttl if self.ttl is not None else DEFAULT_TTL[Category(self.category)]

    @property
    def effective_dedup_window(self) -> int:
        return self.dedup_window if self.dedup_window is not None else DEFAULT_DEDUP_WINDOW[Category(self.category)]

    @property
    def effective_frequency_limits(self) -> list[dict[str, int]]:
        if self.frequency_limits is not None:
            return list(self.frequency_limits)
        return list(DEFAULT_FREQUENCY_LIMITS[Category(self.category)])

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None
