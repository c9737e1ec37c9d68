"""`/recipients/{user_id}/inbox`: the in-site inbox."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_serializer,
    inline_serializer,
)
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.authentication import request_account
from apps.dispatch import selectors, services
from apps.dispatch.models import Message
from messaging_center.db import bounded_read
from messaging_center.errors import ValidationFailed
from messaging_center.pagination import PageInput
from messaging_center.schema import AUTHENTICATED, USER_ID, error_responses, page_of
from messaging_center.times import api_time


@extend_schema_serializer(component_name="InboxItem")
class InboxItemOutput(serializers.Serializer):  # documents what _inbox_item writes
    id = serializers.CharField(help_text="`msg_…`")
    title = serializers.CharField()
    content = serializers.CharField()
    created_at = serializers.DateTimeField()
    read_at = serializers.DateTimeField(allow_null=True)


def _inbox_item(message: Message) -> dict[str, Any]:
    return {
        "id": message.public_id,
        "title": message.title,
        "content": message.content,
        "created_at": api_time(message.created_at),
        "read_at": api_time(message.read_at),
    }


@extend_schema(tags=["inbox"], parameters=[USER_ID])
class InboxView(APIView):
    @extend_schema(
        operation_id="inbox_list",
        summary="List a user's inbox",
        description="The user's in-site messages, newest first, and how many are unread.",
        parameters=[OpenApiParameter("unread", bool, description="true: only unread messages."), PageInput],
        responses={
            200: page_of(
                "InboxPage",
                InboxItemOutput(many=True),
                unread_count=serializers.IntegerField(help_text="All unread messages of the user, not only this page."),
            ),
            **error_responses(*AUTHENTICATED, "validation_error"),
        },
    )
    def get(self, request: Request, user_id: str) -> Response:
        unread = request.query_params.get("unread", "").lower()
        if unread not in ("", "true", "false", "1", "0"):
            raise ValidationFailed("unread must be true or false.", errors={"unread": ["Must be true or false."]})
        with bounded_read("Retry shortly."):
            page, unread_count = selectors.inbox_page(
                account=request_account(request),
                user_id=user_id,
                unread_only=unread in ("true", "1"),
                params=request.query_params,
            )
        return Response({"results": [_inbox_item(m) for m in page.results], "next": page.next, "unread_count": unread_count})


@extend_schema(
    tags=["inbox"],
    parameters=[USER_ID, OpenApiParameter("message_id", location=OpenApiParameter.PATH, description="`msg_…`")],
)
class InboxReadView(APIView):
    @extend_schema(
        operation_id="inbox_read",
        summary="Mark an inbox message read",
        description="Marks one inbox message read (again: no change) and answers it.",
        request=None,
        responses={200: InboxItemOutput, **error_responses(*AUTHENTICATED, "not_found")},
    )
    def post(self, request: Request, user_id: str, message_id: str) -> Response:
        message = selectors.inbox_item(account=request_account(request), user_id=user_id, public_id=message_id)
        return Response(_inbox_item(services.inbox_mark_read(account=request_account(request), user_id=user_id, message=message)))


@extend_schema(tags=["inbox"], parameters=[USER_ID])
class InboxReadAllView(APIView):
    @extend_schema(
        operation_id="inbox_read_all",
        summary="Mark a user's whole inbox read",
        request=None,
        responses={
            200: inline_serializer(
                "InboxReadAll", {"updated": serializers.IntegerField(help_text="Messages marked read by this request.")}
            ),
            **error_responses(*AUTHENTICATED),
        },
    )
    def post(self, request: Request, user_id: str) -> Response:
        return Response({"updated": services.inbox_mark_all_read(account=request_account(request), user_id=user_id)})
