"""Read queries: one message with its timeline, search with keyset pagination, the inbox."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import Q, QuerySet, Value
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from apps.accounts.models import Account
from apps.dispatch.accept.rows import MESSAGE_COLUMNS
from apps.dispatch.leases import lease_start
from apps.dispatch.models import (
    GRAM_INDEXED_STATUSES,
    UNSETTLED_STATUSES,
    ContentGrams,
    Message,
    MessageEvent,
    Status,
)
from apps.dispatch.spool import store as spool_store
from messaging_center import ids
from messaging_center.errors import NotFound, ValidationFailed
from messaging_center.pagination import keyset_page, page_input, page_of_rows


def message_get(*, account: Account, public_id: str) -> Message:
    message_id = ids.decode("msg", public_id)
    message = Message.objects.filter(id=message_id, account=account).first() if message_id else None
    if message is None:
        raise NotFound(f"No message {public_id!r}.")
    return message


@dataclass(frozen=True)
class SpooledMessage:
    message: Message  # not in the database (yet)
    events: list[MessageEvent]


_TIMES = ("created_at", "scheduled_at", "expires_at", "sent_at", "lease_until")


def message_spooled(*, account: Account, public_id: str) -> SpooledMessage | None:
    """The message as the spool holds it (accepted during a database outage, not yet replayed)."""
    message_id = ids.decode("msg", public_id)
    spooled = spool_store.get(message_id.hex) if message_id else None
    if spooled is None or spooled.data["row"]["account_id"] != str(account.id):
        return None
    row = spooled.row()
    values: dict[str, Any] = {name: row[name] for name in (*MESSAGE_COLUMNS.split(", "), "sent_at")}
    values |= {name: parse_datetime(row[name]) if row[name] else None for name in _TIMES}
    values |= {"id": message_id, "batch_id": uuid.UUID(row["batch_id"]), "account": account}
    values["segments"] = int(row["segments"]) if row["segments"] else None
    del values["account_id"]
    message = Message(**values)
    events = [
        MessageEvent(
            id=uuid.UUID(e["id"]),
            message=message,
            status=e["status"],
            at=dt.datetime.fromisoformat(e["at"]),
            code=e["code"],
            detail=e["detail"],
            provider=e["provider"],
            attempt=e["attempt"],
            started_at=parse_datetime(e["started_at"]) if e["started_at"] else None,
        )
        for e in spooled.events
    ]
    return SpooledMessage(message, events)


@dataclass(frozen=True)
class Page:
    results: list[Message]
    next: str | None


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


GRAM = 2  # characters in one piece of mc_grams (migration 0012_search)
RECENT_SCAN = 5000  # rows a q search reads newest first before it turns to the gram index
TEXT_SEARCH_DEFAULT = dt.timedelta(days=7)
TEXT_SEARCH_MAX = dt.timedelta(days=31)
# A client that asks for "the last 31 days" computed its bound a moment before we read the clock.
TEXT_SEARCH_CLOCK_SLACK = dt.timedelta(minutes=5)


def _text_search_window(after: dt.datetime | None, before: dt.datetime | None, *, now: dt.datetime) -> dt.datetime:
    """The start of a `q` search's window (API.md, Sending): at most 31 days; without created_after, the 7 days
    before created_before (or now)."""
    if after is None:
        return (before or now) - TEXT_SEARCH_DEFAULT
    if before is None and now - after > TEXT_SEARCH_MAX + TEXT_SEARCH_CLOCK_SLACK:
        message = (
            "A search with q covers at most 31 days: created_after is further back "
            "(give created_before too, or neither for the last 7 days)."
        )
        raise ValidationFailed(message, errors={"created_after": ["More than 31 days before now for a search with q."]})
    if before is not None and before - after > TEXT_SEARCH_MAX:
        message = "A search with q covers at most 31 days: created_after is more than 31 days before created_before."
        raise ValidationFailed(
            message, errors={"created_after": ["More than 31 days before created_before for a search with q."]}
        )
    return after


def message_search(*, account: Account, params: dict[str, Any]) -> Page:
    """The account's messages matching `params`, newest first. A `q` search is bounded to a window of at most
    31 days (its id range: partitions pruned) and finds candidates through the gram index."""
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
        else:
            queryset = queryset.filter(batch_id=batch_id)
    if to := params.get("to"):
        queryset = queryset.filter(address=to.strip())
    after = query_timestamp("created_after", raw) if (raw := params.get("created_after")) else None
    before = query_timestamp("created_before", raw) if (raw := params.get("created_before")) else None
    q = params.get("q")
    if q:
        after = _text_search_window(after, before, now=timezone.now())
    if after is not None:
        queryset = queryset.filter(id__gte=ids.uuid7_floor(after))
    if before is not None:
        queryset = queryset.filter(id__lt=ids.uuid7_floor(before))
    if errors:
        first = next(iter(errors))
        raise ValidationFailed(f"Invalid {first}: {errors[first][0]}", errors=errors)
    return _text_search(queryset, q, params) if q else Page(*keyset_page(queryset, params))


def _text_search(queryset: QuerySet[Message], q: str, params: dict[str, Any]) -> Page:
    """A page of the messages of `queryset` (the other filters and the window) whose content holds `q`.

    First among the newest RECENT_SCAN rows alone: a common word fills its page there, where the gram index
    would hand over every match of the table (a word in a quarter of 500,000 messages: 1.3 s). Otherwise
    (a rarer word, fewer than a page in those rows) through the gram index, which then yields few rows;
    messages still on their way are not in it and come from the status index."""
    limit, cursor = page_input(params)
    if cursor is not None:
        queryset = queryset.filter(id__lt=cursor)
    newest_sql, newest_params = queryset.order_by("-id").values_list("id", "content")[:RECENT_SCAN].query.sql_with_params()
    with connection.cursor() as cursor_:
        # Raw SQL: the ORM cannot filter the rows of a LIMITed subquery (FROM (…) AS newest).
        cursor_.execute(
            f"SELECT newest.id FROM ({newest_sql}) AS newest (id, content) "  # noqa: S608 - the ORM's own SQL
            "WHERE strpos(newest.content, %s) > 0 ORDER BY newest.id DESC LIMIT %s",
            [*newest_params, q, limit + 1],
        )
        recent = [row[0] for row in cursor_.fetchall()]
    if len(recent) > limit:
        return Page(*page_of_rows(list(Message.objects.filter(id__in=recent).order_by("-id")), limit))
    matching = queryset.filter(content__contains=q)
    if len(q) >= GRAM:  # a single character has no gram: the window alone bounds its scan
        indexed = Q(grams__contains=ContentGrams(Value(q)), status__in=GRAM_INDEXED_STATUSES)
        matching = matching.alias(grams=ContentGrams("content")).filter(indexed | Q(status__in=UNSETTLED_STATUSES))
    return Page(*page_of_rows(list(matching.order_by("-id")[: limit + 1]), limit))


def inbox_page(*, account: Account, user_id: str, unread_only: bool, params: Mapping[str, Any]) -> tuple[Page, int]:
    """A page of the user's inbox (`params`: `limit`, `cursor`) and how many are unread."""
    base = Message.objects.filter(account=account, user_id=user_id, channel="inbox", status=Status.DELIVERED)
    unread = base.filter(read_at__isnull=True)
    return Page(*keyset_page(unread if unread_only else base, params)), unread.count()


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


REFUSED_AT_ACCEPT = frozenset({Status.REJECTED, Status.SUPPRESSED})  # only the send API sets these


def accepted_event(message: Message) -> MessageEvent:
    """The first event of a message the send API made, from the message row (it is not stored, see
    apps/dispatch/accept/rows.py): its refusal, "scheduled for …" or "accepted", at `created_at`. Its id is
    the message's own UUIDv7, earlier than any stored event's."""
    if message.status in REFUSED_AT_ACCEPT:
        status, code, detail = message.status, message.code, message.detail
    elif message.scheduled_at is not None:
        status, code = Status.SCHEDULED, ""
        detail = f"scheduled for {message.scheduled_at.astimezone(dt.UTC):%Y-%m-%dT%H:%M:%SZ}"
    else:
        status, code, detail = Status.QUEUED, "", "accepted"
    return MessageEvent(id=message.id, message=message, status=status, at=message.created_at, code=code, detail=detail)


def _sending(message: Message, attempt: int | None, at: dt.datetime) -> MessageEvent:
    """An attempt's claim, which is not stored (see delivery.claims.claim_read): made from the event that
    ended the attempt, or, for the attempt under way, from the message row."""
    return MessageEvent(message=message, status=Status.SENDING, at=at, detail=f"attempt {attempt}", attempt=attempt)


def message_timeline(message: Message, stored: list[MessageEvent] | None = None) -> list[MessageEvent]:
    """Every event of the message, oldest first. A message made elsewhere (sent again, a failover
    resend; or accepted before first events were made from the row) has its first event stored,
    under the message's own id. Each attempt's `sending` comes from the event that ended it
    (`started_at`); the attempt under way from the row, its lease less the lease's length.
    `stored`: the events, when they are not in the database (a spooled message)."""
    if stored is None:
        stored = list(message.events.order_by("id"))
    events = [] if stored and stored[0].id == message.id else [accepted_event(message)]
    for event in stored:
        if event.started_at is not None:
            events.append(_sending(message, event.attempt, event.started_at))
        events.append(event)
    if message.status == Status.SENDING and message.lease_until is not None:
        events.append(_sending(message, message.attempts, lease_start(message.lease_until)))
    return events
