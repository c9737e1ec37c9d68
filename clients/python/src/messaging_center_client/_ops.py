"""The requests of every operation, built once for the sync and the async client alike."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from messaging_center_client._http import Request, segment
from messaging_center_client.errors import InvalidResponseError

Entry = Mapping[str, Any]
To = Entry | Sequence[Entry]
Params = Mapping[str, str | int | float]
QueryValue = str | int | bool | dt.datetime | None

MESSAGE_FILTERS = frozenset(
    {
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
        "limit",
    }
)
TEMPLATE_FILTERS = frozenset({"channel", "category", "status", "limit"})


class Unset(enum.Enum):
    """Marks an argument left out, where None means something (e.g. clear the callback URL)."""

    UNSET = enum.auto()


UNSET = Unset.UNSET


def timestamp(value: dt.datetime | str, name: str) -> str:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError(f"{name}: give a timezone-aware datetime (the API needs a zone).")
        return value.isoformat()
    return value


def query(filters: Mapping[str, QueryValue], allowed: frozenset[str], what: str) -> dict[str, str]:
    unknown = sorted(set(filters) - allowed)
    if unknown:
        raise TypeError(f"Unknown {what} filter(s): {', '.join(unknown)}; known: {', '.join(sorted(allowed))}.")
    params: dict[str, str] = {}
    for name, value in filters.items():
        if value is None:
            continue
        if isinstance(value, bool):
            params[name] = "true" if value else "false"
        elif isinstance(value, dt.datetime):
            params[name] = timestamp(value, name)
        else:
            params[name] = str(value)
    return params


def with_cursor(params: Mapping[str, str], cursor: str | None) -> dict[str, str]:
    return {**params, "cursor": cursor} if cursor else dict(params)


def obj(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidResponseError(f"Expected a JSON object, got {type(value).__name__}.", code="invalid_response")
    return value


def page_items(value: Any) -> tuple[list[Mapping[str, Any]], str | None]:
    body = obj(value)
    results = body.get("results")
    items = [item for item in results if isinstance(item, Mapping)] if isinstance(results, list) else []
    cursor = body.get("next")
    return items, cursor if isinstance(cursor, str) and cursor else None


def new_idempotency_key() -> str:
    return str(uuid.uuid4())


def _entries(to: object) -> dict[str, Any] | list[dict[str, Any]]:
    if isinstance(to, Mapping):
        return dict(to)
    if isinstance(to, Sequence) and not isinstance(to, (str, bytes)) and all(isinstance(e, Mapping) for e in to):
        return [dict(entry) for entry in to]
    raise TypeError('to: one entry such as {"phone": "+8613800138000"} or {"user_id": "u42"}, or a list of them.')


def send(
    *,
    template: str,
    to: To,
    params: Params | None,
    priority: str | None,
    send_at: dt.datetime | str | None,
    ttl: int | None,
    idempotency_key: str | None,
) -> Request:
    body: dict[str, Any] = {"template": template, "to": _entries(to)}
    if params:
        body["params"] = dict(params)
    if priority is not None:
        body["priority"] = priority
    if send_at is not None:
        body["send_at"] = timestamp(send_at, "send_at")
    if ttl is not None:
        body["ttl"] = ttl
    return Request("POST", "/messages", json=body, idempotency_key=idempotency_key or new_idempotency_key())


def message(message_id: str) -> Request:
    return Request("GET", f"/messages/{segment(message_id)}")


def cancel(message_id: str) -> Request:
    return Request("POST", f"/messages/{segment(message_id)}/cancel", json={})


def messages_page(params: Mapping[str, str], cursor: str | None) -> Request:
    return Request("GET", "/messages", params=with_cursor(params, cursor))


def template_create(fields: Mapping[str, Any]) -> Request:
    return Request("POST", "/templates", json=dict(fields))


def template(code: str) -> Request:
    return Request("GET", f"/templates/{segment(code)}")


def template_update(code: str, fields: Mapping[str, Any]) -> Request:
    return Request("PATCH", f"/templates/{segment(code)}", json=dict(fields))


def template_delete(code: str) -> Request:
    return Request("DELETE", f"/templates/{segment(code)}")


def template_preview(code: str, params: Params | None) -> Request:
    return Request("POST", f"/templates/{segment(code)}/preview", json={"params": dict(params or {})})


def templates_page(params: Mapping[str, str], cursor: str | None) -> Request:
    return Request("GET", "/templates", params=with_cursor(params, cursor))


def recipient_put(user_id: str, fields: Mapping[str, Any]) -> Request:
    body = {name: value for name, value in fields.items() if value is not None}
    if "push_tokens" in body:
        body["push_tokens"] = [dict(token) for token in body["push_tokens"]]
    return Request("PUT", f"/recipients/{segment(user_id)}", json=body)


def recipient(user_id: str) -> Request:
    return Request("GET", f"/recipients/{segment(user_id)}")


def preferences(user_id: str) -> Request:
    return Request("GET", f"/recipients/{segment(user_id)}/preferences")


def preferences_update(user_id: str, changes: Mapping[str, Mapping[str, bool]]) -> Request:
    return Request("PATCH", f"/recipients/{segment(user_id)}/preferences", json={k: dict(v) for k, v in changes.items()})


def preferences_body(value: Any) -> dict[str, dict[str, bool]]:
    return {
        str(category): {str(channel): on is True for channel, on in obj(channels).items()}
        for category, channels in obj(value).items()
    }


def inbox_page(user_id: str, *, unread: bool, limit: int | None, cursor: str | None) -> Request:
    params = query({"unread": unread or None, "limit": limit}, frozenset({"unread", "limit"}), "inbox")
    return Request("GET", f"/recipients/{segment(user_id)}/inbox", params=with_cursor(params, cursor))


def inbox_read(user_id: str, message_id: str) -> Request:
    return Request("POST", f"/recipients/{segment(user_id)}/inbox/{segment(message_id)}/read", json={})


def inbox_read_all(user_id: str) -> Request:
    return Request("POST", f"/recipients/{segment(user_id)}/inbox/read-all", json={})


def updated_count(value: Any) -> int:
    updated = obj(value).get("updated")
    return updated if isinstance(updated, int) else 0


def verification_send(to: Entry, template: str) -> Request:
    return Request("POST", "/verifications", json={"to": dict(to), "template": template})


def verification_check(to: Entry, code: str) -> Request:
    return Request("POST", "/verifications/check", json={"to": dict(to), "code": code})


def stats(group_by: str | None, created_after: dt.datetime | str | None, created_before: dt.datetime | str | None) -> Request:
    filters: dict[str, QueryValue] = {"group_by": group_by, "created_after": created_after, "created_before": created_before}
    return Request("GET", "/stats", params=query(filters, frozenset(filters), "stats"))


def account() -> Request:
    return Request("GET", "/account")


def account_update(callback_url: str | Unset | None, rotate_callback_secret: bool) -> Request:
    body: dict[str, Any] = {}
    if callback_url is not UNSET:
        body["callback_url"] = callback_url
    if rotate_callback_secret:
        body["rotate_callback_secret"] = True
    return Request("PATCH", "/account", json=body)
