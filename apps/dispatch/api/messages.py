"""`/messages`: send, search, one message with its timeline, cancel. Thin DRF views; the
serializers here only describe the bodies for the schema (the views write them themselves)."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
    extend_schema_serializer,
)
from rest_framework import exceptions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.authentication import request_account
from apps.dispatch import selectors, services
from apps.dispatch.accept.request import MAX_RECIPIENTS, MAX_TTL_SECONDS
from apps.dispatch.models import Message, MessageEvent, Status
from messaging_center.db import bounded_read
from messaging_center.errors import DATABASE_DOWN, NotFound, ServiceError, ValidationFailed
from messaging_center.pagination import PageInput
from messaging_center.schema import AUTHENTICATED, JSON_BODY, OneOrMany, error_responses, page_of
from messaging_center.times import api_time
from messaging_center.vocabulary import Category, Channel, Priority

MAX_IDEMPOTENCY_KEY = 255
# The statuses a send answers for each entry (API.md, Sending).
SEND_OUTCOMES = (Status.QUEUED, Status.SCHEDULED, Status.SUPPRESSED, Status.REJECTED)


@extend_schema_serializer(component_name="MessageTo")
class MessageToOutput(serializers.Serializer):
    """The address on the message's channel, and the user it was resolved from."""

    phone = serializers.CharField(required=False, help_text="sms, E.164.")
    email = serializers.CharField(required=False)
    wechat_openid = serializers.CharField(required=False)
    wecom_userid = serializers.CharField(required=False)
    push_token = serializers.CharField(required=False)
    user_id = serializers.CharField(required=False, help_text="Present when the entry was addressed by user_id.")


# The fields document the body; to_representation writes it directly (a page holds up to 500 of them).
@extend_schema_serializer(component_name="MessageSummary", description="A message as searches list it (no events).")
class MessageOutput(serializers.Serializer):
    id = serializers.CharField(help_text="`msg_…`")
    batch_id = serializers.CharField(help_text="`bat_…`: the send request that made it.")
    template = serializers.CharField(help_text="The template's code.")
    channel = serializers.ChoiceField(choices=Channel.choices)
    category = serializers.ChoiceField(choices=Category.choices)
    priority = serializers.ChoiceField(choices=Priority.choices)
    to = MessageToOutput()
    content = serializers.CharField(help_text="The rendered text; a verification code is masked.")
    title = serializers.CharField(allow_null=True)
    status = serializers.ChoiceField(choices=Status.choices)
    code = serializers.CharField(allow_null=True, help_text="Why it ended so, e.g. `opted_out`, `invalid_address`.")
    detail = serializers.CharField(allow_null=True)
    provider = serializers.CharField(allow_null=True, help_text="The provider of the latest attempt.")
    provider_message_id = serializers.CharField(allow_null=True)
    attempts = serializers.IntegerField()
    segments = serializers.IntegerField(allow_null=True, help_text="SMS only: billed segments.")
    created_at = serializers.DateTimeField()
    scheduled_at = serializers.DateTimeField(allow_null=True)
    sent_at = serializers.DateTimeField(allow_null=True, help_text="When a provider accepted it.")
    delivered_at = serializers.DateTimeField(allow_null=True)
    expires_at = serializers.DateTimeField(help_text="Not delivered by then: `expired`.")

    def to_representation(self, message: Message) -> dict[str, Any]:
        return {
            "id": message.public_id,
            "batch_id": message.public_batch_id,
            "template": message.template_code,
            "channel": message.channel,
            "category": message.category,
            "priority": message.priority,
            "to": _to(message),
            "content": message.content,
            "title": message.title or None,
            "status": message.status,
            "code": message.code or None,
            "detail": message.detail or None,
            "provider": message.provider or None,
            "provider_message_id": message.provider_message_id or None,
            "attempts": message.attempts,
            "segments": message.segments,
            "created_at": api_time(message.created_at),
            "scheduled_at": api_time(message.scheduled_at),
            "sent_at": api_time(message.sent_at),
            "delivered_at": api_time(message.delivered_at),
            "expires_at": api_time(message.expires_at),
        }


_ADDRESS_KEY = {
    "sms": "phone",
    "email": "email",
    "wechat": "wechat_openid",
    "wecom": "wecom_userid",
    "push": "push_token",
    "inbox": "user_id",
}


def _to(message: Message) -> dict[str, str]:
    if message.user_id and message.address == message.user_id:  # inbox, and push fanned out to the user's devices
        return {"user_id": message.user_id}
    to = {_ADDRESS_KEY.get(message.channel, "address"): message.address}
    return to | ({"user_id": message.user_id} if message.user_id else {})


@extend_schema_serializer(component_name="MessageEvent")
class MessageEventOutput(serializers.Serializer):
    status = serializers.CharField(
        help_text="A message status, or a timeline event without one (e.g. `receipt_timeout`, `failover`, `late_answer`)."
    )
    at = serializers.DateTimeField()
    detail = serializers.CharField(allow_null=True)
    code = serializers.CharField(allow_null=True)
    provider = serializers.CharField(allow_null=True)
    attempt = serializers.IntegerField(allow_null=True)


# Written by message_body(with_events=True).
@extend_schema_serializer(component_name="Message", description="A message with its timeline.")
class MessageDetailOutput(MessageOutput):
    events = MessageEventOutput(many=True, help_text="Every transition and delivery attempt, oldest first.")


def message_body(message: Message, *, with_events: bool, events: list[MessageEvent] | None = None) -> dict[str, Any]:
    body = MessageOutput(message).data
    if with_events:
        body["events"] = [
            {
                "status": e.status,
                "at": api_time(e.at),
                "detail": e.detail or None,
                "code": e.code or None,
                "provider": e.provider or None,
                "attempt": e.attempt,
            }
            for e in selectors.message_timeline(message, events)
        ]
    return body


def _idempotency_key(request: Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 0 < len(key) <= MAX_IDEMPOTENCY_KEY:
        raise ValidationFailed(
            "Idempotency-Key must be 1 to 255 characters.", errors={"Idempotency-Key": ["Must be 1 to 255 characters."]}
        )
    if key is not None and "\x00" in key:
        raise ValidationFailed(
            "Idempotency-Key must not contain NUL characters.", errors={"Idempotency-Key": ["Contains a NUL character."]}
        )
    return key


@extend_schema_field(
    {"type": "object", "additionalProperties": {"oneOf": [{"type": "string"}, {"type": "number"}]}, "example": {"order_no": "A1"}}
)
class TemplateParams(serializers.DictField):
    """Template variable → value (a string or a number)."""


@extend_schema_serializer(component_name="SendEntry")
class SendEntry(serializers.Serializer):
    """One recipient: an address on the template's channel, or a user_id resolved through the recipient record."""

    phone = serializers.CharField(required=False, help_text="sms: E.164, or national in the default region.")
    email = serializers.CharField(required=False)
    wechat_openid = serializers.CharField(required=False)
    wecom_userid = serializers.CharField(required=False)
    push_token = serializers.CharField(required=False)
    user_id = serializers.CharField(required=False, max_length=255, help_text="Required for the inbox channel.")
    params = TemplateParams(required=False, help_text="Override the shared params for this entry.")


@extend_schema_serializer(component_name="SendOutcome")
class SendOutcome(serializers.Serializer):
    id = serializers.CharField(help_text="`msg_…`")
    status = serializers.ChoiceField(choices=SEND_OUTCOMES)
    code = serializers.CharField(
        required=False,
        help_text="suppressed: `opted_out`, `duplicate`; rejected: `invalid_address`, `missing_params`, `frequency_limited`.",
    )
    detail = serializers.CharField(required=False)
    scheduled_at = serializers.DateTimeField(required=False, help_text="scheduled: when it will be sent.")


@extend_schema_serializer(component_name="SendResult")
class SendResult(serializers.Serializer):
    batch_id = serializers.CharField(help_text="`bat_…`")
    accepted = serializers.IntegerField(help_text="Entries queued or scheduled.")
    rejected = serializers.IntegerField(help_text="Entries suppressed or rejected.")
    messages = SendOutcome(many=True, help_text="One per entry, in request order.")


IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    type={"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY},
    location=OpenApiParameter.HEADER,
    description="Repeating a request with the same key within 24 h returns the first response and sends nothing "
    "again; the same key with a different body is a 409 `idempotency_conflict`.",
)

_TIMESTAMP = "ISO 8601 with a zone, e.g. `2026-11-24T09:00:00+08:00`."
SEARCH_PARAMETERS: list[OpenApiParameter | type[serializers.Serializer]] = [
    OpenApiParameter("status", enum=Status.values, description="The message's status."),
    OpenApiParameter("channel", enum=Channel.values),
    OpenApiParameter("template", description="A template code."),
    OpenApiParameter("category", enum=Category.values),
    OpenApiParameter("batch_id", description="`bat_…`: the messages of one send request."),
    OpenApiParameter("to", description="An exact address, on any channel (a phone in E.164)."),
    OpenApiParameter("user_id"),
    OpenApiParameter("provider", description="The provider of the latest attempt."),
    OpenApiParameter("created_after", OpenApiTypes.DATETIME, description=f"Inclusive. {_TIMESTAMP}"),
    OpenApiParameter("created_before", OpenApiTypes.DATETIME, description=f"Exclusive. {_TIMESTAMP}"),
    OpenApiParameter(
        "q",
        description="A substring of the rendered content (Chinese and Latin text alike). A search with q covers at "
        "most 31 days: without created_after, the 7 days before created_before (or now); a wider window is a 400 "
        "`validation_error` naming created_after.",
    ),
    PageInput,
]
RETRY_SHORTLY = "Retry shortly."
MESSAGE_ID = OpenApiParameter("message_id", location=OpenApiParameter.PATH, description="`msg_…`")


@extend_schema(tags=["messages"])
class MessageListCreateView(APIView):
    @extend_schema_serializer(
        component_name="SendRequest",
        examples=[
            OpenApiExample(
                "Two recipients",
                value={
                    "template": "order_shipped",
                    "to": [{"phone": "+8613800138000", "params": {"order_no": "A1"}}, {"user_id": "u42"}],
                    "params": {"order_no": "A0"},
                    "priority": "high",
                    "send_at": "2026-11-24T09:00:00+08:00",
                    "ttl": 600,
                },
            ),
            OpenApiExample("One recipient", value={"template": "order_shipped", "to": {"phone": "+8613800138000"}}),
        ],
    )
    # Documents the body that accept/request.parse_request checks; it is not run (the accept path
    # checks 1,000 entries faster by hand).
    class SendInput(serializers.Serializer):
        template = serializers.CharField(help_text="The template's code.")
        to = OneOrMany(child=SendEntry(), max_length=MAX_RECIPIENTS, help_text=f"One entry or a list of 1 to {MAX_RECIPIENTS}.")
        params = TemplateParams(required=False, help_text="Shared template params; an entry's own override them.")
        priority = serializers.ChoiceField(
            choices=Priority.choices, required=False, help_text="Default: the template's priority."
        )
        send_at = serializers.DateTimeField(
            required=False,
            help_text=f"Send later: at most 5 minutes in the past, at most 30 days ahead. {_TIMESTAMP}",
        )
        ttl = serializers.IntegerField(
            min_value=1, max_value=MAX_TTL_SECONDS, required=False, help_text="Seconds; default: the template's."
        )

    def get_throttles(self) -> list[Any]:
        # A send takes its request-rate token in the same Redis call as its limits (apps/dispatch/accept).
        return [] if self.request.method == "POST" else super().get_throttles()

    @extend_schema(
        operation_id="messages_send",
        summary="Send messages",
        description="Request-level faults are 4xx and nothing is stored or sent. Otherwise 202: every entry gets "
        "an id and an outcome, in request order; suppressed and rejected entries are stored too.",
        request=SendInput,
        parameters=[IDEMPOTENCY_KEY],
        responses={
            202: SendResult,
            **error_responses(
                *AUTHENTICATED,
                *JSON_BODY,
                "too_many_recipients",
                "missing_params",
                "template_not_found",
                "idempotency_conflict",
                "quota_exceeded",
                "unavailable",
            ),
        },
        examples=[
            OpenApiExample(
                "One queued, one rejected",
                value={
                    "batch_id": "bat_0692a5c4e1d27c4f8000b3f0a1e2d3c4",
                    "accepted": 1,
                    "rejected": 1,
                    "messages": [
                        {"id": "msg_0692a5c4e1d37e1a8000c1d2e3f4a5b6", "status": "queued"},
                        {
                            "id": "msg_0692a5c4e1d37e1a8001d2e3f4a5b6c7",
                            "status": "rejected",
                            "code": "invalid_address",
                            "detail": "'+86138' is not a valid phone number.",
                        },
                    ],
                },
                response_only=True,
                status_codes=[202],
            )
        ],
    )
    def post(self, request: Request) -> HttpResponse:
        try:
            key = _idempotency_key(request)
            data = request.data
        except (ServiceError, exceptions.APIException):
            services.take_request_token(request_account(request))  # an unreadable request is throttled too
            raise
        result = services.message_send(account=request_account(request), data=data, idempotency_key=key, throttle=True)
        return HttpResponse(result.body, status=result.status_code, content_type="application/json")

    @extend_schema(
        operation_id="messages_list",
        summary="Search messages",
        description="Searches the account's messages; filters combine with AND. Newest first. A search with `q` "
        "covers at most 31 days (default: the last 7 days); the other filters cover the account's retained history. "
        "A search that runs past the time limit answers 503 `unavailable`: narrow it.",
        parameters=SEARCH_PARAMETERS,
        responses={
            200: page_of("MessagePage", MessageOutput(many=True)),
            **error_responses(*AUTHENTICATED, "validation_error"),
        },
    )
    def get(self, request: Request) -> Response:
        with bounded_read():
            page = selectors.message_search(account=request_account(request), params=request.query_params.dict())
        return Response({"results": [message_body(m, with_events=False) for m in page.results], "next": page.next})


@extend_schema(tags=["messages"], parameters=[MESSAGE_ID])
class MessageDetailView(APIView):
    @extend_schema(
        operation_id="messages_get",
        summary="Get a message and its timeline",
        responses={200: MessageDetailOutput, **error_responses(*AUTHENTICATED, "not_found")},
    )
    def get(self, request: Request, message_id: str) -> Response:
        account = request_account(request)
        try:
            with bounded_read(RETRY_SHORTLY):
                message = selectors.message_get(account=account, public_id=message_id)
                body = message_body(message, with_events=True)
        except (NotFound, *DATABASE_DOWN):
            # Accepted during a database outage: in the spool until the replay stores it.
            spooled = selectors.message_spooled(account=account, public_id=message_id)
            if spooled is None:
                raise
            body = message_body(spooled.message, with_events=True, events=spooled.events)
        return Response(body)


@extend_schema(tags=["messages"], parameters=[MESSAGE_ID])
class MessageCancelView(APIView):
    @extend_schema(
        operation_id="messages_cancel",
        summary="Cancel a message",
        description="Cancels a `scheduled` or `queued` message; once a provider may have it, 409 `not_cancelable`.",
        request=None,
        responses={200: MessageDetailOutput, **error_responses(*AUTHENTICATED, "not_found", "not_cancelable")},
    )
    def post(self, request: Request, message_id: str) -> Response:
        message = selectors.message_get(account=request_account(request), public_id=message_id)
        return Response(message_body(services.message_cancel(message=message), with_events=True))
