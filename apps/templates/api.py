from __future__ import annotations

from typing import Any

from django.core.validators import RegexValidator
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.authentication import request_account
from apps.templates.models import MessageTemplate, Status
from apps.templates.selectors import template_detail, template_list
from apps.templates.services import (
    CODE_PATTERN,
    template_create,
    template_delete,
    template_render,
    template_update,
)
from apps.templates.sms import sms_length
from messaging_center import ids
from messaging_center.errors import ServiceError
from messaging_center.pagination import PageInput, keyset_page
from messaging_center.vocabulary import Category, Channel, Priority

MAX_WINDOW_SECONDS = 30 * 86400


class FrequencyLimit(serializers.Serializer):
    limit = serializers.IntegerField(min_value=1, max_value=1_000_000)
    window = serializers.IntegerField(min_value=1, max_value=MAX_WINDOW_SECONDS, help_text="Seconds.")


class TemplateFields(serializers.Serializer):
    """Fields a client may set; PATCH uses them with partial=True."""

    name = serializers.CharField(max_length=200)
    channel = serializers.ChoiceField(choices=Channel.choices)
    category = serializers.ChoiceField(choices=Category.choices)
    content = serializers.CharField(max_length=20_000, trim_whitespace=False)
    title = serializers.CharField(max_length=200, required=False, allow_blank=True)
    sms_signature = serializers.CharField(max_length=32, required=False, allow_blank=True)
    priority = serializers.ChoiceField(choices=Priority.choices, required=False, allow_null=True)
    ttl = serializers.IntegerField(min_value=1, max_value=MAX_WINDOW_SECONDS, required=False, allow_null=True)
    dedup_window = serializers.IntegerField(min_value=0, max_value=MAX_WINDOW_SECONDS, required=False, allow_null=True)
    frequency_limits = FrequencyLimit(many=True, required=False, allow_null=True)
    provider_template_ids = serializers.DictField(required=False)
    status = serializers.ChoiceField(choices=Status.choices, required=False)


def _changes(validated: dict[str, Any]) -> dict[str, Any]:
    """Serializer output → model values: null priority means the category default, stored as ''."""
    changes = dict(validated)
    if "priority" in changes and changes["priority"] is None:
        changes["priority"] = ""
    if changes.get("frequency_limits") is not None:
        changes["frequency_limits"] = [dict(limit) for limit in changes["frequency_limits"]]
    return changes


class TemplateOutput(serializers.Serializer):
    id = serializers.SerializerMethodField()
    code = serializers.CharField()
    name = serializers.CharField()
    channel = serializers.CharField()
    category = serializers.CharField()
    title = serializers.CharField()
    content = serializers.CharField()
    variables = serializers.ListField(child=serializers.CharField())
    sms_signature = serializers.CharField()
    priority = serializers.CharField(source="effective_priority")
    ttl = serializers.IntegerField(source="effective_ttl")
    dedup_window = serializers.IntegerField(source="effective_dedup_window")
    frequency_limits = serializers.ListField(source="effective_frequency_limits")
    provider_template_ids = serializers.DictField()
    status = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    def get_id(self, template: MessageTemplate) -> str:
        return ids.encode("tpl", template.id)


class TemplateListView(APIView):
    class CreateInput(TemplateFields):
        code = serializers.CharField(
            max_length=64,
            trim_whitespace=False,
            validators=[
                RegexValidator(CODE_PATTERN, "Use letters, digits, '_', '-' or '.', starting with a letter or digit; no spaces.")
            ],
        )

    class FilterInput(serializers.Serializer):
        channel = serializers.ChoiceField(choices=Channel.choices, required=False)
        category = serializers.ChoiceField(choices=Category.choices, required=False)
        status = serializers.ChoiceField(choices=Status.choices, required=False)

    @extend_schema(
        operation_id="v1_templates_list",
        parameters=[FilterInput, PageInput],
        responses=inline_serializer(
            "TemplatePage", {"results": TemplateOutput(many=True), "next": serializers.CharField(allow_null=True)}
        ),
    )
    def get(self, request: Request) -> Response:
        filters = self.FilterInput(data=request.query_params)
        filters.is_valid(raise_exception=True)
        queryset = template_list(account_id=request_account(request).id, **filters.validated_data)
        rows, next_cursor = keyset_page(queryset, request.query_params)
        return Response({"results": TemplateOutput(rows, many=True).data, "next": next_cursor})

    @extend_schema(request=CreateInput, responses={201: TemplateOutput})
    def post(self, request: Request) -> Response:
        data = self.CreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        template = template_create(account=request_account(request), **_changes(data.validated_data))
        return Response(TemplateOutput(template).data, status=status.HTTP_201_CREATED)


class TemplateDetailView(APIView):
    class PatchInput(TemplateFields):
        code = serializers.CharField(required=False, trim_whitespace=False)

        def validate_code(self, value: str) -> str:
            if value != self.context["code"]:
                raise serializers.ValidationError("The code of a template cannot change; create a new template.")
            return value

    @extend_schema(responses=TemplateOutput)
    def get(self, request: Request, code: str) -> Response:
        return Response(TemplateOutput(template_detail(account_id=request_account(request).id, code=code)).data)

    @extend_schema(request=PatchInput, responses=TemplateOutput)
    def patch(self, request: Request, code: str) -> Response:
        template = template_detail(account_id=request_account(request).id, code=code)
        data = self.PatchInput(data=request.data, partial=True, context={"code": code})
        data.is_valid(raise_exception=True)
        changes = _changes(data.validated_data)
        changes.pop("code", None)
        template = template_update(template=template, **changes)
        return Response(TemplateOutput(template).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, code: str) -> Response:
        template_delete(template=template_detail(account_id=request_account(request).id, code=code))
        return Response(status=status.HTTP_204_NO_CONTENT)


class TemplatePreviewView(APIView):
    class Input(serializers.Serializer):
        params = serializers.DictField(child=serializers.JSONField(allow_null=True), required=False, default=dict)

        def validate_params(self, params: dict[str, Any]) -> dict[str, Any]:
            for name, value in params.items():
                if isinstance(value, (dict, list)):
                    raise serializers.ValidationError(f"{name}: expected a string or number, not {type(value).__name__}.")
            return params

    @extend_schema(
        request=Input,
        responses=inline_serializer(
            "TemplatePreview",
            {
                "content": serializers.CharField(),
                "title": serializers.CharField(required=False),
                "segments": serializers.IntegerField(required=False, help_text="SMS only; the signature counts."),
                "encoding": serializers.ChoiceField(choices=["GSM-7", "UCS-2"], required=False),
                "html": serializers.CharField(required=False, help_text="E-mail only; params HTML-escaped."),
            },
        ),
    )
    def post(self, request: Request, code: str) -> Response:
        template = template_detail(account_id=request_account(request).id, code=code)
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        rendered = template_render(template=template, params=data.validated_data["params"])
        if rendered.missing:
            raise ServiceError(
                f"Missing params: {', '.join(rendered.missing)}.",
                code="missing_params",
                errors={f"params.{name}": ["Required by the template."] for name in rendered.missing},
            )
        body: dict[str, Any] = {"content": rendered.content}
        if template.title:
            body["title"] = rendered.title
        if template.channel == Channel.SMS:
            body["segments"], body["encoding"] = sms_length(rendered.content, template.sms_signature)
        if rendered.html is not None:
            body["html"] = rendered.html
        return Response(body)
