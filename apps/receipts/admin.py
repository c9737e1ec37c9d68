from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from apps.dispatch.contacts import mask_any
from apps.receipts.models import CallbackAttempt, Failover, ProviderReceipt, StatusCallback


@admin.register(ProviderReceipt)
class ProviderReceiptAdmin(admin.ModelAdmin):
    list_display = ("received_at", "provider", "provider_message_id", "status", "code", "source", "message", "matched_at")
    list_filter = ("provider", "status", "source")
    search_fields = ("provider_message_id", "to")
    raw_id_fields = ("message",)
    exclude = ("to",)
    readonly_fields = ("masked_to",)
    show_full_result_count = False

    @admin.display(description="to")
    def masked_to(self, receipt: ProviderReceipt) -> str:
        return mask_any(receipt.to)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: ProviderReceipt | None = None) -> bool:
        return False


class CallbackAttemptInline(admin.TabularInline):
    model = CallbackAttempt
    extra = 0
    can_delete = False
    readonly_fields = ("at", "url", "status_code", "error", "duration_ms")
    ordering = ("at",)

    def has_add_permission(self, request: HttpRequest, obj: StatusCallback | None = None) -> bool:
        return False


@admin.register(StatusCallback)
class StatusCallbackAdmin(admin.ModelAdmin):
    list_display = ("created_at", "account", "message", "status", "state", "attempts", "next_attempt_at", "last_error")
    list_filter = ("state", "status")
    raw_id_fields = ("account", "message")
    readonly_fields = ("account", "message", "status", "body", "attempts", "created_at", "last_error")
    inlines = [CallbackAttemptInline]
    show_full_result_count = False


@admin.register(CallbackAttempt)
class CallbackAttemptAdmin(admin.ModelAdmin):
    list_display = ("at", "callback", "url", "status_code", "error", "duration_ms")
    raw_id_fields = ("callback",)
    show_full_result_count = False


@admin.register(Failover)
class FailoverAdmin(admin.ModelAdmin):
    list_display = ("created_at", "original", "resend", "reason", "failed_provider")
    raw_id_fields = ("original", "resend")
