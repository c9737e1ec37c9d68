from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html_join

from apps.accounts.contacts import phone_e164, phone_masked
from apps.alerts.models import THRESHOLD_MEANS, WINDOW_MEANS, Alert, AlertNotice, AlertRule, Kind, OperatorRecipient
from apps.alerts.services import alert_resolve_by_operator


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "kind",
        "enabled",
        "scope",
        "threshold",
        "window_minutes",
        "min_volume",
        "cooldown_minutes",
        "repeat_minutes",
    )
    list_editable = ("enabled", "threshold", "window_minutes", "min_volume")
    list_filter = ("kind", "enabled")
    readonly_fields = ("meanings",)

    @admin.display(description="what threshold and window mean, by kind")
    def meanings(self, rule: AlertRule) -> str:
        return format_html_join(
            "",
            "<p><b>{}</b>: threshold = {}; window = {}.</p>",
            ((kind.label, THRESHOLD_MEANS[kind], WINDOW_MEANS[kind]) for kind in Kind),
        )


class AlertNoticeInline(admin.TabularInline):
    model = AlertNotice
    extra = 0
    can_delete = False
    fields = ("kind", "at", "content", "webhook", "operator_messages")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    """Alert history: every episode with what was measured and each notice sent about it."""

    list_display = ("rule", "subject", "state", "opened_at", "resolved_at", "summary", "announced")
    list_filter = ("state", "rule__kind", "rule")
    search_fields = ("subject", "summary")
    date_hierarchy = "opened_at"
    list_select_related = ("rule",)
    readonly_fields = [f.name for f in Alert._meta.fields]
    inlines = [AlertNoticeInline]
    actions = ["resolve"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Resolve (its subject no longer reports, e.g. a provider taken out of service)")
    def resolve(self, request: HttpRequest, queryset: QuerySet[Alert]) -> None:
        open_alerts = list(queryset.filter(state=Alert.State.OPEN).select_related("rule"))
        for alert in open_alerts:
            alert_resolve_by_operator(alert=alert)
            self.log_change(request, alert, "Resolved by an operator.")
        self.message_user(request, f"Resolved {len(open_alerts)} alert(s).", messages.INFO)


class OperatorRecipientForm(forms.ModelForm):
    class Meta:
        model = OperatorRecipient
        fields = ("name", "active", "wecom_userid", "email", "phone")

    def clean_phone(self) -> str:
        raw: str = self.cleaned_data["phone"]
        if not raw:
            return raw
        phone = phone_e164(raw)
        if phone is None:
            raise forms.ValidationError("Not a valid phone number (use +<country code><number>).")
        return phone


@admin.register(OperatorRecipient)
class OperatorRecipientAdmin(admin.ModelAdmin):
    form = OperatorRecipientForm
    list_display = ("name", "active", "wecom_userid", "email", "masked_phone")
    list_filter = ("active",)

    @admin.display(description="phone")
    def masked_phone(self, operator: OperatorRecipient) -> str:
        return phone_masked(operator.phone) if operator.phone else ""
