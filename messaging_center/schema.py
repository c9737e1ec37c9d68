"""What the OpenAPI schema says that no single view can (API.md, Conventions): the error body and which
status answers which code, `Retry-After` on 429, cursor pages, and a body field that takes one
object or a list of them. Views name their error codes with `error_responses(...)` in `@extend_schema`.

`manage.py spectacular --validate --fail-on-warn` (in `make lint`) keeps the schema whole."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema_serializer,
    inline_serializer,
)
from rest_framework import serializers


@extend_schema_serializer(component_name="Error")
class ErrorBody(serializers.Serializer):
    """Every error of the API has this body; branch on `code`, show `detail`."""

    code = serializers.CharField(help_text="Stable snake_case code (API.md, Conventions), e.g. `template_not_found`.")
    detail = serializers.CharField(help_text="A human sentence saying what went wrong.")

    def get_fields(self) -> dict[str, serializers.Field]:
        # `errors` is the name of Serializer.errors too, so it is added here instead of declared.
        errors = serializers.DictField(
            child=serializers.ListField(child=serializers.CharField()),
            required=False,
            help_text="Validation errors only: field (a dotted path such as `to[0].phone`) → messages.",
        )
        return {**super().get_fields(), "errors": errors}


# code → (status, when it is answered, an example detail). The contract's codes, then the refusals that
# only `POST /verifications` answers (apps/verifications/services.REFUSALS).
ERROR_CODES: dict[str, tuple[int, str, str]] = {
    "validation_error": (
        400,
        "malformed JSON, wrong types, an unknown enum value or a bad field (`errors` names the fields)",
        "Invalid ttl: Must be an integer number of seconds from 1 to 604800.",
    ),
    "too_many_recipients": (400, "more than 1000 recipients in one send", "At most 1000 recipients per request; got 1200."),
    "missing_params": (
        400,
        "template variables that neither the shared `params` nor every entry supplies",
        "Missing params: order_no.",
    ),
    "not_authenticated": (
        401,
        "no API key, an unknown one or a revoked one (`WWW-Authenticate: Bearer`)",
        "Unknown API key.",
    ),
    "account_disabled": (403, "the account is disabled by an operator", "This account is disabled by an operator."),
    "not_found": (404, "an unknown object, or another account's", "Not found."),
    "template_not_found": (
        404,
        "an unknown, deleted, disabled or foreign template code",
        "No template with code 'order_shipped'.",
    ),
    "idempotency_conflict": (
        409,
        "the same `Idempotency-Key` with a different body (or while its first request is still running)",
        "This Idempotency-Key was used with a different body.",
    ),
    "not_cancelable": (
        409,
        "the message was already handed to a provider",
        "The message is sent; only scheduled or queued messages can be canceled.",
    ),
    "payload_too_large": (413, "the body is over 5 MiB", "The request body is over 5 MiB."),
    "unsupported_media_type": (415, "the body is not JSON", 'Unsupported media type "text/plain" in request.'),
    "verification_not_sent": (
        422,
        "the code was not sent for a reason other than the limits above",
        "The code was not sent.",
    ),
    "rate_limited": (
        429,
        "over the account's request rate; retry after `Retry-After` seconds",
        "Request was throttled: over the account's request rate. Retry in 1 s.",
    ),
    "quota_exceeded": (
        429,
        "the account's daily message quota is used up; `Retry-After` runs to midnight in the account's time zone",
        "The daily quota of 10000 messages is used up (0 left); nothing was sent.",
    ),
    "frequency_limited": (
        429,
        "the address reached a frequency limit of the template's category",
        "Too many verification messages to this address.",
    ),
    "duplicate": (
        429,
        "the same code went to this address within the template's dedup window",
        "The same content went to this address within the dedup window.",
    ),
    "unavailable": (
        503,
        "a dependency (the database, Redis) is down and the request could not be served safely: nothing was "
        "stored or sent; or a read ran past its time limit (narrow the search); retry after `Retry-After` seconds",
        "Limits cannot be checked right now (Redis is down); nothing was sent.",
    ),
}

# Answered by every operation that takes an API key (the throttle applies to all of them, and each
# needs the database).
AUTHENTICATED = ("not_authenticated", "account_disabled", "rate_limited", "unavailable")
# Answered by every operation that reads a JSON body.
JSON_BODY = ("validation_error", "payload_too_large", "unsupported_media_type")

_EXAMPLE_ERRORS = {"validation_error": {"ttl": ["Must be an integer number of seconds from 1 to 604800."]}}


def error_responses(*codes: str) -> dict[int, OpenApiResponse]:
    """`@extend_schema(responses=...)` entries for these error codes, grouped by status: the Error body,
    a description naming each code and when it is answered, and one example per code."""
    by_status: dict[int, list[str]] = {}
    for code in dict.fromkeys(codes):
        by_status.setdefault(ERROR_CODES[code][0], []).append(code)
    return {
        status: OpenApiResponse(
            response=ErrorBody,
            description="; ".join(f"`{code}`: {ERROR_CODES[code][1]}" for code in group) + ".",
            examples=[
                OpenApiExample(
                    code,
                    value={"code": code, "detail": ERROR_CODES[code][2]}
                    | ({"errors": _EXAMPLE_ERRORS[code]} if code in _EXAMPLE_ERRORS else {}),
                    response_only=True,
                    status_codes=[status],
                )
                for code in group
            ],
        )
        for status, group in sorted(by_status.items())
    }


USER_ID = OpenApiParameter("user_id", location=OpenApiParameter.PATH, description="The business system's own id of the user.")

RETRY_AFTER = OpenApiParameter(
    "Retry-After",
    type=int,
    location=OpenApiParameter.HEADER,
    response=[429, 503],
    description="Seconds to wait before trying again; set with `rate_limited`, `quota_exceeded` and `unavailable`.",
)


class ApiSchema(AutoSchema):
    """The project's AutoSchema: every 429 and 503 response documents `Retry-After`."""

    def get_override_parameters(self) -> list[Any]:
        return [*super().get_override_parameters(), RETRY_AFTER]


def page_of(name: str, item: serializers.BaseSerializer, **extra: serializers.Field) -> serializers.Serializer:
    """A cursor page (API.md, Conventions): `{"results": [...], "next": "<cursor or null>", ...extra}`."""
    return inline_serializer(
        name,
        {
            "results": item,
            "next": serializers.CharField(
                allow_null=True, help_text="Pass as `cursor` for the next page; null on the last page."
            ),
            **extra,
        },
    )


class OneOrMany(serializers.Field):
    """A body field that takes one `child` object or a list of 1 to `max_length` of them. It documents
    a body that the view parses itself (the send path); it is never run as a serializer field."""

    def __init__(self, *, child: serializers.Serializer, max_length: int, **kwargs: Any) -> None:
        self.child = child
        self.max_length = max_length
        super().__init__(**kwargs)


class OneOrManyExtension(OpenApiSerializerFieldExtension):
    target_class = OneOrMany

    def map_serializer_field(self, auto_schema: AutoSchema, direction: Any) -> dict[str, Any]:
        field: OneOrMany = self.target
        component: ResolvedComponent = auto_schema.resolve_serializer(field.child, direction)
        return {
            "oneOf": [
                component.ref,
                {"type": "array", "items": component.ref, "minItems": 1, "maxItems": field.max_length},
            ]
        }
