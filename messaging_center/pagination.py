"""Keyset (cursor) pagination over time-ordered UUIDv7 primary keys (API.md, Conventions).

The cursor is the last row's id, base64url-encoded: opaque to clients, stable while rows are added,
and one index range scan per page however deep the client goes.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from typing import Any, TypeVar

from django.db.models import Model, QuerySet
from rest_framework import serializers

from messaging_center.errors import ValidationFailed

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
_VERSION = b"\x01"

M = TypeVar("M", bound=Model)


class PageInput(serializers.Serializer):
    limit = serializers.IntegerField(min_value=1, max_value=MAX_LIMIT, default=DEFAULT_LIMIT)
    cursor = serializers.CharField(required=False, allow_blank=True, max_length=100)


def cursor_encode(last_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(_VERSION + last_id.bytes).decode().rstrip("=")


def cursor_decode(cursor: str) -> uuid.UUID:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 17 or raw[:1] != _VERSION:
        raise ValidationFailed("The cursor is not one this API returned.", errors={"cursor": ["Invalid cursor."]})
    return uuid.UUID(bytes=raw[1:])


def page_input(query_params: Any) -> tuple[int, uuid.UUID | None]:
    """The page's `limit` and the id its `cursor` stands for (rows older than it come next)."""
    page = PageInput(data=query_params)
    page.is_valid(raise_exception=True)
    cursor = page.validated_data.get("cursor")
    return page.validated_data["limit"], cursor_decode(cursor) if cursor else None


def page_of_rows(rows: list[M], limit: int) -> tuple[list[M], str | None]:
    """`rows` (newest first, up to limit + 1 of them) as a page and the next cursor, or None on the last page."""
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, cursor_encode(rows[-1].pk)
    return rows, None


def keyset_page(queryset: QuerySet[M], query_params: Any) -> tuple[list[M], str | None]:
    """Newest first by `id`; returns (rows, next cursor or None). `query_params` is request.query_params."""
    limit, cursor = page_input(query_params)
    queryset = queryset.order_by("-id")
    if cursor:
        queryset = queryset.filter(id__lt=cursor)
    return page_of_rows(list(queryset[: limit + 1]), limit)
