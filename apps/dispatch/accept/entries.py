"""Each entry of a send: its address, rendered content, sealed secrets and schedule."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from apps.accounts.models import Account
from apps.accounts.selectors import recipients_by_user_id
from apps.dispatch.accept.request import SendRequest
from apps.dispatch.contacts import ADDRESS_KEYS, CHANNEL_ADDRESS_KEY, normalize_address, recipient_address
from apps.dispatch.models import Status
from apps.dispatch.policy.quiet_hours import quiet_until, zone
from apps.dispatch.sealing import MASK, seal_value
from apps.templates.services import template_render
from apps.templates.sms import sms_length


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


# --- entry decisions ------------------------------------------------------------------------------


def resolve_addresses(entries: list[Entry], raw: list[dict[str, Any]], channel: str, account: Account) -> dict[str, Any]:
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


def render_entries(entries: list[Entry], template: Any, shared: Mapping[str, str], raw: list[dict[str, Any]]) -> None:
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


def seal_entries(entries: list[Entry], template: Any, secret_params: frozenset[str]) -> None:
    """Secret params (a verification code) are stored encrypted and shown masked in the stored
    content; the worker decrypts and renders them again at send time (apps/dispatch/delivery/sending.py)."""
    for entry in entries:
        secrets_here = secret_params & entry.params.keys()
        if not secrets_here:
            continue
        masked = {**entry.params, **dict.fromkeys(secrets_here, MASK)}
        if entry.content:
            rendered = template_render(template=template, params=masked)
            entry.content, entry.title = rendered.content, rendered.title
        entry.params = {**entry.params, **{k: seal_value(entry.params[k]) for k in secrets_here}}


def seconds_to_midnight(now: dt.datetime, tz_name: str) -> int:
    local = now.astimezone(zone(tz_name))
    midnight = dt.datetime.combine(local.date() + dt.timedelta(days=1), dt.time(), tzinfo=zone(tz_name))
    return max(1, int((midnight - local).total_seconds()))


def schedule_entries(entries: list[Entry], template: Any, request: SendRequest, now: dt.datetime) -> None:
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
