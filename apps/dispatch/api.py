from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from rest_framework import exceptions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.authentication import request_account
from apps.dispatch import selectors, services, stats
from apps.dispatch.models import Message
from messaging_center.errors import ServiceError, ValidationFailed

MAX_IDEMPOTENCY_KEY = 255


class MessageOutput(serializers.Serializer):
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
            "created_at": _iso(message.created_at),
            "scheduled_at": _iso(message.scheduled_at),
            "sent_at": _iso(message.sent_at),
            "delivered_at": _iso(message.delivered_at),
            "expires_at": _iso(message.expires_at),
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


def _iso(value: Any) -> str | None:
    return value.isoformat() if value else None


def message_body(message: Message, *, with_events: bool) -> dict[str, Any]:
    body = MessageOutput(message).data
    if with_events:
        body["events"] = [
            {
                "status": e.status,
                "at": _iso(e.at),
                "detail": e.detail or None,
                "code": e.code or None,
                "provider": e.provider or None,
                "attempt": e.attempt,
            }
            for e in selectors.message_timeline(message)
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


class MessageListCreateView(APIView):
    def get_throttles(self) -> list[Any]:
        # A send takes its request-rate token in the same Redis call as its limits (apps/dispatch/accept).
        return [] if self.request.method == "POST" else super().get_throttles()

    def post(self, request: Request) -> HttpResponse:
        try:
            key = _idempotency_key(request)
            data = request.data
        except (ServiceError, exceptions.APIException):
            services.take_request_token(request_account(request))  # an unreadable request is throttled too
            raise
        result = services.message_send(account=request_account(request), data=data, idempotency_key=key, throttle=True)
        return HttpResponse(result.body, status=result.status_code, content_type="application/json")

    def get(self, request: Request) -> Response:
        page = selectors.message_search(account=request_account(request), params=request.query_params.dict())
        return Response({"results": [message_body(m, with_events=False) for m in page.results], "next": page.next})


class MessageDetailView(APIView):
    def get(self, request: Request, message_id: str) -> Response:
        message = selectors.message_get(account=request_account(request), public_id=message_id)
        return Response(message_body(message, with_events=True))


class MessageCancelView(APIView):
    def post(self, request: Request, message_id: str) -> Response:
        message = selectors.message_get(account=request_account(request), public_id=message_id)
        return Response(message_body(services.message_cancel(message=message), with_events=True))


def _inbox_item(message: Message) -> dict[str, Any]:
    return {
        "id": message.public_id,
        "title": message.title,
        "content": message.content,
        "created_at": _iso(message.created_at),
        "read_at": _iso(message.read_at),
    }


class InboxView(APIView):
    def get(self, request: Request, user_id: str) -> Response:
        unread = request.query_params.get("unread", "").lower()
        if unread not in ("", "true", "false", "1", "0"):
            raise ValidationFailed("unread must be true or false.", errors={"unread": ["Must be true or false."]})
        page, unread_count = selectors.inbox_page(
            account=request_account(request),
            user_id=user_id,
            unread_only=unread in ("true", "1"),
            params=request.query_params,
        )
        return Response({"results": [_inbox_item(m) for m in page.results], "next": page.next, "unread_count": unread_count})


class InboxReadView(APIView):
    def post(self, request: Request, user_id: str, message_id: str) -> Response:
        message = selectors.inbox_item(account=request_account(request), user_id=user_id, public_id=message_id)
        return Response(_inbox_item(services.inbox_mark_read(account=request_account(request), user_id=user_id, message=message)))


class InboxReadAllView(APIView):
    def post(self, request: Request, user_id: str) -> Response:
        return Response({"updated": services.inbox_mark_all_read(account=request_account(request), user_id=user_id)})


class StatsView(APIView):
    def get(self, request: Request) -> Response:
        return Response({"groups": stats.stats_get(account=request_account(request), params=request.query_params.dict())})
