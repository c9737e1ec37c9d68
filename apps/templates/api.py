from __future__ import annotations

from typing import Any

from django.core.validators import RegexValidator
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
    extend_schema_serializer,
    inline_serializer,
)
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
from messaging_center.schema import AUTHENTICATED, JSON_BODY, error_responses, page_of
from messaging_center.vocabulary import Category, Channel, Priority

MAX_WINDOW_SECONDS = 30 * 86400
SMS_ENCODINGS = ("GSM-7", "UCS-2")  # what templates.sms.sms_length answers


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


@extend_schema_field(FrequencyLimit(many=True))
class FrequencyLimitsField(serializers.ListField):
    """The stored limits as they are, documented as FrequencyLimit objects."""


@extend_schema_serializer(component_name="Template")
class TemplateOutput(serializers.Serializer):
    id = serializers.SerializerMethodField()
    code = serializers.CharField()
    name = serializers.CharField()
    channel = serializers.ChoiceField(choices=Channel.choices)
    category = serializers.ChoiceField(choices=Category.choices)
    title = serializers.CharField()
    content = serializers.CharField()
    variables = serializers.ListField(
        child=serializers.CharField(), help_text="The `{{name}}` placeholders, in order of first appearance."
    )
    sms_signature = serializers.CharField()
    priority = serializers.ChoiceField(
        choices=Priority.choices, source="effective_priority", help_text="The template's own, else its category's default."
    )
    ttl = serializers.IntegerField(source="effective_ttl", help_text="Seconds a message stays worth delivering.")
    dedup_window = serializers.IntegerField(source="effective_dedup_window", help_text="Seconds; 0 = off.")
    frequency_limits = FrequencyLimitsField(source="effective_frequency_limits")
    provider_template_ids = serializers.DictField(
        help_text='Provider kind → that provider\'s approved template id, e.g. `{"aliyun": "SMS_1234"}`.'
    )
    status = serializers.ChoiceField(choices=Status.choices)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    @extend_schema_field(serializers.CharField(help_text="`tpl_…`"))
    def get_id(self, template: MessageTemplate) -> str:
        return ids.encode("tpl", template.id)


CODE = OpenApiParameter("code", location=OpenApiParameter.PATH, description="The template's code, e.g. `order_shipped`.")


@extend_schema(tags=["templates"])
class TemplateListView(APIView):
    @extend_schema_serializer(
        component_name="TemplateCreate",
        description="A new template.",
        examples=[
            OpenApiExample(
                "An SMS template",
                value={
                    "code": "order_shipped",
                    "name": "Order shipped",
                    "channel": "sms",
                    "category": "transactional",
                    "content": "Your order {{order_no}} has shipped.",
                    "sms_signature": "ACME",
                    "ttl": 3600,
                    "priority": "high",
                    "provider_template_ids": {"aliyun": "SMS_1234"},
                },
            )
        ],
    )
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
        operation_id="templates_list",
        summary="List templates",
        description="The account's templates (disabled ones included, deleted ones not), newest first.",
        parameters=[FilterInput, PageInput],
        responses={
            200: page_of("TemplatePage", TemplateOutput(many=True)),
            **error_responses(*AUTHENTICATED, "validation_error"),
        },
    )
    def get(self, request: Request) -> Response:
        filters = self.FilterInput(data=request.query_params)
        filters.is_valid(raise_exception=True)
        queryset = template_list(account_id=request_account(request).id, **filters.validated_data)
        rows, next_cursor = keyset_page(queryset, request.query_params)
        return Response({"results": TemplateOutput(rows, many=True).data, "next": next_cursor})

    @extend_schema(
        operation_id="templates_create",
        summary="Create a template",
        description="A duplicate code is a 400 `validation_error`. A verification template must contain `{{code}}`.",
        request=CreateInput,
        responses={201: TemplateOutput, **error_responses(*AUTHENTICATED, *JSON_BODY)},
    )
    def post(self, request: Request) -> Response:
        data = self.CreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        template = template_create(account=request_account(request), **_changes(data.validated_data))
        return Response(TemplateOutput(template).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=["templates"], parameters=[CODE])
class TemplateDetailView(APIView):
    @extend_schema_serializer(component_name="TemplateUpdate", description="The fields to change.")
    class PatchInput(TemplateFields):
        code = serializers.CharField(required=False, trim_whitespace=False)

        def validate_code(self, value: str) -> str:
            if value != self.context["code"]:
                raise serializers.ValidationError("The code of a template cannot change; create a new template.")
            return value

    @extend_schema(
        operation_id="templates_get",
        summary="Get a template",
        responses={200: TemplateOutput, **error_responses(*AUTHENTICATED, "template_not_found")},
    )
    def get(self, request: Request, code: str) -> Response:
        return Response(TemplateOutput(template_detail(account_id=request_account(request).id, code=code)).data)

    @extend_schema(
        operation_id="templates_update",
        summary="Change a template",
        description="Changes the given fields; the code cannot change. A null `priority`, `ttl`, `dedup_window` or "
        "`frequency_limits` goes back to the category's default.",
        request=PatchInput,
        responses={200: TemplateOutput, **error_responses(*AUTHENTICATED, *JSON_BODY, "template_not_found")},
        examples=[OpenApiExample("Disable", value={"status": "disabled"}, request_only=True)],
    )
    def patch(self, request: Request, code: str) -> Response:
        template = template_detail(account_id=request_account(request).id, code=code)
        data = self.PatchInput(data=request.data, partial=True, context={"code": code})
        data.is_valid(raise_exception=True)
        changes = _changes(data.validated_data)
        changes.pop("code", None)
        template = template_update(template=template, **changes)
        return Response(TemplateOutput(template).data)

    @extend_schema(
        operation_id="templates_delete",
        summary="Delete a template",
        description="Deletes the template: it can no longer be sent with, and its code can be used again.",
        responses={204: None, **error_responses(*AUTHENTICATED, "template_not_found")},
    )
    def delete(self, request: Request, code: str) -> Response:
        template_delete(template=template_detail(account_id=request_account(request).id, code=code))
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(tags=["templates"], parameters=[CODE])
class TemplatePreviewView(APIView):
    @extend_schema_serializer(
        component_name="TemplatePreviewRequest",
        examples=[OpenApiExample("Params", value={"params": {"order_no": "A1"}})],
    )
    class Input(serializers.Serializer):
        params = serializers.DictField(child=serializers.JSONField(allow_null=True), required=False, default=dict)

        def validate_params(self, params: dict[str, Any]) -> dict[str, Any]:
            for name, value in params.items():
                if isinstance(value, (dict, list)):
                    raise serializers.ValidationError(f"{name}: expected a string or number, not {type(value).__name__}.")
            return params

    @extend_schema(
        operation_id="templates_preview",
        summary="Preview a template",
        description="Renders the template with `params`, as a send would; nothing is stored or sent.",
        request=Input,
        responses={
            200: inline_serializer(
                "TemplatePreview",
                {
                    "content": serializers.CharField(),
                    "title": serializers.CharField(required=False, help_text="Templates with a title only."),
                    "segments": serializers.IntegerField(required=False, help_text="SMS only; the signature counts."),
                    "encoding": serializers.ChoiceField(choices=SMS_ENCODINGS, required=False, help_text="SMS only."),
                    "html": serializers.CharField(required=False, help_text="E-mail only; params HTML-escaped."),
                },
            ),
            **error_responses(*AUTHENTICATED, *JSON_BODY, "missing_params", "template_not_found"),
        },
        examples=[
            OpenApiExample(
                "An SMS",
                value={"content": "Your order A1 has shipped.", "segments": 1, "encoding": "GSM-7"},
                response_only=True,
            )
        ],
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
