"""The rows a send writes: messages (COPY or inline), outbox, idempotency record, and its response body."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

from django.utils import timezone

from apps.dispatch import outbox
from apps.dispatch.accept.entries import Entry
from apps.dispatch.accept.prepare import PreparedSend
from apps.dispatch.leases import queued_lease
from apps.dispatch.models import Status
from apps.dispatch.segments import segment_of
from messaging_center import ids
from messaging_center.db import bound_cursor, json_rows
from messaging_center.times import api_time

# --- storing --------------------------------------------------------------------------------------

MESSAGE_COLUMNS = (
    "id, account_id, batch_id, template_id, template_code, channel, category, priority, address, user_id, params, "
    "title, content, segments, status, code, detail, provider, provider_message_id, attempts, lease_until, created_at, "
    "scheduled_at, expires_at, segment"
)


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_NULL = "\\N"


def _text(value: str) -> str:
    """A value in COPY's text format (the columns written here are text, uuid, int or timestamp)."""
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:  # most need none (docs/performance.md)
        return value.translate(_COPY_ESCAPES)
    return value


_COLUMN_NAMES = tuple(MESSAGE_COLUMNS.split(", "))


def _message_rows(send: PreparedSend) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
    """The send's messages as raw column values: the values every message shares (account_id …
    priority) and each message's own (id, then address … expires_at; params as the dict, None for
    NULL). `copy_lines` and `inline_rows` write them out for the two ways of storing them."""
    account, template, now, ttl = send.account, send.template, send.now, send.ttl
    channel = template.channel
    fixed = (str(account.id), str(send.batch_id), str(template.id), template.code, template.channel, template.category, send.lane)
    now_text = now.isoformat()
    lease_text = (now + queued_lease()).isoformat()
    expires_now = (now + dt.timedelta(seconds=ttl)).isoformat()
    rows = []
    for entry, message_id in zip(send.entries, send.message_ids, strict=True):
        scheduled = entry.scheduled_at.isoformat() if entry.scheduled_at else None
        expires = (entry.scheduled_at + dt.timedelta(seconds=ttl)).isoformat() if entry.scheduled_at else expires_now
        rows.append(
            (
                message_id.hex,
                entry.address,
                entry.user_id,
                entry.params,
                entry.title,
                entry.content,
                str(entry.segments) if entry.segments is not None else None,
                entry.status,
                entry.code,
                entry.detail,
                "",
                "",
                "0",
                lease_text if entry.status == Status.QUEUED else None,
                now_text,
                scheduled,
                expires,
                segment_of(channel, entry.address),
            )
        )
    return fixed, rows


def copy_lines(send: PreparedSend) -> list[str]:
    """The send's messages as lines of one COPY whose text we format ourselves (per-value adaptation
    costs more than the rest of the accept path per message). Only free text can need escaping."""
    fixed, rows = _message_rows(send)
    shared = "\t".join(_text(value) for value in fixed)
    params_text: dict[int, str] = {}  # entries that share one params dict (see render_entries): serialized once
    lines = []
    for (
        mid,
        address,
        user_id,
        params,
        title,
        content,
        segments,
        status,
        code,
        detail,
        provider,
        provider_message_id,
        attempts,
        lease,
        created,
        scheduled,
        expires,
        segment,
    ) in rows:
        text = params_text.get(id(params))
        if text is None:
            text = params_text[id(params)] = _text(json.dumps(params, ensure_ascii=False))
        lines.append(
            "\t".join(
                (
                    mid,
                    shared,
                    _text(address),
                    _text(user_id),
                    text,
                    _text(title),
                    _text(content),
                    segments or _NULL,
                    status,
                    code,
                    _text(detail),
                    provider,
                    provider_message_id,
                    attempts,
                    lease or _NULL,
                    created,
                    scheduled or _NULL,
                    expires,
                    segment,
                )
            )
        )
    return lines


def inline_rows(send: PreparedSend) -> list[dict[str, Any]]:
    """The send's messages as objects keyed by column name, for json_populate_recordset."""
    fixed, rows = _message_rows(send)
    return [dict(zip(_COLUMN_NAMES, (row[0], *fixed, *row[1:]), strict=True)) for row in rows]


# A message's first event ("accepted", "scheduled for …", or its refusal) is not stored: the row says as
# much, and selectors.message_timeline makes it from the row (docs/performance.md, Accept path).
_FINISH_REST = """
outbox AS (
    INSERT INTO dispatch_outbox (id, lane, message_ids, created_at)
    -- One JSON document for all rows: a jsonb[] parameter of 1,000 quoted ids cost 2,000 escapes.
    SELECT (o->>0)::uuid, o->>1, o->2, %(now)s FROM jsonb_array_elements(%(outbox)s::jsonb) AS o
), refused AS (
    -- Keys of requests refused after their key was claimed (quota): free for a retry.
    DELETE FROM dispatch_idempotencyrecord WHERE id = ANY(%(refused)s)
)
UPDATE dispatch_idempotencyrecord r SET status_code = 202, response_body = v.body
FROM unnest(%(records)s::uuid[], %(bodies)s::bytea[]) AS v(id, body)
WHERE r.id = v.id AND r.id = ANY(%(records)s)
"""
# After a COPY of the messages.
_FINISH_AFTER_COPY = f"WITH {_FINISH_REST}"
# Small groups: the messages are inserted by the same statement (a COPY is two round trips more).
_FINISH_WITH_MESSAGES = f"""
WITH m AS (
    INSERT INTO dispatch_message ({MESSAGE_COLUMNS})
    SELECT {MESSAGE_COLUMNS} FROM json_populate_recordset(NULL::dispatch_message, %(messages)s::json)
), {_FINISH_REST}"""  # noqa: S608 - fixed fragments; every value is bound
# Up to this many messages a group's messages go in the finish statement; more go by COPY.
INLINE_MAX_MESSAGES = 100


def write_finish(
    *,
    written: list[PreparedSend],
    bodies: list[bytes],
    rows: list[outbox.OutboxRow],
    refused: list[uuid.UUID],
    messages: list[dict[str, Any]] | None,
) -> None:
    """The messages (unless they went by COPY), outbox rows and the idempotency records' responses
    of every send in a group: one statement, one round trip."""
    answered = [(s.record_id, body) for s, body in zip(written, bodies, strict=True) if s.record_id]
    params = {
        "outbox": json.dumps([[str(r.id), r.lane, r.message_ids] for r in rows]),
        "now": written[0].now if written else timezone.now(),
        "refused": refused,
        "records": [record for record, _ in answered],
        "bodies": [body for _, body in answered],
    }
    if messages is not None:
        sql, params["messages"] = _FINISH_WITH_MESSAGES, json_rows(messages)
    else:
        sql = _FINISH_AFTER_COPY
    with bound_cursor() as cursor:
        cursor.execute(sql, params)


def response_body(entries: list[Entry], message_ids: list[uuid.UUID], batch_id: uuid.UUID) -> bytes:
    """The 202 body, as json.dumps would write it (compact, non-ASCII kept), written out by hand for
    the common outcome (an id and a status: 1,000 per request) and by json for the rest."""
    outcomes = []
    for entry, message_id in zip(entries, message_ids, strict=True):
        if not entry.code and not entry.scheduled_at:
            outcomes.append(f'{{"id":"{ids.encode("msg", message_id)}","status":"{entry.status}"}}')
            continue
        item: dict[str, Any] = {"id": ids.encode("msg", message_id), "status": str(entry.status)}
        if entry.code:
            item |= {"code": entry.code, "detail": entry.detail}
        if entry.scheduled_at:
            item["scheduled_at"] = api_time(entry.scheduled_at)
        outcomes.append(json.dumps(item, ensure_ascii=False, separators=(",", ":")))
    accepted = sum(1 for e in entries if e.status in (Status.QUEUED, Status.SCHEDULED))
    head = f'{{"batch_id":"{ids.encode("bat", batch_id)}","accepted":{accepted},"rejected":{len(entries) - accepted}'
    return f'{head},"messages":[{",".join(outcomes)}]}}'.encode()
