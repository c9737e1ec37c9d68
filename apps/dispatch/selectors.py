"""Read queries: one message with its timeline, search with keyset pagination, the inbox."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from dataclasses import dataclass
from typing import Any

from django.db.models import Q, QuerySet

from apps.accounts.models import Account
from apps.dispatch.models import Message, Status
from messaging_center import ids
from messaging_center.errors import NotFound, ValidationFailed

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


def message_get(*, account: Account, public_id: str) -> Message:
    message_id = ids.decode("msg", public_id)
    message = Message.objects.filter(id=message_id, account=account).first() if message_id else None
    if message is None:
        raise NotFound(f"No message {public_id!r}.")
    return message


@dataclass(frozen=True)
class Page:
    results: list[Message]
    next: str | None


def encode_cursor(last_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(json.dumps({"before": str(last_id)}).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> uuid.UUID:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return uuid.UUID(json.loads(base64.urlsafe_b64decode(padded))["before"])
    except (ValueError, KeyError, TypeError):
        raise ValidationFailed("The cursor is not valid.", errors={"cursor": ["Not a cursor returned by this API."]}) from None


def parse_limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationFailed(
            f"limit must be an integer from 1 to {MAX_LIMIT}.", errors={"limit": [f"Must be 1 to {MAX_LIMIT}."]}
        )
    return limit


def keyset_page(queryset: QuerySet[Message], *, limit: int, cursor: str | None) -> Page:
    if cursor:
        queryset = queryset.filter(id__lt=decode_cursor(cursor))
    rows = list(queryset.order_by("-id")[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, encode_cursor(rows[-1].id) if more and rows else None)


def query_timestamp(name: str, raw: str) -> dt.datetime:
    """An ISO 8601 query parameter with a zone (a `+` that arrived as a space is put back)."""
    try:
        value = dt.datetime.fromisoformat(raw.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise ValidationFailed(f"{name} is not an ISO 8601 timestamp.", errors={name: ["Not an ISO 8601 timestamp."]}) from None
    if value.tzinfo is None:
        raise ValidationFailed(f"{name} needs a zone.", errors={name: ["The timestamp needs a zone."]})
    return value


SEARCH_FILTERS = (
    "status",
    "channel",
    "template",
    "category",
    "batch_id",
    "to",
    "user_id",
    "provider",
    "created_after",
    "created_before",
    "q",
)


def message_search(*, account: Account, params: dict[str, Any]) -> Page:
    queryset = Message.objects.filter(account=account)
    errors: dict[str, list[str]] = {}
    if status := params.get("status"):
        if status not in Status.values:
            errors["status"] = [f"Must be one of {', '.join(Status.values)}."]
        queryset = queryset.filter(status=status)
    for name, column in (
        ("channel", "channel"),
        ("template", "template_code"),
        ("category", "category"),
        ("user_id", "user_id"),
        ("provider", "provider"),
    ):
        if value := params.get(name):
            queryset = queryset.filter(**{column: value})
    if batch := params.get("batch_id"):
        batch_id = ids.decode("bat", batch)
        if batch_id is None:
            errors["batch_id"] = ["Not a batch id."]
        queryset = queryset.filter(batch_id=batch_id)
    if to := params.get("to"):
        queryset = queryset.filter(address=to.strip())
    if after := params.get("created_after"):
        queryset = queryset.filter(id__gte=ids.uuid7_floor(query_timestamp("created_after", after)))
    if before := params.get("created_before"):
        queryset = queryset.filter(id__lt=ids.uuid7_floor(query_timestamp("created_before", before)))
    if q := params.get("q"):
        queryset = queryset.filter(content__contains=q)
    if errors:
        first = next(iter(errors))
        raise ValidationFailed(f"Invalid {first}: {errors[first][0]}", errors=errors)
    return keyset_page(queryset, limit=parse_limit(params.get("limit")), cursor=params.get("cursor"))


def inbox_page(*, account: Account, user_id: str, unread_only: bool, limit: int, cursor: str | None) -> tuple[Page, int]:
    base = Message.objects.filter(account=account, user_id=user_id, channel="inbox", status=Status.DELIVERED)
    unread = base.filter(read_at__isnull=True)
    page = keyset_page(unread if unread_only else base, limit=limit, cursor=cursor)
    return page, unread.count()


def inbox_item(*, account: Account, user_id: str, public_id: str) -> Message:
    message_id = ids.decode("msg", public_id)
    message = (
        Message.objects.filter(
            Q(id=message_id), account=account, user_id=user_id, channel="inbox", status=Status.DELIVERED
        ).first()
        if message_id
        else None
    )
    if message is None:
        raise NotFound(f"No inbox message {public_id!r} for this user.")
    return message
