"""Alert rules (edited by operators in admin), the alerts they raise, what was sent about them, and the
operators who are told (docs/architecture.md, "Alerts")."""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class Kind(models.TextChoices):
    DELIVERY_RATE_DROP = "delivery_rate_drop", "Delivery rate drop against the provider's own 24 h"
    SUBMIT_ERRORS = "submit_errors", "Submit-error spike"
    RECEIPT_SILENCE = "receipt_silence", "Receipt silence"
    QUEUE_AGE = "queue_age", "Oldest queued message of a lane"
    CALLBACK_BACKLOG = "callback_backlog", "Status callback backlog"
    VERIFICATION_FILL_DROP = "verification_fill_drop", "Verification fill-rate drop"
    QUOTA_NEAR = "quota_near", "Account near its daily quota"
    PROVIDER_DEMOTED = "provider_demoted", "A provider demoted for a destination segment by routing"


# What `threshold` and `window_minutes` mean for each kind (shown in admin next to the fields).
THRESHOLD_MEANS = {
    Kind.DELIVERY_RATE_DROP: "points below the provider's 24 h delivery rate (0.2 = 20 points)",
    Kind.SUBMIT_ERRORS: "share of failed provider calls in the last minute (0.5 = half)",
    Kind.RECEIPT_SILENCE: "share of sent messages with a receipt below which the provider counts as silent",
    Kind.QUEUE_AGE: "seconds the oldest queued message of the lane has waited",
    Kind.CALLBACK_BACKLOG: "status callbacks due and not yet delivered",
    Kind.VERIFICATION_FILL_DROP: "points below the account's 24 h fill rate (codes checked valid / codes sent)",
    Kind.QUOTA_NEAR: "share of the daily quota used (0.9 = 90 %)",
    Kind.PROVIDER_DEMOTED: "not used: routing's own thresholds (docs/quality.md)",
}
WINDOW_MEANS = {
    Kind.DELIVERY_RATE_DROP: "minutes of messages compared with the baseline",
    Kind.SUBMIT_ERRORS: "not used: the provider health's own rolling minute",
    Kind.RECEIPT_SILENCE: "minutes: messages sent at least this long ago (and at most twice this) without a receipt",
    Kind.QUEUE_AGE: "not used",
    Kind.CALLBACK_BACKLOG: "minutes a callback has been due before it counts",
    Kind.VERIFICATION_FILL_DROP: "minutes of codes compared with the baseline (the last 2 minutes left out: not yet typed in)",
    Kind.QUOTA_NEAR: "not used",
    Kind.PROVIDER_DEMOTED: "not used",
}


class AlertRule(models.Model):
    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=32, choices=Kind.choices)
    enabled = models.BooleanField(default=True)
    scope = models.CharField(
        max_length=64, blank=True, default="", help_text="Only this provider, lane or account name; blank = all of them."
    )
    threshold = models.FloatField(help_text="Its meaning depends on the kind: see the list below the form.")
    window_minutes = models.PositiveIntegerField(default=5)
    min_volume = models.PositiveIntegerField(
        default=20, help_text="Messages, calls or codes a window needs before a rate is judged (a few are noise)."
    )
    cooldown_minutes = models.PositiveIntegerField(
        default=10, help_text="At least this long between two notices about the same rule and subject (flapping)."
    )
    repeat_minutes = models.PositiveIntegerField(default=60, help_text="Remind while it stays open this often; 0 = never.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["kind", "name"]

    def __str__(self) -> str:
        return self.name


class Alert(models.Model):
    """One episode of a rule firing for one subject (a provider, a provider and segment, a lane, an
    account): opened when the rule first fires, resolved when its condition clears."""

    class State(models.TextChoices):
        OPEN = "open"
        RESOLVED = "resolved"

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="alerts")
    subject = models.CharField(max_length=200, blank=True, default="")
    state = models.CharField(max_length=16, choices=State.choices, default=State.OPEN)
    opened_at = models.DateTimeField()
    last_seen_at = models.DateTimeField(help_text="The last evaluation that found it firing.")
    resolved_at = models.DateTimeField(null=True, blank=True)
    value = models.FloatField(null=True, blank=True, help_text="The figure the rule measured, last time it fired.")
    summary = models.TextField(help_text="What was measured, last time it fired.")
    announced = models.BooleanField(default=False, help_text="Its opening notice went out (a cool-down can delay it).")
    notified_at = models.DateTimeField(null=True, blank=True, help_text="The last notice about it.")

    class Meta:
        ordering = ["-opened_at"]
        constraints = [
            # Dedup: one open alert per rule and subject.
            models.UniqueConstraint(fields=["rule", "subject"], condition=Q(state="open"), name="alert_one_open")
        ]
        indexes = [models.Index(fields=["rule", "subject", "-notified_at"], name="alert_last_notice")]

    def __str__(self) -> str:
        return f"{self.rule.name} · {self.subject or 'all'} ({self.state})"


class AlertNotice(models.Model):
    """One notice sent about an alert, and what became of it on each road."""

    class Kind(models.TextChoices):
        OPENED = "opened"
        REMINDER = "reminder"
        RESOLVED = "resolved"

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="notices")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    at = models.DateTimeField()
    content = models.TextField()
    webhook = models.CharField(max_length=200, blank=True, default="", help_text="The webhook's answer, or why none.")
    operator_messages = models.TextField(blank=True, default="", help_text="The messages sent to operators, or why none.")

    class Meta:
        ordering = ["at"]

    def __str__(self) -> str:
        return f"{self.kind} at {self.at:%Y-%m-%d %H:%M:%S}"


class OperatorRecipient(models.Model):
    """Who is told: each address gets alerts and the daily report through our own send path, as the
    internal ops account (SMS: alerts only, the report is too long for it)."""

    name = models.CharField(max_length=100, unique=True)
    active = models.BooleanField(default=True)
    wecom_userid = models.CharField("WeCom user id", max_length=64, blank=True, default="")
    email = models.EmailField(blank=True, default="")
    phone = models.CharField(max_length=32, blank=True, default="", help_text="E.164, e.g. +8613800138000.")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
