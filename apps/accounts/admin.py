from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.accounts.contacts import email_normalized, phone_e164, phone_masked, timezone_valid
from apps.accounts.models import Account, ApiKey, Preference, PushToken, Recipient
from apps.accounts.services import api_key_issue, api_key_revoke


class ApiKeyInline(admin.TabularInline):
    model = ApiKey
    extra = 0
    can_delete = False
    fields = ("name", "prefix", "created_at", "revoked_at")
    readonly_fields = ("name", "prefix", "created_at", "revoked_at")

    def has_add_permission(self, request: HttpRequest, obj: Account | None = None) -> bool:
        return False


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    list_display = ("name", "is_active", "rate_limit", "daily_quota", "retention_days", "callback_url", "created_at")
    list_filter = ("is_active",)
    search_fields = ("name",)
    readonly_fields = ("id", "created_at", "updated_at")
    inlines = [ApiKeyInline]
    actions = ["issue_api_key", "disable_accounts", "enable_accounts"]

    @admin.action(description="Issue a new API key (shown once)")
    def issue_api_key(self, request: HttpRequest, queryset: QuerySet[Account]) -> None:
        for account in queryset:
            issued = api_key_issue(account=account, name=f"issued by {request.user}")
            self.message_user(
                request,
                f"New API key for {account.name} — copy it now, it is not stored: {issued.raw_key}",
                messages.WARNING,
            )

    @admin.action(description="Disable selected accounts")
    def disable_accounts(self, request: HttpRequest, queryset: QuerySet[Account]) -> None:
        for account in queryset:  # one save each, so that cached API-key lookups are dropped
            account.is_active = False
            account.save(update_fields=["is_active", "updated_at"])

    @admin.action(description="Enable selected accounts")
    def enable_accounts(self, request: HttpRequest, queryset: QuerySet[Account]) -> None:
        for account in queryset:
            account.is_active = True
            account.save(update_fields=["is_active", "updated_at"])


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("__str__", "account", "name", "created_at", "revoked_at")
    list_filter = ("account",)
    search_fields = ("prefix", "account__name", "name")
    fields = ("account", "name", "prefix", "created_at", "revoked_at")
    readonly_fields = ("prefix", "created_at", "revoked_at")
    actions = ["revoke_keys"]

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> tuple[str, ...]:
        return (*self.readonly_fields, "account") if obj else self.readonly_fields

    def save_model(self, request: HttpRequest, obj: ApiKey, form: object, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        issued = api_key_issue(account=obj.account, name=obj.name)
        obj.pk = issued.api_key.pk
        obj.prefix = issued.api_key.prefix
        obj.created_at = issued.api_key.created_at
        self.message_user(request, f"New API key — copy it now, it is not stored: {issued.raw_key}", messages.WARNING)

    @admin.action(description="Revoke selected keys")
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for api_key in queryset:
            api_key_revoke(api_key=api_key)


class PushTokenInline(admin.TabularInline):
    model = PushToken
    extra = 0
    fields = ("platform", "token", "active", "created_at", "updated_at")
    readonly_fields = ("created_at", "updated_at")


class PreferenceInline(admin.TabularInline):
    model = Preference
    extra = 0
    fields = ("category", "channel", "subscribed", "updated_at")
    readonly_fields = ("updated_at",)
    verbose_name_plural = "Preferences (without a row: subscribed; verification cannot be turned off)"


class RecipientForm(forms.ModelForm):
    """The API's rules: phones stored E.164, e-mail domains lower-cased, IANA time zones."""

    class Meta:
        model = Recipient
        fields = ("account", "user_id", "phone", "email", "wechat_openid", "wecom_userid", "timezone")

    def clean_phone(self) -> str:
        raw: str = self.cleaned_data["phone"]
        if not raw:
            return ""
        phone = phone_e164(raw)
        if phone is None:
            raise forms.ValidationError("Not a valid phone number (use +<country code><number>).")
        return phone

    def clean_email(self) -> str:
        raw: str = self.cleaned_data["email"]
        return (email_normalized(raw) or raw) if raw else ""

    def clean_timezone(self) -> str:
        name: str = self.cleaned_data["timezone"]
        if name and not timezone_valid(name):
            raise forms.ValidationError("Not an IANA time zone such as Asia/Shanghai.")
        return name


@admin.register(Recipient)
class RecipientAdmin(admin.ModelAdmin):
    form = RecipientForm
    list_display = ("user_id", "account", "masked_phone", "email", "timezone", "updated_at")
    list_filter = ("account",)
    search_fields = ("user_id", "email", "phone", "wechat_openid", "wecom_userid")
    list_select_related = ("account",)
    readonly_fields = ("id", "created_at", "updated_at")
    inlines = [PushTokenInline, PreferenceInline]

    @admin.display(description="phone", ordering="phone")
    def masked_phone(self, obj: Recipient) -> str:
        return phone_masked(obj.phone) if obj.phone else "-"

    def get_readonly_fields(self, request: HttpRequest, obj: Recipient | None = None) -> Any:
        return (*self.readonly_fields, "account", "user_id") if obj else self.readonly_fields
