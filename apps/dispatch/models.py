"""Messages, their event timeline, the publish outbox and idempotency records.

Built for ~100 M messages: UUIDv7 primary keys made in Python (time-ordered, so `ORDER BY id DESC`
is newest first and keyset pagination needs no extra column; no sequence round trips), indexes that
lead with the account, and partial indexes for the few hot states the background jobs scan.
"""

from __future__ import annotations

import datetime as dt

from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Func, Q

from messaging_center import crypto, ids
from messaging_center.vocabulary import Channel


class Status(models.TextChoices):
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    SENDING = "sending"
    RETRY_WAIT = "retry_wait"
    SENT = "sent"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELED = "canceled"
    SUPPRESSED = "suppressed"
    REJECTED = "rejected"


FINAL_STATUSES = frozenset(
    {Status.DELIVERED, Status.UNDELIVERED, Status.FAILED, Status.EXPIRED, Status.CANCELED, Status.SUPPRESSED, Status.REJECTED}
)
ACTIVE_STATUSES = (Status.QUEUED, Status.SENDING, Status.RETRY_WAIT)
# Messages still on their way through: the gram index leaves them out, so that the accept path's inserts and
# each move before `sent` (none of them HOT: status is indexed) do not write its ~40 entries a message again;
# a `q` search finds these through the (account, status, id) index instead (selectors.message_search).
UNSETTLED_STATUSES = (Status.SCHEDULED, Status.QUEUED, Status.SENDING, Status.RETRY_WAIT)
GRAM_INDEXED_STATUSES = tuple(s for s in Status if s not in UNSETTLED_STATUSES)


class ContentGrams(Func):
    """`mc_grams(text)`, the SQL function of migration 0012_search: the distinct two-character pieces of the
    lower-cased text (Chinese and Latin alike). A text holds a substring only if its grams hold the
    substring's, so `ContentGrams("content") @> ContentGrams(q)` narrows a substring search to candidates
    through the GIN index `msg_content_grams`; `LIKE` then checks them."""

    function = "mc_grams"
    output_field = ArrayField(models.TextField())


class Message(models.Model):
    id = models.UUIDField(primary_key=True, default=ids.uuid7, editable=False)
    # No foreign-key constraints in the database (db_constraint=False): per-row checks at COMMIT slowed the
    # accept path (docs/performance.md, Accept path). Only our code writes these ids; Django enforces PROTECT.
    account = models.ForeignKey(
        "accounts.Account", on_delete=models.PROTECT, related_name="+", db_index=False, db_constraint=False
    )
    batch_id = models.UUIDField()
    template = models.ForeignKey(
        "message_templates.MessageTemplate",
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
        null=True,
        db_constraint=False,
    )
    template_code = models.CharField(max_length=64)
    channel = models.CharField(max_length=16)
    category = models.CharField(max_length=16)
    priority = models.CharField(max_length=16)
    address = models.CharField(max_length=255, blank=True, default="")
    user_id = models.CharField(max_length=255, blank=True, default="")
    params = models.JSONField(default=dict, blank=True)
    title = models.TextField(blank=True, default="")
    content = models.TextField(blank=True, default="")
    segments = models.PositiveSmallIntegerField(null=True, blank=True)
    # The destination segment (apps.dispatch.segments): country, +86 carrier, or the channel. Set at
    # accept; a key of the rollups (below).
    segment = models.CharField(max_length=16, blank=True, default="", db_default="")
    status = models.CharField(max_length=16, choices=Status.choices)
    code = models.CharField(max_length=64, blank=True, default="")
    detail = models.TextField(blank=True, default="")
    provider = models.CharField(max_length=64, blank=True, default="")
    provider_message_id = models.CharField(max_length=128, blank=True, default="")
    attempts = models.PositiveSmallIntegerField(default=0)
    lease_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()
    scheduled_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField()
    read_at = models.DateTimeField(null=True, blank=True, help_text="In-site inbox: when the recipient read it.")
    # The last attempt's outcome is unknown (a timeout after the request left, or a worker that died
    # mid-send): ask the provider before sending again.
    needs_reconcile = models.BooleanField(default=False, db_default=False)
    # What the provider that accepted it charges, in micro-units of settings.COST_CURRENCY: its price for
    # the segment (ProviderPrice) times SMS segments (a message of another channel counts as one). Set at `sent`.
    cost = models.BigIntegerField(default=0, db_default=0)

    class Meta:
        indexes = [
            models.Index(fields=["account", "-id"], name="msg_account_id"),
            models.Index(fields=["account", "batch_id"], name="msg_account_batch"),
            models.Index(fields=["account", "address", "-id"], name="msg_account_address"),
            models.Index(fields=["account", "user_id", "-id"], name="msg_account_user", condition=~Q(user_id="")),
            models.Index(fields=["account", "status", "-id"], name="msg_account_status"),
            models.Index(fields=["account", "template_code", "-id"], name="msg_account_template"),
            # With the address: one provider id may cover a batch of numbers (Aliyun's SendBatchSms),
            # and a receipt is matched to its message by provider id and number in one probe.
            models.Index(
                fields=["provider", "provider_message_id", "address"],
                name="msg_provider_id_address",
                condition=~Q(provider_message_id=""),
            ),
            # The periodic jobs' own partial indexes: each holds only the rows its job looks for, keyed
            # by the time it walks them in (docs/architecture.md, Periodic jobs). A row enters one only
            # when it reaches that state, so the hot path pays one insert per message, not per move.
            # Scheduled messages by when they are due (the backlog gauges; enqueue_due reads dispatch_due,
            # as do receipt polling and timeouts, whose `sent` index here went with migration 0018).
            models.Index(fields=["scheduled_at"], name="msg_due", condition=Q(status="scheduled")),
            # Verification failover: unexpired codes still awaiting a receipt.
            models.Index(
                fields=["expires_at"], name="msg_verification_sent", condition=Q(status="sent", category="verification")
            ),
            # Only rows holding a lease. Not `status IN (…)`: the by-id finishes imply that predicate, and the
            # planner then scanned this whole index for them (docs/performance.md, Delivery).
            models.Index(fields=["lease_until"], name="msg_lease", condition=Q(lease_until__isnull=False)),
            models.Index(
                fields=["account", "user_id", "-id"],
                name="msg_inbox",
                condition=Q(channel="inbox", status="delivered"),
            ),
            # `q` searches (selectors.message_search). Not with the account: GIN takes no uuid without the
            # btree_gin extension, which the embedded server lacks; the time window's id range (and the
            # partitions it prunes) bounds the rest.
            GinIndex(ContentGrams("content"), name="msg_content_grams", condition=Q(status__in=GRAM_INDEXED_STATUSES)),
        ]

    def __str__(self) -> str:
        return self.public_id

    @property
    def public_id(self) -> str:
        return ids.encode("msg", self.id)

    @property
    def public_batch_id(self) -> str:
        return ids.encode("bat", self.batch_id)


class MessageEvent(models.Model):
    """One status change or delivery attempt of a message, for its `events` timeline."""

    id = models.UUIDField(primary_key=True, default=ids.uuid7, editable=False)
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="events", db_index=False, db_constraint=False)
    status = models.CharField(max_length=32)
    at = models.DateTimeField()
    code = models.CharField(max_length=64, blank=True, default="")
    detail = models.TextField(blank=True, default="")
    provider = models.CharField(max_length=64, blank=True, default="")
    attempt = models.PositiveSmallIntegerField(null=True, blank=True)
    # The claim of the attempt this event ends: the timeline shows that attempt's `sending` there
    # (selectors.message_timeline) instead of a row of its own for every attempt.
    started_at = models.DateTimeField(null=True, blank=True)
    # The outcome of the provider call this event records, in every provider's words (providers.errors.REASONS:
    # `accepted`, `invalid_number`, …); empty for events that record no call. Counted by dispatch_attempt_rollup.
    reason = models.CharField(max_length=32, blank=True, default="", db_default="")

    class Meta:
        indexes = [models.Index(fields=["message", "id"], name="event_message")]

    def __str__(self) -> str:
        return f"{self.status} at {self.at:%Y-%m-%d %H:%M:%S}"


class Grain(models.TextChoices):
    MINUTE = "minute"
    HOUR = "hour"
    DAY = "day"
    MONTH = "month"  # a calendar month, UTC
    TOTALS = "totals", "Day totals"  # a day's messages by outcome alone: every other part of the key ''


# How long finer rollup rows are kept (apps/dispatch/retention.py prunes them; stats read older edges
# at the next coarser grain). Day and month rows stay: one per group and day, and per group and month.
MINUTE_ROWS_KEPT = dt.timedelta(days=3)
HOUR_ROWS_KEPT = dt.timedelta(days=35)


class Rollup(models.Model):
    """Messages counted by when they were created (one row per grain's bucket) and by what they are
    now: account, channel, category, priority, provider, template, segment, outcome. Kept by
    PostgreSQL triggers on dispatch_message and receipts_verification (migration 0010), read by
    `GET /api/v1/stats` (apps/dispatch/stats.py); docs/architecture.md, "Rollups". Rows are only ever
    added to: a message leaving a group subtracts from it, and a group emptied that way stays at 0."""

    pk = models.CompositePrimaryKey(
        "account_id", "grain", "bucket", "channel", "category", "priority", "provider", "template_code", "segment", "outcome"
    )
    account_id = models.UUIDField()
    grain = models.CharField(max_length=6, choices=Grain.choices)
    bucket = models.DateTimeField(help_text="The start of the minute, hour or day (UTC) the messages were created in.")
    channel = models.CharField(max_length=16)
    category = models.CharField(max_length=16)
    priority = models.CharField(max_length=16)
    provider = models.CharField(max_length=64, help_text="Empty while pending: a provider counts once an attempt settles.")
    template_code = models.CharField(max_length=64)
    segment = models.CharField(max_length=16)
    outcome = models.CharField(max_length=16, help_text="The status, with scheduled, queued, sending and retry_wait as pending.")
    messages = models.BigIntegerField(default=0)
    sms_segments = models.BigIntegerField(default=0)
    attempted = models.BigIntegerField(default=0, help_text="Handed to a provider at least once (0 while pending).")
    latency_ms = ArrayField(models.IntegerField(), help_text="Delivered: sent → delivered, per bucket of LATENCY_BOUNDS_MS.")
    queue_ms = ArrayField(models.IntegerField(), help_text="Sent: accepted (or due) → sent, per bucket of LATENCY_BOUNDS_MS.")
    codes = models.BigIntegerField(default=0, help_text="Verification codes sent.")
    filled = models.BigIntegerField(default=0, help_text="Verification codes checked valid.")
    cost = models.BigIntegerField(default=0, db_default=0, help_text="What the providers charged, micro-units of COST_CURRENCY.")

    class Meta:
        db_table = "dispatch_rollup"
        # Across accounts by time (the quality metrics, alerts, the dashboard); the key leads with the account.
        indexes = [models.Index(fields=["grain", "bucket"], name="rollup_time")]

    def __str__(self) -> str:
        return f"{self.grain} {self.bucket:%Y-%m-%d %H:%M} {self.outcome}: {self.messages}"


class AttemptRollup(models.Model):
    """Provider calls counted when made, by grain, account, channel, provider, segment, template, outcome
    (`accepted` or a normalized reason: providers.errors.REASONS) and the provider's code. A trigger on
    the events keeps it (0016: an event with a `reason` is a call; 0017: `duplicate_send`, a duplicate)."""

    pk = models.CompositePrimaryKey(
        "account_id", "grain", "bucket", "channel", "provider", "segment", "template_code", "outcome", "code"
    )
    account_id = models.UUIDField()
    grain = models.CharField(max_length=6, choices=Grain.choices)
    bucket = models.DateTimeField(help_text="The start of the minute, hour, day or month (UTC) of the calls.")
    channel = models.CharField(max_length=16)
    provider = models.CharField(max_length=64)
    segment = models.CharField(max_length=16)
    template_code = models.CharField(max_length=64)
    outcome = models.CharField(max_length=32, help_text="accepted, or why not in every provider's words.")
    code = models.CharField(
        max_length=64,
        blank=True,
        help_text="A failed call: the provider's own code. An accepted one: failover_from:<provider> "
        "when the message's previous attempt went to another provider.",
    )
    calls = models.BigIntegerField(default=0)
    duplicates = models.BigIntegerField(
        db_default=0, default=0, help_text="Messages this provider delivered too, after another one had them."
    )
    latency_ms = ArrayField(
        models.IntegerField(), help_text="The attempt's claim → the provider's answer, per bucket of LATENCY_BOUNDS_MS."
    )

    class Meta:
        db_table = "dispatch_attempt_rollup"
        indexes = [models.Index(fields=["grain", "bucket"], name="attempt_rollup_time")]

    def __str__(self) -> str:
        return f"{self.grain} {self.bucket:%Y-%m-%d %H:%M} {self.provider} {self.outcome}: {self.calls}"


# Lower edges (ms) of the rollups' histogram buckets; the last bucket has no upper edge. Migration 0010
# writes the same list into SQL (`dispatch_rollup_bucket`); a test keeps them equal.
LATENCY_BOUNDS_MS = (
    0, 10, 25, 50, 75, 100, 150, 200, 300, 400, 500, 750, 1_000, 1_500, 2_000, 3_000, 4_000, 5_000, 7_500,
    10_000, 15_000, 20_000, 30_000, 45_000, 60_000, 90_000, 120_000, 180_000, 300_000, 600_000, 1_800_000, 3_600_000,
)  # fmt: skip


class DueKind(models.TextChoices):  # `at`: scheduled_at (enqueue_due); sent_at (receipt polling and timeouts)
    SCHEDULED = "scheduled"
    SENT = "sent"


class Due(models.Model):
    """A row per scheduled and per sent message, kept by triggers on the messages (migration 0018), for
    the periodic jobs: small and unpartitioned, then their messages by id (docs/architecture.md, #4)."""

    pk = models.CompositePrimaryKey("kind", "message_id")
    kind = models.CharField(max_length=16, choices=DueKind.choices)
    message_id = models.UUIDField()
    at = models.DateTimeField()
    provider = models.CharField(max_length=64, blank=True, default="")
    flagged = models.BooleanField(default=False, help_text="A `sent` message's receipt_timeout event is recorded.")

    class Meta:
        db_table = "dispatch_due"
        indexes = [models.Index(fields=["kind", "provider", "at", "message_id"], name="due_by_time")]

    def __str__(self) -> str:
        return f"{self.kind} {self.message_id} at {self.at:%Y-%m-%d %H:%M:%S}"


class Outbox(models.Model):
    """Dispatch tasks still to be published: written in the accepting transaction, deleted once the
    broker has them. The relay publishes rows older than a few seconds (the on-commit publish failed)."""

    id = models.UUIDField(primary_key=True, default=ids.uuid7, editable=False)
    lane = models.CharField(max_length=16)
    message_ids = models.JSONField()
    created_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "outbox"

    def __str__(self) -> str:
        return f"{self.lane}: {len(self.message_ids)} message(s)"


class IdempotencyRecord(models.Model):
    """The first response to an `Idempotency-Key`, replayed byte for byte for 24 h."""

    id = models.UUIDField(primary_key=True, default=ids.uuid7, editable=False)
    account = models.ForeignKey("accounts.Account", on_delete=models.CASCADE, related_name="+", db_index=False)
    key = models.CharField(max_length=255)
    body_hash = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField(null=True)
    response_body = models.BinaryField(null=True)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "key"], name="idempotency_account_key")]
        indexes = [models.Index(fields=["created_at"], name="idempotency_created")]

    def __str__(self) -> str:
        return self.key


class Provider(models.Model):
    """A configured provider account. Changes take effect within seconds, without a restart
    (routing re-reads enabled providers every few seconds)."""

    name = models.SlugField(max_length=64, unique=True)
    # Labels are the values (as in migration 0001), not Channel's display labels.
    channel = models.CharField(max_length=16, choices=[(c, c) for c in Channel.values])
    kind = models.CharField(max_length=32, help_text="The adapter: aliyun, tencent, twilio, …")
    weight = models.PositiveIntegerField(default=100, help_text="Share of traffic within its priority group.")
    priority_group = models.PositiveSmallIntegerField(
        default=1, help_text="Lower groups are tried first; higher ones are failover."
    )
    enabled = models.BooleanField(default=True)
    rate_limit = models.PositiveIntegerField(default=0, help_text="Sends per second across all workers; 0 = unlimited.")
    destinations = models.CharField(
        max_length=255,
        blank=True,
        default="",
        help_text="SMS: the calling codes this provider sends to, comma-separated (e.g. +86, +852); empty = every number.",
    )
    settings_encrypted = models.TextField(blank=True, default="", editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["channel", "priority_group", "name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind}, {self.channel})"

    @property
    def destination_prefixes(self) -> tuple[str, ...]:
        return destination_prefixes(self.destinations)

    def serves(self, address: str) -> bool:
        return serves(self.destination_prefixes, address)

    @property
    def settings(self) -> dict[str, str]:
        import json

        return json.loads(crypto.decrypt(self.settings_encrypted)) if self.settings_encrypted else {}

    @settings.setter
    def settings(self, value: dict[str, str]) -> None:
        import json

        self.settings_encrypted = crypto.encrypt(json.dumps(value, sort_keys=True))


class SegmentAction(models.TextChoices):
    PIN = "pin", "pin (only this provider, while its circuit is closed)"
    EXCLUDE = "exclude", "exclude (never this provider)"


class ProviderSegmentRule(models.Model):
    """An operator's word on one provider for one destination segment (apps.dispatch.segments): pinned
    providers take the segment's whole traffic, whatever their group, weight or delivery figures (the
    others only while every pinned one's circuit is open, or for a retry a pinned one failed); an
    excluded provider never gets it. Saving applies without a restart (the providers' version token)."""

    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="segment_rules")
    segment = models.CharField(
        max_length=16, help_text="A destination segment: CN-mobile, CN-unicom, CN-telecom, CN-other, US, GB, …"
    )
    action = models.CharField(max_length=8, choices=SegmentAction.choices)
    note = models.CharField(max_length=255, blank=True, default="", help_text="Why (seen by other operators).")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["segment", "provider"]
        constraints = [models.UniqueConstraint(fields=["provider", "segment"], name="provider_segment_rule_unique")]

    def __str__(self) -> str:
        return f"{self.action} {self.provider.name} for {self.segment}"


ANY_SEGMENT = "*"
MICRO = 1_000_000  # prices and costs are stored in micro-units of settings.COST_CURRENCY


class ProviderPrice(models.Model):
    """What a provider charges per SMS segment (per message on other channels) to a destination
    segment, or to every segment without a price of its own (`*`), in micro-units of
    settings.COST_CURRENCY (0.045 CNY = 45000). Read by routing (a tie between equally weighted,
    equally healthy providers goes to the cheapest) and when a message is sent (its cost)."""

    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="prices")
    segment = models.CharField(max_length=16, default=ANY_SEGMENT, help_text="A destination segment, or * for the default.")
    price = models.PositiveBigIntegerField(help_text="Micro-units of the cost currency per SMS segment (45000 = 0.045).")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["provider", "segment"]
        constraints = [models.UniqueConstraint(fields=["provider", "segment"], name="provider_price_unique")]

    def __str__(self) -> str:
        return f"{self.provider.name} → {self.segment}: {self.price}"


HOUR, DAY = 3600, 86400
PLATFORM_CAP_CATEGORIES = ("verification", "marketing")
# The shipped platform-wide caps per address, across all accounts: (per hour, per day), None = no cap
# in that window. A category without a row gets these (the data migration writes the same values).
# They sit above the per-account defaults (messaging_center/vocabulary.py: verification 5 per hour and
# 10 per day, marketing 3 per day), so that one account alone always meets its own limit first:
# - verification 10 per hour, 20 per day: two accounts' whole allowance. A person signing in to two
#   services and retrying at both limits is never stopped; a third sender hammering the number is.
# - marketing 5 per day: more promotions than that reaching one person in a day is spam whoever
#   sends it. No hourly cap: the day's is already small, and quiet hours spread them.
PLATFORM_CAP_DEFAULTS: dict[str, tuple[int | None, int | None]] = {"verification": (10, 20), "marketing": (None, 5)}


class PlatformCap(models.Model):
    """The platform-wide cap of one category: at most `per_hour` / `per_day` messages to one address
    in any hour / 24 hours, counted over every account, on top of each account's own frequency
    limits — so that many accounts cannot bomb one phone. The send path reads the rows through a
    cache of a few seconds (apps/dispatch/policy/platform_caps.py): no restart after a change."""

    category = models.CharField(max_length=16, unique=True, choices=[(c, c) for c in PLATFORM_CAP_CATEGORIES])
    per_hour = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Messages to one address in any hour, all accounts together; empty = no hourly cap. "
        "Keep it above the per-account limits, or one account alone meets it before its own.",
    )
    per_day = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Messages to one address in any 24 hours, all accounts together; empty = no daily cap. "
        "Keep it above the per-account limits, or one account alone meets it before its own.",
    )
    enabled = models.BooleanField(default=True, help_text="Off: only each account's own frequency limits apply.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["category"]

    def __str__(self) -> str:
        return f"platform cap on {self.category}"

    @property
    def limits(self) -> tuple[tuple[int, int], ...]:
        """((window seconds, max), …) as the limits script takes them; empty when off."""
        return cap_limits(self.per_hour, self.per_day) if self.enabled else ()


def cap_limits(per_hour: int | None, per_day: int | None) -> tuple[tuple[int, int], ...]:
    return tuple((window, maximum) for window, maximum in ((HOUR, per_hour), (DAY, per_day)) if maximum)


def destination_prefixes(text: str) -> tuple[str, ...]:
    """`"+86, +852"` → ("+86", "+852"); the admin form accepts only `+` and digits per entry."""
    return tuple(part for part in (piece.strip() for piece in text.replace(";", ",").split(",")) if part)


def serves(prefixes: tuple[str, ...], address: str) -> bool:
    """A provider with destinations sends only to numbers that start with one of them."""
    return not prefixes or address.startswith(prefixes)
