from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.dispatch import services
from apps.dispatch.contacts import mask_address
from apps.dispatch.models import Message, MessageEvent, Outbox
from messaging_center import ids
from messaging_center.errors import Conflict


class MessageEventInline(admin.TabularInline):
    model = MessageEvent
    extra = 0
    can_delete = False
    ordering = ["id"]
    fields = ("at", "status", "code", "detail", "provider", "attempt")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Message | None = None) -> bool:
        return False


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
    list_filter = ("status", "channel", "priority", "category", "account", "created_at")
    search_fields = ("address", "provider_message_id", "template_code")
    date_hierarchy = "created_at"
    ordering = ["-id"]
    show_full_result_count = False
    list_select_related = ("account",)
    inlines = [MessageEventInline]
    actions = ["cancel_messages", "send_again"]
    readonly_fields = [f.name for f in Message._meta.fields] + ["public_id", "public_batch_id", "masked_address"]
    exclude = ("address",)

    @admin.display(description="to")
    def masked_address(self, message: Message) -> str:
        return mask_address(message.channel, message.address)

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[Message], search_term: str):  # type: ignore[no-untyped-def]
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

    @admin.action(description="Send again (a new message with a fresh TTL)")
    def send_again(self, request: HttpRequest, queryset: QuerySet[Message]) -> None:
        copies = [services.message_send_again(message=m) for m in queryset]
        self.message_user(
            request, f"Queued {len(copies)} new message(s): {', '.join(c.public_id for c in copies[:10])}", messages.INFO
        )


@admin.register(Outbox)
class OutboxAdmin(admin.ModelAdmin):
    list_display = ("id", "lane", "created_at")
    readonly_fields = ("id", "lane", "message_ids", "created_at")
