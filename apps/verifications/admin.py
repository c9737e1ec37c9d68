from __future__ import annotations

from django.contrib import admin

from apps.dispatch.contacts import mask_any
from apps.verifications.models import Verification


@admin.register(Verification)
class VerificationAdmin(admin.ModelAdmin):
    list_display = (
        "created_at",
        "account",
        "masked_address",
        "template_code",
        "state",
        "failed_checks",
        "expires_at",
        "verified_at",
    )
    list_filter = ("state",)
    search_fields = ("address",)
    raw_id_fields = ("account", "message")
    exclude = ("code_hash", "address")
    readonly_fields = ("masked_address",)
    show_full_result_count = False

    @admin.display(description="address")
    def masked_address(self, verification: Verification) -> str:
        return mask_any(verification.address)
