from __future__ import annotations

from django.contrib import admin

from apps.verifications.models import Verification


@admin.register(Verification)
class VerificationAdmin(admin.ModelAdmin):
    list_display = ("created_at", "account", "address", "template_code", "state", "failed_checks", "expires_at", "verified_at")
    list_filter = ("state",)
    search_fields = ("address",)
    raw_id_fields = ("account", "message")
    exclude = ("code_hash",)
    show_full_result_count = False
