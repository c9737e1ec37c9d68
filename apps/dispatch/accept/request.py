"""A send request's shape: parsing and validating the body, before anything is looked up."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from apps.dispatch.contacts import ADDRESS_KEYS
from messaging_center.errors import ServiceError, ValidationFailed
from messaging_center.vocabulary import Priority

MAX_RECIPIENTS = 1000
MAX_TTL_SECONDS = 7 * 24 * 3600
SEND_AT_PAST_TOLERANCE = dt.timedelta(minutes=5)
# A scheduled message waits as a row: kept within every account's retention (at least 1 day past it is
# not promised) and within the window of partitions made ahead (API.md, Sending).
SEND_AT_MAX_AHEAD = dt.timedelta(days=30)
ENTRY_KEYS = frozenset({*ADDRESS_KEYS, "user_id", "params"})
IDENTITY_KEYS = frozenset({*ADDRESS_KEYS, "user_id"})
TOP_LEVEL_KEYS = frozenset({"template", "to", "params", "priority", "send_at", "ttl"})


class MissingParams(ServiceError):
    code = "missing_params"


class TooManyRecipients(ServiceError):
    code = "too_many_recipients"


@dataclass
class SendRequest:
    template_code: str
    entries: list[dict[str, Any]]
    params: dict[str, str]
    priority: str | None
    send_at: dt.datetime | None
    ttl: int | None


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
    if parsed > now + SEND_AT_MAX_AHEAD:
        errors["send_at"] = ["Is more than 30 days ahead."]
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
        template = ""
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
    if priority is not None and priority not in Priority.values:
        errors["priority"] = [f"Must be one of {', '.join(Priority.values)}."]
    ttl = data.get("ttl")
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int) or not 0 < ttl <= MAX_TTL_SECONDS):
        errors["ttl"] = [f"Must be an integer number of seconds from 1 to {MAX_TTL_SECONDS}."]
    send_at = _parse_send_at(data.get("send_at"), errors, now)
    if errors:
        first = next(iter(errors))
        raise ValidationFailed(f"Invalid {first}: {errors[first][0]}", errors=errors)
    return SendRequest(template, entries, shared, priority, send_at, ttl)
