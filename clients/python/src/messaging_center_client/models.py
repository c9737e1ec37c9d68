"""What the API answers, as small typed dataclasses.

Each result keeps the whole JSON object it was read from in `raw`, so that fields the service adds
after this SDK was released are not lost (`message.raw["new_field"]`). Missing fields read as None
(or 0, or empty), never as an error: the reader is tolerant, the contract only grows.
Timestamps are timezone-aware `datetime`s.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")

# A message in one of these will not change status any more, except that a late receipt may still
# turn `undelivered` or `expired` into `delivered` (API.md, the state machine).
FINAL_STATUSES = frozenset({"delivered", "undelivered", "failed", "expired", "canceled", "suppressed", "rejected"})
ACCEPTED_STATUSES = frozenset({"queued", "scheduled"})


def _str(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    return "" if value is None else str(value)


def _opt_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return None if value is None else str(value)


def _int(data: Mapping[str, Any], key: str) -> int:
    value = data.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _opt_int(data: Mapping[str, Any], key: str) -> int | None:
    value = data.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _opt_float(data: Mapping[str, Any], key: str) -> float | None:
    value = data.get(key)
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _time(data: Mapping[str, Any], key: str) -> dt.datetime | None:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        return None
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError:
        return None


def _dict(data: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    return dict(value) if isinstance(value, Mapping) else {}


def _objects(data: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    value = data.get(key)
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list: `next` is the cursor of the following page, None on the last."""

    results: list[T]
    next: str | None


@dataclass(frozen=True)
class SendOutcome:
    """One entry of a send, in request order: `status` is queued, scheduled, suppressed or rejected."""

    id: str
    status: str
    code: str | None = None
    detail: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def accepted(self) -> bool:
        return self.status in ACCEPTED_STATUSES

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SendOutcome:
        return cls(
            id=_str(data, "id"),
            status=_str(data, "status"),
            code=_opt_str(data, "code"),
            detail=_opt_str(data, "detail"),
            raw=data,
        )


@dataclass(frozen=True)
class SendResult:
    """The answer to a send. `idempotency_key` is the key the request carried: sending the same body
    with it again within 24 h returns this same result and sends nothing."""

    batch_id: str
    accepted: int
    rejected: int
    messages: list[SendOutcome]
    idempotency_key: str
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, idempotency_key: str) -> SendResult:
        return cls(
            batch_id=_str(data, "batch_id"),
            accepted=_int(data, "accepted"),
            rejected=_int(data, "rejected"),
            messages=[SendOutcome.from_dict(m) for m in _objects(data, "messages")],
            idempotency_key=idempotency_key,
            raw=data,
        )


@dataclass(frozen=True)
class MessageEvent:
    """One step of a message's timeline (oldest first)."""

    status: str
    at: dt.datetime | None
    detail: str | None = None
    code: str | None = None
    provider: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MessageEvent:
        return cls(
            status=_str(data, "status"),
            at=_time(data, "at"),
            detail=_opt_str(data, "detail"),
            code=_opt_str(data, "code"),
            provider=_opt_str(data, "provider"),
            raw=data,
        )


@dataclass(frozen=True)
class Message:
    """A message. `events` is filled by `messages.get` and `messages.cancel`; lists leave it empty."""

    id: str
    batch_id: str | None
    template: str | None
    channel: str | None
    category: str | None
    priority: str | None
    to: dict[str, Any]
    content: str | None
    status: str
    code: str | None
    detail: str | None
    provider: str | None
    provider_message_id: str | None
    attempts: int
    segments: int | None
    created_at: dt.datetime | None
    scheduled_at: dt.datetime | None
    sent_at: dt.datetime | None
    delivered_at: dt.datetime | None
    expires_at: dt.datetime | None
    events: list[MessageEvent]
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Message:
        return cls(
            id=_str(data, "id"),
            batch_id=_opt_str(data, "batch_id"),
            template=_opt_str(data, "template"),
            channel=_opt_str(data, "channel"),
            category=_opt_str(data, "category"),
            priority=_opt_str(data, "priority"),
            to=_dict(data, "to"),
            content=_opt_str(data, "content"),
            status=_str(data, "status"),
            code=_opt_str(data, "code"),
            detail=_opt_str(data, "detail"),
            provider=_opt_str(data, "provider"),
            provider_message_id=_opt_str(data, "provider_message_id"),
            attempts=_int(data, "attempts"),
            segments=_opt_int(data, "segments"),
            created_at=_time(data, "created_at"),
            scheduled_at=_time(data, "scheduled_at"),
            sent_at=_time(data, "sent_at"),
            delivered_at=_time(data, "delivered_at"),
            expires_at=_time(data, "expires_at"),
            events=[MessageEvent.from_dict(e) for e in _objects(data, "events")],
            raw=data,
        )


@dataclass(frozen=True)
class Template:
    code: str
    name: str
    channel: str
    category: str
    content: str
    title: str | None
    variables: list[str]
    sms_signature: str | None
    priority: str | None
    ttl: int | None
    provider_template_ids: dict[str, Any]
    status: str | None
    created_at: dt.datetime | None
    updated_at: dt.datetime | None
    id: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Template:
        variables = data.get("variables")
        return cls(
            code=_str(data, "code"),
            name=_str(data, "name"),
            channel=_str(data, "channel"),
            category=_str(data, "category"),
            content=_str(data, "content"),
            title=_opt_str(data, "title"),
            variables=[str(v) for v in variables] if isinstance(variables, list) else [],
            sms_signature=_opt_str(data, "sms_signature"),
            priority=_opt_str(data, "priority"),
            ttl=_opt_int(data, "ttl"),
            provider_template_ids=_dict(data, "provider_template_ids"),
            status=_opt_str(data, "status"),
            created_at=_time(data, "created_at"),
            updated_at=_time(data, "updated_at"),
            id=_opt_str(data, "id"),
            raw=data,
        )


@dataclass(frozen=True)
class Preview:
    """A template rendered with params; `segments` and `encoding` for SMS (the signature counts)."""

    content: str
    title: str | None = None
    segments: int | None = None
    encoding: str | None = None
    html: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Preview:
        return cls(
            content=_str(data, "content"),
            title=_opt_str(data, "title"),
            segments=_opt_int(data, "segments"),
            encoding=_opt_str(data, "encoding"),
            html=_opt_str(data, "html"),
            raw=data,
        )


@dataclass(frozen=True)
class PushToken:
    platform: str
    token: str
    active: bool = True

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PushToken:
        return cls(platform=_str(data, "platform"), token=_str(data, "token"), active=data.get("active") is not False)


@dataclass(frozen=True)
class Recipient:
    user_id: str
    phone: str | None
    email: str | None
    wechat_openid: str | None
    wecom_userid: str | None
    push_tokens: list[PushToken]
    timezone: str | None
    created_at: dt.datetime | None
    updated_at: dt.datetime | None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Recipient:
        return cls(
            user_id=_str(data, "user_id"),
            phone=_opt_str(data, "phone"),
            email=_opt_str(data, "email"),
            wechat_openid=_opt_str(data, "wechat_openid"),
            wecom_userid=_opt_str(data, "wecom_userid"),
            push_tokens=[PushToken.from_dict(t) for t in _objects(data, "push_tokens")],
            timezone=_opt_str(data, "timezone"),
            created_at=_time(data, "created_at"),
            updated_at=_time(data, "updated_at"),
            raw=data,
        )


@dataclass(frozen=True)
class InboxItem:
    id: str
    title: str | None
    content: str
    created_at: dt.datetime | None
    read_at: dt.datetime | None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InboxItem:
        return cls(
            id=_str(data, "id"),
            title=_opt_str(data, "title"),
            content=_str(data, "content"),
            created_at=_time(data, "created_at"),
            read_at=_time(data, "read_at"),
            raw=data,
        )


@dataclass(frozen=True)
class InboxPage(Page[InboxItem]):
    unread_count: int = 0


@dataclass(frozen=True)
class Verification:
    """A verification code on its way: the code itself is never returned."""

    id: str
    message_id: str
    expires_at: dt.datetime | None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Verification:
        return cls(id=_str(data, "id"), message_id=_str(data, "message_id"), expires_at=_time(data, "expires_at"), raw=data)


@dataclass(frozen=True)
class VerificationCheck:
    """`valid`, or why not: `reason` is invalid, expired or too_many_attempts."""

    valid: bool
    reason: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __bool__(self) -> bool:
        return self.valid

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VerificationCheck:
        return cls(valid=data.get("valid") is True, reason=_opt_str(data, "reason"), raw=data)


@dataclass(frozen=True)
class StatsGroup:
    """One row of `stats`: counts, rates (0 to 1, None without a denominator) and latencies."""

    key: str | None
    total: int
    sent: int
    delivered: int
    undelivered: int
    failed: int
    expired: int
    suppressed: int
    rejected: int
    attempts: int | None
    errors: dict[str, int]
    success_rate: float | None
    duplicates: int | None
    receipt_rate: float | None
    delivery_rate: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    cost: float | None
    currency: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StatsGroup:
        errors = _dict(data, "errors")
        return cls(
            key=_opt_str(data, "key"),
            total=_int(data, "total"),
            sent=_int(data, "sent"),
            delivered=_int(data, "delivered"),
            undelivered=_int(data, "undelivered"),
            failed=_int(data, "failed"),
            expired=_int(data, "expired"),
            suppressed=_int(data, "suppressed"),
            rejected=_int(data, "rejected"),
            attempts=_opt_int(data, "attempts"),
            errors={str(code): n for code, n in errors.items() if isinstance(n, int)},
            success_rate=_opt_float(data, "success_rate"),
            duplicates=_opt_int(data, "duplicates"),
            receipt_rate=_opt_float(data, "receipt_rate"),
            delivery_rate=_opt_float(data, "delivery_rate"),
            latency_p50_ms=_opt_float(data, "latency_p50_ms"),
            latency_p95_ms=_opt_float(data, "latency_p95_ms"),
            cost=_opt_float(data, "cost"),
            currency=_opt_str(data, "currency"),
            raw=data,
        )


@dataclass(frozen=True)
class Stats:
    groups: list[StatsGroup]
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Stats:
        return cls(groups=[StatsGroup.from_dict(g) for g in _objects(data, "groups")], raw=data)


@dataclass(frozen=True)
class Account:
    """The calling account. `callback_secret` is only set in the answer to the update that first
    sets a callback URL (or rotates the secret): store it then, it is not shown again."""

    id: str
    name: str
    rate_limit: int | None
    daily_quota: int | None
    used_today: int | None
    retention_days: int | None
    callback_url: str | None
    callback_secret_set: bool
    callback_secret: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Account:
        return cls(
            id=_str(data, "id"),
            name=_str(data, "name"),
            rate_limit=_opt_int(data, "rate_limit"),
            daily_quota=_opt_int(data, "daily_quota"),
            used_today=_opt_int(data, "used_today"),
            retention_days=_opt_int(data, "retention_days"),
            callback_url=_opt_str(data, "callback_url"),
            callback_secret_set=data.get("callback_secret_set") is True,
            callback_secret=_opt_str(data, "callback_secret"),
            raw=data,
        )
