from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any, cast

from django import forms
from django.conf import settings as django_settings
from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join

from apps.dispatch import selectors, services
from apps.dispatch.contacts import mask_address
from apps.dispatch.models import (
    ANY_SEGMENT,
    MICRO,
    PLATFORM_CAP_CATEGORIES,
    Message,
    Outbox,
    PlatformCap,
    Provider,
    ProviderPrice,
    ProviderSegmentRule,
    destination_prefixes,
)
from apps.dispatch.providers_config import provider_settings_errors
from apps.dispatch.routing import health
from apps.dispatch.routing.quality import figures
from apps.dispatch.segments import known_segments
from messaging_center import ids
from messaging_center.errors import Conflict


class CappedCountPaginator(Paginator):
    """Counts at most COUNT_CAP rows (`SELECT count(*) FROM (… LIMIT cap)`), never the whole table: pages
    reach back COUNT_CAP rows; filters (account, status, created) narrow further."""

    COUNT_CAP = 10_000

    @cached_property
    def count(self) -> int:
        rows = cast("QuerySet[Message]", self.object_list)  # the admin paginates querysets
        return rows[: self.COUNT_CAP].count()


class CreatedFilter(admin.SimpleListFilter):
    """Creation time as a range of the time-ordered UUIDv7 ids: the primary key (and the daily partitions)
    serve it, where `created_at` has no index (an index more on every insert and status change)."""

    title = "created"
    parameter_name = "created"
    CHOICES = {
        "hour": ("Last hour", dt.timedelta(hours=1)),
        "day": ("Last 24 hours", dt.timedelta(days=1)),
        "week": ("Last 7 days", dt.timedelta(days=7)),
        "month": ("Last 31 days", dt.timedelta(days=31)),
    }

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(key, label) for key, (label, _) in self.CHOICES.items()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Message]) -> QuerySet[Message]:
        choice = self.CHOICES.get(self.value() or "")
        if choice is None:
            return queryset
        return queryset.filter(id__gte=ids.uuid7_floor(timezone.now() - choice[1]))


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = (
        "public_id",
        "account",
        "template_code",
        "channel",
        "priority",
        "masked_address",
        "status",
        "code",
        "provider",
        "created_at",
    )
    list_filter = (CreatedFilter, "status", "channel", "priority", "category", "account")
    search_fields = ("address", "provider_message_id", "template_code")
    ordering = ["-id"]
    # No COUNT(*) over the whole table: neither the "N total" nor the paginator's (capped) count.
    show_full_result_count = False
    paginator = CappedCountPaginator
    list_select_related = ("account",)
    actions = ["cancel_messages", "send_again"]
    # The number only masked: `exclude` alone does not hide a field that is also read-only.
    readonly_fields = [f.name for f in Message._meta.fields if f.name != "address"] + [
        "public_id",
        "public_batch_id",
        "masked_address",
        "events",
    ]
    exclude = ("address",)

    @admin.display(description="to")
    def masked_address(self, message: Message) -> str:
        return mask_address(message.channel, message.address)

    @admin.display(description="events")
    def events(self, message: Message) -> str:
        """The timeline, oldest first (its first event is made from the message row: not an inline)."""
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    f"{timezone.localtime(e.at):%Y-%m-%d %H:%M:%S}",
                    e.status,
                    e.code,
                    e.detail,
                    e.provider,
                    "" if e.attempt is None else e.attempt,
                )
                for e in selectors.message_timeline(message)
            ),
        )
        # In the operator's zone like every other time in admin, and labelled (the API answers in UTC).
        return format_html(
            "<table><tr><th>at ({})</th><th>status</th><th>code</th><th>detail</th><th>provider</th><th>attempt</th></tr>"
            "{}</table>",
            timezone.get_current_timezone_name(),
            rows,
        )

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Message], search_term: str
    ) -> tuple[QuerySet[Message], bool]:
        """Search also by public message or batch id (`msg_…`, `bat_…`)."""
        term = search_term.strip()
        for prefix, column in (("msg", "id"), ("bat", "batch_id")):
            decoded = ids.decode(prefix, term)
            if decoded is not None:
                return queryset.filter(**{column: decoded}), False
        return super().get_search_results(request, queryset, search_term)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Message | None = None) -> bool:
        return False

    @admin.action(description="Cancel (scheduled or queued only)")
    def cancel_messages(self, request: HttpRequest, queryset: QuerySet[Message]) -> None:
        canceled = refused = 0
        for message in queryset:
            try:
                services.message_cancel(message=message)
                canceled += 1
            except Conflict:
                refused += 1
        self.message_user(request, f"Canceled {canceled}; {refused} could not be canceled any more.", messages.INFO)

    @admin.action(description="Send again (as an API send would: opt-outs, quiet hours, limits and quota apply)")
    def send_again(self, request: HttpRequest, queryset: QuerySet[Message]) -> None:
        """Each message sent again through the accept path; every outcome recorded in admin's log
        (on the original message) and shown, a refusal with its reason."""
        sent, refused = [], []
        for message in queryset.select_related("account"):
            outcome = services.message_send_again(message=message, by=request.user.get_username())
            if outcome.public_id:
                sent.append(f"{outcome.public_id} ({outcome.status})")
                self.log_change(request, message, f"Sent again as {outcome.public_id} ({outcome.status}).")
            else:
                refused.append(f"{message.public_id}: {outcome.detail} ({outcome.status})")
                self.log_change(request, message, f"Send again refused: {outcome.detail} ({outcome.status}).")
        if sent:
            self.message_user(request, f"Sent again {len(sent)} message(s): {', '.join(sent[:10])}", messages.INFO)
        if refused:
            self.message_user(request, f"Not sent again: {'; '.join(refused[:10])}", messages.WARNING)


@admin.register(Outbox)
class OutboxAdmin(admin.ModelAdmin):
    list_display = ("id", "lane", "created_at")
    readonly_fields = ("id", "lane", "message_ids", "created_at")


SECRET_HINTS = ("secret", "token", "password", "key", "private")
MASK = "********"
CALLING_CODE = re.compile(r"\+[1-9]\d{0,5}")  # a calling code, or a longer prefix of numbers (+1212)


def _masked(settings: dict[str, str]) -> dict[str, str]:
    """Secrets are never shown back: only that they are set."""
    return {k: (MASK if any(h in k.lower() for h in SECRET_HINTS) and v else v) for k, v in settings.items()}


class ProviderForm(forms.ModelForm):
    settings_json = forms.CharField(
        label="Settings",
        widget=forms.Textarea(attrs={"rows": 10, "cols": 80}),
        help_text=f"A JSON object. Secrets show as {MASK}; leave that value to keep the stored secret.",
    )

    class Meta:
        model = Provider
        fields = ("name", "channel", "kind", "weight", "priority_group", "enabled", "rate_limit", "destinations")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["settings_json"].initial = json.dumps(_masked(self.instance.settings), indent=2, sort_keys=True)
        else:
            self.fields["settings_json"].initial = "{}"

    def clean_destinations(self) -> str:
        prefixes = destination_prefixes(self.cleaned_data.get("destinations") or "")
        wrong = [p for p in prefixes if not CALLING_CODE.fullmatch(p)]
        if wrong:
            raise forms.ValidationError(f"Not a calling code like +86: {', '.join(wrong)}.")
        return ", ".join(prefixes)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        try:
            submitted = json.loads(cleaned.get("settings_json") or "{}")
        except json.JSONDecodeError as error:
            self.add_error("settings_json", f"Not JSON: {error}")
            return cleaned
        if not isinstance(submitted, dict) or not all(isinstance(v, str) for v in submitted.values()):
            self.add_error("settings_json", "Must be a JSON object of string values.")
            return cleaned
        stored = self.instance.settings if self.instance.pk else {}
        merged = {k: (stored.get(k, "") if v == MASK else v) for k, v in submitted.items()}
        problems = provider_settings_errors(cleaned.get("kind", ""), merged)
        if problems:
            self.add_error("settings_json", f"Missing or invalid: {', '.join(problems)}.")
        cleaned["settings"] = merged
        return cleaned

    def save(self, commit: bool = True) -> Provider:
        provider: Provider = super().save(commit=False)
        provider.settings = self.cleaned_data["settings"]
        if commit:
            provider.save()
        return provider


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    form = ProviderForm
    list_display = (
        "name",
        "channel",
        "kind",
        "enabled",
        "priority_group",
        "weight",
        "destinations",
        "rate_limit",
        "circuit",
        "demoted_for",
    )
    list_filter = ("channel", "kind", "enabled")
    search_fields = ("name", "kind")
    actions = ["close_circuits"]

    @admin.display(description="circuit · success (last minute)")
    def circuit(self, provider: Provider) -> str:
        snapshot = health().snapshot(provider.name)  # one Redis read per row for both figures
        rate = "—" if snapshot.success_rate is None else f"{snapshot.success_rate:.0%} of {snapshot.attempts}"
        return f"{snapshot.state} · {rate}"

    @admin.display(description="demoted for (delivery data)")
    def demoted_for(self, provider: Provider) -> str:
        """One Redis read per row (a handful of providers), like the circuit's."""
        judged = figures().items()
        demoted = sorted((segment, v.reason) for (name, segment), v in judged if name == provider.name and v.state == "demoted")
        return ", ".join(f"{segment} ({reason})" for segment, reason in demoted) or "—"

    @admin.action(description="Close circuit (send traffic again now)")
    def close_circuits(self, request: HttpRequest, queryset: QuerySet[Provider]) -> None:
        for provider in queryset:
            health().reset(provider.name)


@admin.register(PlatformCap)
class PlatformCapAdmin(admin.ModelAdmin):
    list_display = ("category", "per_hour", "per_day", "enabled", "updated_at")
    list_editable = ("per_hour", "per_day", "enabled")
    readonly_fields = ("updated_at",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        """One row per category; the data migration makes them, this only replaces a missing one."""
        return PlatformCap.objects.count() < len(PLATFORM_CAP_CATEGORIES)

    def has_delete_permission(self, request: HttpRequest, obj: PlatformCap | None = None) -> bool:
        # A missing row means the shipped defaults, not "no cap": `enabled` is how a cap is turned off.
        return False


class SegmentField(forms.CharField):
    """A destination segment as segment_of names it (CN-mobile, US, …); `*` where allowed."""

    def __init__(self, *args: Any, any_segment: bool = False, **kwargs: Any) -> None:
        self.any_segment = any_segment
        super().__init__(*args, **kwargs)

    def clean(self, value: Any) -> str:
        segment = str(super().clean(value)).strip()
        if (self.any_segment and segment == ANY_SEGMENT) or segment in known_segments():
            return segment
        allowed = "* (every segment), " if self.any_segment else ""
        raise forms.ValidationError(
            f"Not a destination segment: {allowed}CN-mobile, CN-unicom, CN-telecom, CN-other, a country code such as US, "
            "or a channel such as email."
        )


class ProviderSegmentRuleForm(forms.ModelForm):
    segment = SegmentField(max_length=16)

    class Meta:
        model = ProviderSegmentRule
        fields = ("provider", "segment", "action", "note")


@admin.register(ProviderSegmentRule)
class ProviderSegmentRuleAdmin(admin.ModelAdmin):
    """Pin or exclude a provider per destination segment; applied by the next task, without a restart."""

    form = ProviderSegmentRuleForm
    list_display = ("segment", "provider", "action", "note", "updated_at")
    list_filter = ("action", "segment")
    list_select_related = ("provider",)


class ProviderPriceForm(forms.ModelForm):
    segment = SegmentField(max_length=16, initial=ANY_SEGMENT, any_segment=True)

    class Meta:
        model = ProviderPrice
        fields = ("provider", "segment", "price")


@admin.register(ProviderPrice)
class ProviderPriceAdmin(admin.ModelAdmin):
    form = ProviderPriceForm
    list_display = ("provider", "segment", "price", "per_segment", "updated_at")
    list_filter = ("provider",)
    list_select_related = ("provider",)

    @admin.display(description="per SMS segment")
    def per_segment(self, price: ProviderPrice) -> str:
        return f"{price.price / MICRO:.6f} {django_settings.COST_CURRENCY}"
