"""The accept path: one send request → every entry's outcome, stored and handed to its lane.

Whole-batch work only (DESIGN.md, performance rules): one validation pass, one query for the
recipients, one for preferences, one Redis call for dedup/frequency/quota, one COPY for messages,
one statement for the outbox rows, and one pipelined publish after commit.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg
from django.db import DatabaseError, connection, transaction
from django.utils import timezone
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from apps.accounts.models import Account
from apps.accounts.selectors import PreferencesQuery, preferences_query, quota_key, recipients_by_user_id
from apps.dispatch import limits, publish, throttling
from apps.dispatch.contacts import ADDRESS_KEYS, CHANNEL_ADDRESS_KEY, normalize_address, recipient_address
from apps.dispatch.delivery import queued_lease
from apps.dispatch.models import IdempotencyRecord, Status
from apps.dispatch.quiet_hours import quiet_until, zone
from apps.dispatch.sealing import MASK, seal_value
from apps.dispatch.throttling import limiter
from apps.templates.selectors import template_get
from apps.templates.services import template_render
from apps.templates.sms import sms_length
from messaging_center import ids, metrics
from messaging_center.db import bound_cursor, json_rows
from messaging_center.errors import Conflict, ServiceError, Unavailable, ValidationFailed
from messaging_center.group_commit import GroupCommit
from messaging_center.ttl_cache import TtlCache

logger = logging.getLogger(__name__)

MAX_RECIPIENTS = 1000
MAX_TTL_SECONDS = 7 * 24 * 3600
SEND_AT_PAST_TOLERANCE = dt.timedelta(minutes=5)
IDEMPOTENCY_TTL = dt.timedelta(hours=24)
PRIORITIES = ("critical", "high", "normal", "bulk")
ENTRY_KEYS = frozenset({*ADDRESS_KEYS, "user_id", "params"})
IDENTITY_KEYS = frozenset({*ADDRESS_KEYS, "user_id"})
TOP_LEVEL_KEYS = frozenset({"template", "to", "params", "priority", "send_at", "ttl"})


class MissingParams(ServiceError):
    code = "missing_params"


class TooManyRecipients(ServiceError):
    code = "too_many_recipients"


class QuotaExceeded(ServiceError):
    status_code = 429
    code = "quota_exceeded"


class RateLimited(ServiceError):
    status_code = 429
    code = "rate_limited"


def _rate_limited(seconds: int) -> RateLimited:
    return RateLimited(
        f"Request was throttled: over the account's request rate. Retry in {seconds} s.", headers={"Retry-After": str(seconds)}
    )


@dataclass
class SendRequest:
    template_code: str
    entries: list[dict[str, Any]]
    params: dict[str, str]
    priority: str | None
    send_at: dt.datetime | None
    ttl: int | None


@dataclass
class Entry:
    user_id: str = ""
    address: str = ""
    params: dict[str, str] = field(default_factory=dict)
    status: str = Status.QUEUED
    code: str = ""
    detail: str = ""
    content: str = ""
    title: str = ""
    segments: int | None = None
    timezone: str = ""
    scheduled_at: dt.datetime | None = None

    def refuse(self, status: str, code: str, detail: str) -> None:
        self.status, self.code, self.detail = status, code, detail


@dataclass(frozen=True)
class SendResponse:
    status_code: int
    body: bytes


# --- request validation -----------------------------------------------------------------------


MAX_USER_ID = 255
_NUL = "\x00"  # PostgreSQL text and jsonb cannot hold it


def _params(value: Any, name: str, errors: dict[str, list[str]]) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        errors[name] = ["Must be an object of name → string or number."]
        return {}
    clean: dict[str, str] = {}
    for key, item in value.items():
        if isinstance(item, bool) or not isinstance(item, (str, int, float)):
            errors.setdefault(f"{name}.{key}", []).append("Must be a string or a number.")
        elif _NUL in key or (isinstance(item, str) and _NUL in item):
            errors.setdefault(f"{name}.{key}", []).append("Must not contain NUL characters.")
        else:
            clean[key] = item if isinstance(item, str) else format(item, "g") if isinstance(item, float) else str(item)
    return clean


def _parse_send_at(value: Any, errors: dict[str, list[str]], now: dt.datetime) -> dt.datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        errors["send_at"] = ["Must be an ISO 8601 timestamp with a zone."]
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        errors["send_at"] = ["Not an ISO 8601 timestamp (e.g. 2026-11-24T09:00:00+08:00)."]
        return None
    if parsed.tzinfo is None:
        errors["send_at"] = ["The timestamp needs a zone (e.g. +08:00 or Z)."]
        return None
    if parsed < now - SEND_AT_PAST_TOLERANCE:
        errors["send_at"] = ["Is more than 5 minutes in the past."]
        return None
    return parsed


def parse_request(data: Any, *, now: dt.datetime) -> SendRequest:
    if not isinstance(data, dict):
        raise ValidationFailed("The body must be a JSON object.", errors={"non_field_errors": ["Expected a JSON object."]})
    errors: dict[str, list[str]] = {}
    for unknown in sorted(set(data) - TOP_LEVEL_KEYS):
        errors[unknown] = ["Unknown field."]
    template = data.get("template")
    if not isinstance(template, str) or not template:
        errors["template"] = ["A template code is required."]
    elif _NUL in template:
        errors["template"] = ["Must not contain NUL characters."]
    to = data.get("to")
    if isinstance(to, dict):
        to = [to]
    if not isinstance(to, list):
        errors["to"] = ["Must be one recipient object or a list of them."]
        to = []
    elif not to:
        errors["to"] = ["At least one recipient is required."]
    elif len(to) > MAX_RECIPIENTS:
        raise TooManyRecipients(f"At most {MAX_RECIPIENTS} recipients per request; got {len(to)}.")
    entries: list[dict[str, Any]] = []
    for index, entry in enumerate(to):
        if not isinstance(entry, dict):
            errors[f"to[{index}]"] = ['Must be an object such as {"phone": "+86…"} or {"user_id": "…"}.']
            continue
        keys = entry.keys()  # set operations in C: this loop runs 1,000 times per request
        if not keys <= ENTRY_KEYS:
            for unknown in sorted(keys - ENTRY_KEYS):
                errors[f"to[{index}].{unknown}"] = ["Unknown field."]
        identities = keys & IDENTITY_KEYS
        if not identities:
            errors[f"to[{index}]"] = [f"Needs an address ({', '.join(ADDRESS_KEYS)}) or a user_id."]
        for key in sorted(identities):
            value = entry[key]
            if not isinstance(value, str) or not value.strip():
                errors[f"to[{index}].{key}"] = ["Must be a non-empty string."]
            elif _NUL in value:
                errors[f"to[{index}].{key}"] = ["Must not contain NUL characters."]
            elif key == "user_id" and len(value.strip()) > MAX_USER_ID:
                errors[f"to[{index}].{key}"] = [f"At most {MAX_USER_ID} characters."]
        entries.append({**entry, "params": _params(entry.get("params"), f"to[{index}].params", errors)})
    shared = _params(data.get("params"), "params", errors)
    priority = data.get("priority")
    if priority is not None and priority not in PRIORITIES:
        errors["priority"] = [f"Must be one of {', '.join(PRIORITIES)}."]
    ttl = data.get("ttl")
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int) or not 0 < ttl <= MAX_TTL_SECONDS):
        errors["ttl"] = [f"Must be an integer number of seconds from 1 to {MAX_TTL_SECONDS}."]
    send_at = _parse_send_at(data.get("send_at"), errors, now)
    if errors:
        first = next(iter(errors))
        raise ValidationFailed(f"Invalid {first}: {errors[first][0]}", errors=errors)
    return SendRequest(template, entries, shared, priority, send_at, ttl)


# --- idempotency ----------------------------------------------------------------------------------


def body_fingerprint(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()


def _replay_or_conflict(record: IdempotencyRecord, fingerprint: str) -> SendResponse:
    if record.body_hash != fingerprint:
        raise Conflict("This Idempotency-Key was used with a different body.", code="idempotency_conflict")
    return SendResponse(record.status_code or 202, bytes(record.response_body or b""))


def _claim_idempotency_key(*, account: Account, key: str, fingerprint: str, now: dt.datetime) -> uuid.UUID | SendResponse:
    """Inserts the key inside the request's transaction. A concurrent request with the same key
    waits on the unique index until the first commits, then replays its response."""
    record_id = ids.uuid7()
    with bound_cursor() as cursor:
        for _ in range(2):
            cursor.execute(
                "INSERT INTO dispatch_idempotencyrecord (id, account_id, key, body_hash, created_at) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (account_id, key) DO NOTHING RETURNING id",
                [record_id, account.id, key, fingerprint, now],
            )
            if cursor.fetchone():
                return record_id
            existing = IdempotencyRecord.objects.filter(account=account, key=key).first()
            if existing is None:  # purged since the insert found it: insert again
                continue
            if existing.created_at >= now - IDEMPOTENCY_TTL:
                return _replay_or_conflict(existing, fingerprint)
            existing.delete()
    raise Conflict("This Idempotency-Key is being used concurrently; retry.", code="idempotency_conflict")


# --- entry decisions ------------------------------------------------------------------------------


def _resolve_addresses(entries: list[Entry], raw: list[dict[str, Any]], channel: str, account: Account) -> dict[str, Any]:
    user_ids = [str(r["user_id"]).strip() for r in raw if "user_id" in r]
    recipients = recipients_by_user_id(account_id=account.id, user_ids=user_ids) if user_ids else {}
    address_key = CHANNEL_ADDRESS_KEY.get(channel)
    for entry, item in zip(entries, raw, strict=True):
        entry.user_id = str(item.get("user_id", "")).strip()
        recipient = recipients.get(entry.user_id) if entry.user_id else None
        entry.timezone = getattr(recipient, "timezone", "") or account.timezone
        if channel == "inbox":
            if not entry.user_id:
                entry.refuse(Status.REJECTED, "invalid_address", "The inbox channel needs a user_id.")
            else:
                entry.address = entry.user_id
            continue
        given = item.get(address_key) if address_key else None
        if given is None:
            if recipient is None:
                wrong = [k for k in ADDRESS_KEYS if k in item]
                why = (
                    f"This {channel} template needs {address_key} or user_id, not {wrong[0]}."
                    if wrong
                    else f"Unknown user_id {entry.user_id!r}."
                )
                entry.refuse(Status.REJECTED, "invalid_address", why)
                continue
            given = recipient_address(recipient, channel)
            if not given:
                entry.refuse(Status.REJECTED, "invalid_address", f"Recipient {entry.user_id!r} has no {address_key}.")
                continue
            if channel == "push":
                entry.address = entry.user_id  # the worker sends to every active device of the user
                continue
        normalized, problem = normalize_address(channel, str(given))
        if problem:
            entry.refuse(Status.REJECTED, "invalid_address", problem)
        else:
            entry.address = normalized
    return recipients


def _render(entries: list[Entry], template: Any, shared: Mapping[str, str], raw: list[dict[str, Any]]) -> None:
    # Entries with the same params (all of them, when only shared params are given) render alike:
    # once per distinct set of params, and share one params dict (so that _store serializes it once).
    renderings: dict[tuple[tuple[str, Any], ...], tuple[Any, int | None, dict[str, Any]]] = {}
    for entry, item in zip(entries, raw, strict=True):
        if entry.status != Status.QUEUED:
            continue
        key = tuple(sorted(item["params"].items()))
        if key not in renderings:
            params = {**shared, **item["params"]}
            rendered = template_render(template=template, params=params)
            segments = None
            if template.channel == "sms" and not rendered.missing:
                segments, _ = sms_length(rendered.content, template.sms_signature)
            renderings[key] = (rendered, segments, params)
        rendered, segments, entry.params = renderings[key]
        if rendered.missing:
            entry.refuse(Status.REJECTED, "missing_params", f"Missing template params: {', '.join(rendered.missing)}.")
            continue
        entry.content, entry.title = rendered.content, rendered.title
        if template.channel == "sms":
            entry.segments = segments


def _seal(entries: list[Entry], template: Any, secret_params: frozenset[str]) -> None:
    """Secret params (a verification code) are stored encrypted and shown masked in the stored
    content; the worker decrypts and renders them again at send time (apps/dispatch/engine.py)."""
    for entry in entries:
        secrets_here = secret_params & entry.params.keys()
        if not secrets_here:
            continue
        masked = {**entry.params, **dict.fromkeys(secrets_here, MASK)}
        if entry.content:
            rendered = template_render(template=template, params=masked)
            entry.content, entry.title = rendered.content, rendered.title
        entry.params = {**entry.params, **{k: seal_value(entry.params[k]) for k in secrets_here}}


def _preferences_query(send: _Send, suffix: str) -> PreferencesQuery | None:
    """The opt-out lookup of a send's entries still going (one SELECT; see `_claim_keys`)."""
    live = [e for e in send.entries if e.status == Status.QUEUED]
    if send.template.category == "verification" or not live:
        return None
    return preferences_query(
        account_id=send.account.id,
        category=send.template.category,
        channel=send.template.channel,
        user_ids=[e.user_id for e in live if e.user_id],
        addresses=[e.address for e in live],
        suffix=suffix,
    )


def _apply_opt_outs(send: _Send, opted_out: set[str]) -> None:
    template = send.template
    for entry in send.entries:
        if entry.status == Status.QUEUED and ((entry.user_id and entry.user_id in opted_out) or entry.address in opted_out):
            entry.refuse(Status.SUPPRESSED, "opted_out", f"The recipient opted out of {template.category} {template.channel}.")


def _seconds_to_midnight(now: dt.datetime, tz_name: str) -> int:
    local = now.astimezone(zone(tz_name))
    midnight = dt.datetime.combine(local.date() + dt.timedelta(days=1), dt.time(), tzinfo=zone(tz_name))
    return max(1, int((midnight - local).total_seconds()))


def _schedule(entries: list[Entry], template: Any, request: SendRequest, now: dt.datetime) -> None:
    for entry in entries:
        if entry.status != Status.QUEUED:
            continue
        at = request.send_at if request.send_at and request.send_at > now else None
        if template.category == "marketing":
            held = quiet_until(at or now, entry.timezone)
            if held is not None:
                at = held
        if at is not None:
            entry.status, entry.scheduled_at = Status.SCHEDULED, at


# --- storing --------------------------------------------------------------------------------------

_MESSAGE_COLUMNS = (
    "id, account_id, batch_id, template_id, template_code, channel, category, priority, address, user_id, params, "
    "title, content, segments, status, code, detail, provider, provider_message_id, attempts, lease_until, created_at, "
    "scheduled_at, expires_at"
)


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_NULL = "\\N"


def _text(value: str) -> str:
    """A value in COPY's text format (the columns written here are text, uuid, int or timestamp)."""
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:  # 10x cheaper than translating
        return value.translate(_COPY_ESCAPES)
    return value


_COLUMN_NAMES = tuple(_MESSAGE_COLUMNS.split(", "))


def _message_rows(send: _Send) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
    """The send's messages as raw column values: the values every message shares (account_id …
    priority) and each message's own (id, then address … expires_at; params as the dict, None for
    NULL). `_copy_lines` and `_json_rows` write them out for the two ways of storing them."""
    account, template, now, ttl = send.account, send.template, send.now, send.ttl
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
            )
        )
    return fixed, rows


def _copy_lines(send: _Send) -> list[str]:
    """The send's messages as lines of one COPY whose text we format ourselves (per-value adaptation
    costs more than the rest of the accept path per message). Only free text can need escaping."""
    fixed, rows = _message_rows(send)
    shared = "\t".join(_text(value) for value in fixed)
    params_text: dict[int, str] = {}  # entries that share one params dict (see _render): serialized once
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
                )
            )
        )
    return lines


def _json_rows(send: _Send) -> list[dict[str, Any]]:
    """The send's messages as objects keyed by column name, for json_populate_recordset."""
    fixed, rows = _message_rows(send)
    return [dict(zip(_COLUMN_NAMES, (row[0], *fixed, *row[1:]), strict=True)) for row in rows]


# A message's first event ("accepted", "scheduled for …", or its refusal) is not stored: it says
# nothing the message row does not, and writing it was a second row per message (a batch of 1,000
# was accepted a third faster without it). The timeline makes it from the row (selectors.message_timeline).
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
    INSERT INTO dispatch_message ({_MESSAGE_COLUMNS})
    SELECT {_MESSAGE_COLUMNS} FROM json_populate_recordset(NULL::dispatch_message, %(messages)s::json)
), {_FINISH_REST}"""  # noqa: S608 - fixed fragments; every value is bound
# Up to this many messages a group's messages go in the finish statement; more go by COPY.
INLINE_MAX_MESSAGES = 100


def _finish(
    *,
    written: list[_Send],
    bodies: list[bytes],
    rows: list[publish.OutboxRow],
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


def _response_body(entries: list[Entry], message_ids: list[uuid.UUID], batch_id: uuid.UUID) -> bytes:
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
            item["scheduled_at"] = entry.scheduled_at.isoformat()
        outcomes.append(json.dumps(item, ensure_ascii=False, separators=(",", ":")))
    accepted = sum(1 for e in entries if e.status in (Status.QUEUED, Status.SCHEDULED))
    head = f'{{"batch_id":"{ids.encode("bat", batch_id)}","accepted":{accepted},"rejected":{len(entries) - accepted}'
    return f'{head},"messages":[{",".join(outcomes)}]}}'.encode()


# A template edit or delete reaches other web processes within this many seconds.
TEMPLATES: TtlCache[Any] = TtlCache(seconds=5)


def _template_or_error(account: Account, code: str) -> Any:
    """The template, or the error to raise for it (cached too, so an unknown code costs no query)."""
    try:
        return template_get(account_id=account.id, code=code)
    except ServiceError as error:
        return error


def lane_for(template: Any, requested: str | None) -> str:
    if template.category == "verification":
        return "critical"
    return requested or template.effective_priority


@dataclass(eq=False)
class _Send:
    """One request, validated, rendered and checked against preferences: what the write needs."""

    account: Account
    request: SendRequest
    template: Any
    entries: list[Entry]
    lane: str
    ttl: int
    batch_id: uuid.UUID
    message_ids: list[uuid.UUID]
    idempotency_key: str | None
    fingerprint: str
    secret_params: frozenset[str]
    now: dt.datetime
    record_id: uuid.UUID | None = None
    written: bool = False  # stored by this request (not a replay, not refused)
    throttle: bool = False  # takes the account's request-rate token with its limits (the send API)
    preferences_checked: bool = False  # its opt-outs are looked up (with its key's claim)
    limited: bool = False  # its limits are decided (once: a retried write must not count them twice)
    finalized: bool = False  # scheduled and sealed (once: a retried write must not seal twice)
    to_publish: list[publish.OutboxRow] = field(default_factory=list)  # the group's tasks, when it wrote them


def _prepare(*, account: Account, data: Any, idempotency_key: str | None, secret_params: frozenset[str]) -> _Send:
    now = timezone.now()
    request = parse_request(data, now=now)
    fingerprint = body_fingerprint(data) if idempotency_key else ""
    template = TEMPLATES.get_or_load(
        (account.id, request.template_code), lambda: _template_or_error(account, request.template_code)
    )
    if isinstance(template, ServiceError):
        raise template
    missing_everywhere = [
        v for v in template.variables if v not in request.params and not any(v in e["params"] for e in request.entries)
    ]
    if missing_everywhere:
        raise MissingParams(
            f"Template {template.code!r} needs params no entry supplies: {', '.join(missing_everywhere)}.",
            errors={"params": [f"Missing: {', '.join(missing_everywhere)}."]},
        )
    entries = [Entry() for _ in request.entries]
    _resolve_addresses(entries, request.entries, template.channel, account)
    _render(entries, template, request.params, request.entries)
    batch_id, *message_ids = ids.uuid7_many(1 + len(entries))
    return _Send(
        account=account,
        request=request,
        template=template,
        entries=entries,
        lane=lane_for(template, request.priority),
        ttl=request.ttl or template.effective_ttl,
        batch_id=batch_id,
        message_ids=message_ids,
        idempotency_key=idempotency_key,
        fingerprint=fingerprint,
        secret_params=secret_params,
        now=now,
    )


# --- group write ----------------------------------------------------------------------------------
#
# Concurrent small requests in one web process are written together (messaging_center/group_commit):
# one transaction, one statement claiming their Idempotency-Keys, one pipelined Redis call for their
# limits, one COPY, one finish statement, one commit, one publish — and their queued messages share
# tasks. Each request still gets its own outcome: its own quota decision, replay or error.

GROUP_MAX_ENTRIES = 100  # larger requests are written on their own: they fill a transaction alone
_AGAIN = object()  # the key was claimed earlier in the same group with another body: submit again

SendResult = SendResponse | Exception


def _claim_keys(sends: list[_Send], results: list[SendResult | None]) -> None:
    """Claims every send's Idempotency-Key (in key order, so that two groups claiming the same keys
    cannot deadlock) and looks up the opt-outs of every send not yet checked, in one statement; a key
    already present is resolved per send (replay, conflict, or an expired record replaced)."""
    keyed = sorted(
        (i for i, s in enumerate(sends) if s.idempotency_key), key=lambda i: (str(sends[i].account.id), sends[i].idempotency_key)
    )
    for i in keyed:
        sends[i].record_id = ids.uuid7()
    branches: list[str] = []
    params: dict[str, object] = {}
    if keyed:
        branches.append("SELECT -1, id::text, NULL::varchar[] FROM claimed")
        params |= {
            "record_ids": [sends[i].record_id for i in keyed],
            "accounts": [sends[i].account.id for i in keyed],
            "keys": [sends[i].idempotency_key for i in keyed],
            "hashes": [sends[i].fingerprint for i in keyed],
            "created": [sends[i].now for i in keyed],
        }
    lookups: dict[int, PreferencesQuery] = {}
    for i, send in enumerate(sends):
        query = None if send.preferences_checked else _preferences_query(send, suffix=f"_{i}")
        if query is None:
            send.preferences_checked = True
        else:
            lookups[i] = query
            branches.append(f"SELECT {i}, * FROM ({query.sql}) AS p{i}")  # noqa: S608 - our own query text
            params |= query.params
    if not branches:
        return
    claim = (
        "WITH claimed AS (INSERT INTO dispatch_idempotencyrecord (id, account_id, key, body_hash, created_at) "
        "SELECT * FROM unnest(%(record_ids)s::uuid[], %(accounts)s::uuid[], %(keys)s::text[], %(hashes)s::text[], "
        "%(created)s::timestamptz[]) ON CONFLICT (account_id, key) DO NOTHING RETURNING id) "
        if keyed
        else ""
    )
    with bound_cursor() as cursor:
        cursor.execute(claim + " UNION ALL ".join(branches), params)
        rows = cursor.fetchall()
    claimed = {uuid.UUID(value) for where, value, _ in rows if where == -1}
    for i, query in lookups.items():
        _apply_opt_outs(sends[i], query.opted_out((user_id, matched) for where, user_id, matched in rows if where == i))
        sends[i].preferences_checked = True
    for i in keyed:
        send = sends[i]
        if send.record_id in claimed:
            continue
        try:
            outcome = _claim_idempotency_key(
                account=send.account, key=send.idempotency_key or "", fingerprint=send.fingerprint, now=send.now
            )
        except ServiceError as error:
            send.record_id, results[i] = None, error
            continue
        if isinstance(outcome, SendResponse):
            send.record_id, results[i] = None, outcome
        else:
            send.record_id = outcome


def _apply_limits(sends: list[_Send], results: list[SendResult | None]) -> None:
    """Dedup, frequency and quota of every send still going whose limits are not yet decided: one
    atomic script call each, all in one Redis round trip. A refused quota refuses that send whole."""
    calls: list[tuple[int, list[Entry], limits.Decide]] = []
    for i, send in enumerate(sends):
        if results[i] is not None or send.limited:
            continue
        send.limited = True
        live = [e for e in send.entries if e.status == Status.QUEUED]
        if not live and not send.throttle:
            continue
        template = send.template
        dedup_window = template.effective_dedup_window
        frequency = limits.parse_frequency_limits(template.effective_frequency_limits)
        checked = live if dedup_window or frequency else []
        checks = (
            limits.BatchChecks(
                account_id=str(send.account.id),
                template_id=str(template.id),
                category=template.category,
                dedup_window=dedup_window or 0,
                frequency_limits=frequency,
                addresses=[e.address for e in checked],
                contents=[e.content for e in checked],
            )
            if checked
            else None
        )
        decide = limits.Decide(
            quota_key(send.account, send.now),
            send.account.daily_quota,
            2 * 24 * 3600,
            checks,
            len(live) - len(checked),
            rate=(send.account.id, send.account.rate_limit) if send.throttle else None,
        )
        calls.append((i, checked, decide))
    if not calls:
        return
    try:
        decisions: list[limits.BatchDecision | Exception] = limiter().decide_many([call for _, _, call in calls])
    except (RedisConnectionError, RedisTimeoutError) as error:
        decisions = [error] * len(calls)
    for (i, checked, _), decision in zip(calls, decisions, strict=True):
        send, template = sends[i], sends[i].template
        if isinstance(decision, Exception):
            if not isinstance(decision, (RedisConnectionError, RedisTimeoutError)):
                results[i] = Unavailable(f"Limits cannot be checked right now ({decision}); nothing was sent.")
            elif checked:
                results[i] = Unavailable("Frequency limits cannot be checked right now (Redis is down); nothing was sent.")
            else:
                metrics.LIMITS_DEGRADED.inc()
            continue
        if decision.throttled_seconds:
            results[i] = _rate_limited(decision.throttled_seconds)
            continue
        if not decision.quota_ok:
            account = send.account
            left = max(0, account.daily_quota - decision.used_today)
            results[i] = QuotaExceeded(
                f"The daily quota of {account.daily_quota} messages is used up ({left} left); nothing was sent.",
                headers={"Retry-After": str(_seconds_to_midnight(send.now, account.timezone))},
            )
            continue
        for entry, outcome in zip(checked, decision.outcomes, strict=True):
            if outcome == limits.DUPLICATE:
                entry.refuse(Status.SUPPRESSED, "duplicate", "The same content went to this address within the dedup window.")
            elif outcome == limits.FREQUENCY_LIMITED:
                entry.refuse(Status.REJECTED, "frequency_limited", f"Too many {template.category} messages to this address.")


def _write(sends: list[_Send]) -> list[SendResult | object]:
    """Writes a group of sends in one transaction; returns each one's response or error. It never
    raises: a group is not written a second time (its limits are already counted)."""
    results: list[SendResult | object | None] = [None] * len(sends)
    first: dict[tuple[uuid.UUID, str], int] = {}
    repeats: dict[int, int] = {}  # a key repeated within the group → where it came first
    for i, send in enumerate(sends):
        if send.idempotency_key:
            came_first = first.setdefault((send.account.id, send.idempotency_key), i)
            if came_first != i:
                repeats[i] = came_first
    own = [i for i in range(len(sends)) if i not in repeats]
    metrics.SEND_GROUP_REQUESTS.observe(len(sends))
    started = time.perf_counter()
    rows = _write_in_transaction([sends[i] for i in own], own, results)
    if rows is None and len(own) > 1:
        # The group's transaction failed (a deadlock, a row the database refused, …): each send whose
        # outcome was still open is written again on its own, with the limits it already has — so
        # one bad request fails only itself, and nobody's limits are counted twice.
        rows = []
        for i in own:
            if results[i] is None:
                rows += _write_in_transaction([sends[i]], [i], results) or []
    # Published by the caller whose thread wrote the group (sends[0] is its own request), after it
    # has answered the group and handed the next group over: the next write need not wait for it.
    sends[0].to_publish += rows or []
    metrics.SEND_GROUP_SECONDS.observe(time.perf_counter() - started)
    for i, came_first in repeats.items():
        result = results[came_first]
        same = isinstance(result, SendResponse) and sends[came_first].fingerprint == sends[i].fingerprint
        results[i] = result if same else _AGAIN
    return results  # type: ignore[return-value]


def _write_in_transaction(
    sends: list[_Send], where: list[int], results: list[SendResult | object | None]
) -> list[publish.OutboxRow] | None:
    """`_write_own` in a transaction; on failure every send still open gets its own copy of the
    error (one exception object is not raised in several threads) and None is returned."""
    try:
        with transaction.atomic():
            return _write_own(sends, where, results)
    except Exception as error:  # each caller raises its own (a database error as the 503)
        logger.warning("writing %d send request(s) failed: %r", len(sends), error)
        for i, send in zip(where, sends, strict=True):
            send.written = False
            if not isinstance(results[i], ServiceError):  # a refusal decided before the failure stands
                results[i] = None if len(sends) > 1 else _copy_error(error)
        return None


def _copy_error(error: Exception) -> Exception:
    if isinstance(error, (DatabaseError, psycopg.Error)):
        failure: Exception = Unavailable(f"The messages could not be stored: {error}")
    else:
        failure = RuntimeError(f"The messages could not be stored: {error!r}")
    failure.__cause__ = error
    return failure


def _write_own(sends: list[_Send], where: list[int], results: list[SendResult | object | None]) -> list[publish.OutboxRow]:
    """The group's writes, in the caller's transaction; returns the outbox rows to publish. A send
    written again after a failed group keeps the limit outcomes it got (they are on its entries)."""
    own_results: list[SendResult | None] = [None] * len(sends)
    _claim_keys(sends, own_results)
    _apply_limits(sends, own_results)
    written: list[_Send] = []
    bodies: list[bytes] = []
    lanes: dict[str, list[uuid.UUID]] = {}
    for send, result in zip(sends, own_results, strict=True):
        if result is not None:
            continue
        if not send.finalized:
            _schedule(send.entries, send.template, send.request, send.now)
            _seal(send.entries, send.template, send.secret_params)
            send.finalized = True
        lanes.setdefault(send.lane, []).extend(
            mid for e, mid in zip(send.entries, send.message_ids, strict=True) if e.status == Status.QUEUED
        )
        bodies.append(_response_body(send.entries, send.message_ids, send.batch_id))
        written.append(send)
    refused = [s.record_id for s, r in zip(sends, own_results, strict=True) if r is not None and s.record_id]
    messages: list[dict[str, Any]] | None = None
    if sum(len(s.entries) for s in written) <= INLINE_MAX_MESSAGES:
        messages = [row for send in written for row in _json_rows(send)]
    else:
        lines = [line for send in written for line in _copy_lines(send)]
        with connection.cursor() as cursor, cursor.cursor.copy(f"COPY dispatch_message ({_MESSAGE_COLUMNS}) FROM STDIN") as copy:
            copy.write("\n".join(lines) + "\n")
    rows = publish.chunk_rows(lanes)  # the group's queued messages share tasks, lane by lane
    if written or refused:
        _finish(written=written, bodies=bodies, rows=rows, refused=refused, messages=messages)
    responses = dict(zip(map(id, written), bodies, strict=True))
    for send, result, i in zip(sends, own_results, where, strict=True):
        send.written = id(send) in responses
        results[i] = SendResponse(202, responses[id(send)]) if send.written else result
    return rows


SENDS: GroupCommit[_Send, SendResult | object] = GroupCommit(_write)


def take_request_token(account: Account) -> None:
    """The account's request rate for a request that is not written (invalid): 429 when over it."""
    decision = throttling.take_request_token(account)
    if not decision.allowed:
        raise _rate_limited(decision.retry_after_seconds)


def _publish(send: _Send) -> None:
    """Publishes the tasks of the group this request's thread wrote: now, or alone inside a caller's
    transaction when that commits. Whatever happens here, the sends stand; the relay publishes what
    this did not."""
    rows, send.to_publish = send.to_publish, []
    if rows:
        try:
            publish.publish_on_commit(rows)
        except Exception:
            logger.exception("publish after commit failed; the outbox relay will publish what it missed")


def message_send(
    *,
    account: Account,
    data: Any,
    idempotency_key: str | None = None,
    secret_params: frozenset[str] = frozenset(),
    throttle: bool = False,
) -> SendResponse:
    """`throttle`: the request takes a token of the account's request rate (the send API, whose view
    leaves that to this): with its limits, in the same script call — a request over the rate is
    refused (429 rate_limited) before anything is counted, and its Idempotency-Key is freed. An
    invalid request takes its token on its own, so that garbage is throttled too."""
    try:
        send = _prepare(account=account, data=data, idempotency_key=idempotency_key, secret_params=secret_params)
    except ServiceError:
        if throttle:
            take_request_token(account)
        raise
    send.throttle = throttle
    # Inside a caller's transaction the write must be part of it, not of another thread's commit.
    alone = len(send.entries) > GROUP_MAX_ENTRIES or connection.in_atomic_block
    result = _AGAIN
    while result is _AGAIN:
        result = _write([send])[0] if alone else SENDS.submit(send)
        _publish(send)
    if isinstance(result, Exception):
        raise result
    accepted = sum(1 for e in send.entries if e.status in (Status.QUEUED, Status.SCHEDULED)) if send.written else 0
    if accepted:
        metrics.MESSAGES_ACCEPTED.labels(send.template.channel, send.lane).inc(accepted)
    return result  # type: ignore[return-value]
