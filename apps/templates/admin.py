from __future__ import annotations

import copy
import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, JsonResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from apps.templates.models import MessageTemplate
from apps.templates.services import template_check, template_delete, template_render
from apps.templates.sms import sms_length
from messaging_center.errors import ValidationFailed
from messaging_center.vocabulary import Channel

PREVIEW_FIELDS = ("channel", "category", "title", "content", "sms_signature", "sample_params")


def preview(template: MessageTemplate) -> dict[str, Any]:
    """What the admin shows: the text rendered with the sample params, and its SMS length."""
    try:
        template_check(template)
    except ValidationFailed as exc:
        return {"error": exc.detail}
    params = template.sample_params if isinstance(template.sample_params, dict) else {}
    rendered = template_render(template=template, params=params)
    body: dict[str, Any] = {"content": rendered.content, "title": rendered.title, "missing": rendered.missing}
    if template.channel == Channel.SMS:
        body["segments"], body["encoding"] = sms_length(rendered.content, template.sms_signature)
        body["signed"] = f"【{template.sms_signature}】" if template.sms_signature else ""
    return body


class MessageTemplateForm(forms.ModelForm):
    class Meta:
        model = MessageTemplate
        fields = (
            "account",
            "code",
            "name",
            "channel",
            "category",
            "status",
            "title",
            "content",
            "sms_signature",
            "sample_params",
            "priority",
            "ttl",
            "dedup_window",
            "frequency_limits",
            "provider_template_ids",
        )

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        candidate = copy.copy(self.instance)
        for name, value in cleaned.items():
            setattr(candidate, name, value)
        candidate.provider_template_ids = candidate.provider_template_ids or {}
        try:
            template_check(candidate)
        except ValidationFailed as exc:
            for field, field_messages in (exc.errors or {}).items():
                name = field.split(".")[0]
                self.add_error(name if name in self.fields else None, field_messages)
        # The database only checks uniqueness among live templates; say so before it refuses.
        account_id = cleaned["account"].pk if cleaned.get("account") else candidate.account_id
        duplicate = MessageTemplate.objects.filter(account_id=account_id, code=candidate.code, deleted_at__isnull=True)
        if account_id and duplicate.exclude(pk=self.instance.pk).exists():
            self.add_error("code" if "code" in self.fields else None, "This account already has a template with this code.")
        return cleaned

    def save(self, commit: bool = True) -> MessageTemplate:
        template_check(self.instance)  # sets the variables and normalises the signature, as the API does
        return super().save(commit)


class DeletedFilter(admin.SimpleListFilter):
    title = "deleted"
    parameter_name = "deleted"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("no", "Live"), ("yes", "Deleted")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[MessageTemplate]) -> QuerySet[MessageTemplate]:
        if self.value() == "no":
            return queryset.filter(deleted_at__isnull=True)
        if self.value() == "yes":
            return queryset.filter(deleted_at__isnull=False)
        return queryset


@admin.register(MessageTemplate)
class MessageTemplateAdmin(admin.ModelAdmin):
    form = MessageTemplateForm
    list_display = ("code", "name", "account", "channel", "category", "status", "variables", "updated_at", "deleted_at")
    list_filter = ("channel", "category", "status", DeletedFilter, "account")
    search_fields = ("code", "name")
    list_select_related = ("account",)
    readonly_fields = ("id", "variables", "live_preview", "created_at", "updated_at", "deleted_at")
    fieldsets = (
        (None, {"fields": ("account", "code", "name", "channel", "category", "status")}),
        ("Content", {"fields": ("title", "content", "variables", "sms_signature", "sample_params", "live_preview")}),
        (
            "Delivery",
            {"fields": ("priority", "ttl", "dedup_window", "frequency_limits", "provider_template_ids")},
        ),
        ("Record", {"fields": ("id", "created_at", "updated_at", "deleted_at")}),
    )
    actions = ["soft_delete"]

    class Media:
        js = ("message_templates/preview.js",)

    def get_readonly_fields(self, request: HttpRequest, obj: MessageTemplate | None = None) -> Any:
        return (*self.readonly_fields, "account", "code") if obj else self.readonly_fields

    def get_urls(self) -> list[URLPattern]:
        preview_url = path(
            "preview/", self.admin_site.admin_view(self.preview_view), name="message_templates_messagetemplate_preview"
        )
        return [preview_url, *super().get_urls()]

    def preview_view(self, request: HttpRequest) -> JsonResponse:
        """Renders the form as typed (POST of the preview fields) for the live preview box."""
        if request.method != "POST":
            return JsonResponse({"error": "POST the template fields."}, status=405)
        try:
            sample = json.loads(request.POST.get("sample_params") or "{}")
        except json.JSONDecodeError:
            return JsonResponse({"error": "Sample params are not valid JSON."})
        template = MessageTemplate(
            code="preview",
            channel=request.POST.get("channel", ""),
            category=request.POST.get("category", ""),
            title=request.POST.get("title", ""),
            content=request.POST.get("content", ""),
            sms_signature=request.POST.get("sms_signature", ""),
            sample_params=sample,
        )
        return JsonResponse(preview(template))

    @admin.display(description="Preview")
    def live_preview(self, obj: MessageTemplate) -> str:
        state = preview(obj) if obj.content else {"content": ""}
        return format_html(
            '<div id="template-preview" data-url="{}" data-fields="{}">{}</div>',
            reverse("admin:message_templates_messagetemplate_preview"),
            ",".join(PREVIEW_FIELDS),
            _preview_text(state),
        )

    def has_delete_permission(self, request: HttpRequest, obj: MessageTemplate | None = None) -> bool:
        # Messages keep their template: deleting is the soft delete action.
        return False

    @admin.action(description="Delete selected templates (soft: old messages keep them)")
    def soft_delete(self, request: HttpRequest, queryset: QuerySet[MessageTemplate]) -> None:
        live = list(queryset.filter(deleted_at__isnull=True))
        for template in live:
            template_delete(template=template)
        self.message_user(request, f"Deleted {len(live)} template(s).", messages.SUCCESS)


def _preview_text(state: dict[str, Any]) -> str:
    if "error" in state:
        return f"⚠ {state['error']}"
    lines = [state.get("signed", "") + state["content"]]
    if "segments" in state:
        lines.append(f"{state['segments']} segment(s), {state['encoding']}")
    if state.get("missing"):
        lines.append(f"missing sample params: {', '.join(state['missing'])}")
    return "\n".join(lines)
