"""One send request, validated, rendered and checked against preferences: what the write needs."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.utils import timezone

from apps.accounts.models import Account
from apps.accounts.selectors import PreferencesQuery, preferences_query
from apps.dispatch import outbox
from apps.dispatch.accept.entries import Entry, render_entries, resolve_addresses
from apps.dispatch.accept.idempotency import body_fingerprint
from apps.dispatch.accept.request import MissingParams, SendRequest, parse_request
from apps.dispatch.accept.templates import TEMPLATES, lane_for, template_or_error
from apps.dispatch.models import Status
from messaging_center import ids
from messaging_center.errors import DATABASE_DOWN, ServiceError


def send_preferences_query(send: PreparedSend, suffix: str) -> PreferencesQuery | None:
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


def apply_opt_outs(send: PreparedSend, opted_out: set[str]) -> None:
    template = send.template
    for entry in send.entries:
        if entry.status == Status.QUEUED and ((entry.user_id and entry.user_id in opted_out) or entry.address in opted_out):
            entry.refuse(Status.SUPPRESSED, "opted_out", f"The recipient opted out of {template.category} {template.channel}.")


@dataclass(eq=False)
class PreparedSend:
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
    to_publish: list[outbox.OutboxRow] = field(default_factory=list)  # the group's tasks, when it wrote them


def prepare_send(*, account: Account, data: Any, idempotency_key: str | None, secret_params: frozenset[str]) -> PreparedSend:
    now = timezone.now()
    request = parse_request(data, now=now)
    fingerprint = body_fingerprint(data) if idempotency_key else ""
    template = TEMPLATES.get_or_load(
        (account.id, request.template_code), lambda: template_or_error(account, request.template_code), stale_on=DATABASE_DOWN
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
    resolve_addresses(entries, request.entries, template.channel, account)
    render_entries(entries, template, request.params, request.entries)
    batch_id, *message_ids = ids.uuid7_many(1 + len(entries))
    return PreparedSend(
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
