"""The synchronous client: `Client(base_url=…, api_key=…)`, one attribute per part of the API."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any

import httpx

from messaging_center_client import _ops
from messaging_center_client._http import Config, Request, SyncTransport
from messaging_center_client._ops import UNSET, Entry, Params, QueryValue, To, Unset
from messaging_center_client.models import (
    Account,
    InboxItem,
    InboxPage,
    Message,
    Page,
    Preview,
    Recipient,
    SendResult,
    Stats,
    Template,
    Verification,
    VerificationCheck,
)


def _pages(transport: SyncTransport, request: Callable[[str | None], Request]) -> Iterator[Mapping[str, Any]]:
    cursor: str | None = None
    while True:
        items, cursor = _ops.page_items(transport.request(request(cursor)))
        yield from items
        if cursor is None:
            return


class Messages:
    def __init__(self, transport: SyncTransport) -> None:
        self._t = transport

    def send(
        self,
        *,
        template: str,
        to: To,
        params: Params | None = None,
        priority: str | None = None,
        send_at: dt.datetime | str | None = None,
        ttl: int | None = None,
        idempotency_key: str | None = None,
    ) -> SendResult:
        """Sends `template` to one entry or a list of up to 1,000 (`{"phone": …}`, `{"user_id": …}`,
        each with optional `params` overriding the shared `params`). The request carries
        `idempotency_key` (a new uuid4 unless given); retries reuse it, so a send is never doubled."""
        request = _ops.send(
            template=template, to=to, params=params, priority=priority, send_at=send_at, ttl=ttl, idempotency_key=idempotency_key
        )
        return SendResult.from_dict(_ops.obj(self._t.request(request)), idempotency_key=request.idempotency_key or "")

    def get(self, message_id: str) -> Message:
        """The message with its timeline (`events`)."""
        return Message.from_dict(_ops.obj(self._t.request(_ops.message(message_id))))

    def list(self, **filters: QueryValue) -> Iterator[Message]:
        """Every message matching the filters (newest first), following the cursor page by page.
        Filters: status, channel, template, category, batch_id, to, user_id, provider,
        created_after, created_before, q; `limit` is the page size (default 50, at most 500)."""
        params = _ops.query(filters, _ops.MESSAGE_FILTERS, "message")
        for item in _pages(self._t, lambda cursor: _ops.messages_page(params, cursor)):
            yield Message.from_dict(item)

    def list_page(self, *, cursor: str | None = None, **filters: QueryValue) -> Page[Message]:
        """One page, for callers that keep the cursor themselves."""
        params = _ops.query(filters, _ops.MESSAGE_FILTERS, "message")
        items, next_cursor = _ops.page_items(self._t.request(_ops.messages_page(params, cursor)))
        return Page([Message.from_dict(item) for item in items], next_cursor)

    def cancel(self, message_id: str) -> Message:
        """Cancels a `scheduled` or `queued` message; `NotCancelableError` once it left."""
        return Message.from_dict(_ops.obj(self._t.request(_ops.cancel(message_id))))


class Templates:
    def __init__(self, transport: SyncTransport) -> None:
        self._t = transport

    def create(self, *, code: str, name: str, channel: str, category: str, content: str, **fields: Any) -> Template:
        """Other fields: title, sms_signature, ttl, priority, provider_template_ids, dedup_window, frequency_limits."""
        body = {"code": code, "name": name, "channel": channel, "category": category, "content": content, **fields}
        return Template.from_dict(_ops.obj(self._t.request(_ops.template_create(body))))

    def get(self, code: str) -> Template:
        return Template.from_dict(_ops.obj(self._t.request(_ops.template(code))))

    def list(self, **filters: QueryValue) -> Iterator[Template]:
        """Every template (filters: channel, category, status; `limit` is the page size)."""
        params = _ops.query(filters, _ops.TEMPLATE_FILTERS, "template")
        for item in _pages(self._t, lambda cursor: _ops.templates_page(params, cursor)):
            yield Template.from_dict(item)

    def update(self, code: str, **fields: Any) -> Template:
        return Template.from_dict(_ops.obj(self._t.request(_ops.template_update(code, fields))))

    def delete(self, code: str) -> None:
        self._t.request(_ops.template_delete(code))

    def preview(self, code: str, params: Params | None = None) -> Preview:
        return Preview.from_dict(_ops.obj(self._t.request(_ops.template_preview(code, params))))


class Preferences:
    def __init__(self, transport: SyncTransport) -> None:
        self._t = transport

    def get(self, user_id: str) -> dict[str, dict[str, bool]]:
        """`{category: {channel: subscribed}}` for every category and channel."""
        return _ops.preferences_body(self._t.request(_ops.preferences(user_id)))

    def update(self, user_id: str, changes: Mapping[str, Mapping[str, bool]]) -> dict[str, dict[str, bool]]:
        """Merges `changes` (e.g. `{"marketing": {"sms": False}}`); returns every preference."""
        return _ops.preferences_body(self._t.request(_ops.preferences_update(user_id, changes)))


class Inbox:
    def __init__(self, transport: SyncTransport) -> None:
        self._t = transport

    def list(self, user_id: str, *, unread: bool = False, limit: int | None = None) -> Iterator[InboxItem]:
        """Every in-site message of the user (only unread ones with `unread=True`), newest first."""
        for item in _pages(self._t, lambda cursor: _ops.inbox_page(user_id, unread=unread, limit=limit, cursor=cursor)):
            yield InboxItem.from_dict(item)

    def page(self, user_id: str, *, unread: bool = False, limit: int | None = None, cursor: str | None = None) -> InboxPage:
        """One page, with the user's `unread_count`."""
        body = _ops.obj(self._t.request(_ops.inbox_page(user_id, unread=unread, limit=limit, cursor=cursor)))
        items, next_cursor = _ops.page_items(body)
        unread_count = body.get("unread_count")
        return InboxPage(
            [InboxItem.from_dict(i) for i in items], next_cursor, unread_count if isinstance(unread_count, int) else 0
        )

    def read(self, user_id: str, message_id: str) -> InboxItem:
        return InboxItem.from_dict(_ops.obj(self._t.request(_ops.inbox_read(user_id, message_id))))

    def read_all(self, user_id: str) -> int:
        """Marks every message of the user read; returns how many were unread."""
        return _ops.updated_count(self._t.request(_ops.inbox_read_all(user_id)))


class Recipients:
    def __init__(self, transport: SyncTransport) -> None:
        self._t = transport
        self.preferences = Preferences(transport)
        self.inbox = Inbox(transport)

    def put(
        self,
        user_id: str,
        *,
        phone: str | None = None,
        email: str | None = None,
        wechat_openid: str | None = None,
        wecom_userid: str | None = None,
        push_tokens: Sequence[Mapping[str, str]] | None = None,
        timezone: str | None = None,
    ) -> Recipient:
        """Stores the user's contacts, replacing the record (fields left out are cleared)."""
        fields = {
            "phone": phone,
            "email": email,
            "wechat_openid": wechat_openid,
            "wecom_userid": wecom_userid,
            "push_tokens": push_tokens,
            "timezone": timezone,
        }
        return Recipient.from_dict(_ops.obj(self._t.request(_ops.recipient_put(user_id, fields))))

    def get(self, user_id: str) -> Recipient:
        return Recipient.from_dict(_ops.obj(self._t.request(_ops.recipient(user_id))))


class Verifications:
    def __init__(self, transport: SyncTransport) -> None:
        self._t = transport

    def send(self, *, to: Entry, template: str) -> Verification:
        """Sends a fresh code (drawn by the service) through a verification template."""
        return Verification.from_dict(_ops.obj(self._t.request(_ops.verification_send(to, template))))

    def check(self, *, to: Entry, code: str) -> VerificationCheck:
        """`valid`, or `reason` (invalid, expired, too_many_attempts). Truthy when valid."""
        return VerificationCheck.from_dict(_ops.obj(self._t.request(_ops.verification_check(to, code))))


class AccountResource:
    def __init__(self, transport: SyncTransport) -> None:
        self._t = transport

    def get(self) -> Account:
        return Account.from_dict(_ops.obj(self._t.request(_ops.account())))

    def update(self, *, callback_url: str | Unset | None = UNSET, rotate_callback_secret: bool = False) -> Account:
        """Sets (None: clears) the status-callback URL. The answer that first sets one, or rotates the
        secret, carries `callback_secret`: keep it, it is shown once."""
        return Account.from_dict(_ops.obj(self._t.request(_ops.account_update(callback_url, rotate_callback_secret))))


class Client:
    """Messaging Center's API. `base_url` and `api_key` default to `MC_BASE_URL` and `MC_API_KEY`.

    Use it as a context manager, or call `close()`, to release its connections. Failed calls raise
    `MessagingCenterError` subclasses carrying the contract's `code`, `detail`, `errors`, `status`.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | httpx.Timeout | None = None,
        max_retries: int = 3,
        headers: Mapping[str, str] | None = None,
        http_client: httpx.Client | None = None,
    ) -> None:
        config = Config.resolve(base_url, api_key, timeout=timeout, max_retries=max_retries, headers=headers)
        self._transport = SyncTransport(config, http_client)
        self.messages = Messages(self._transport)
        self.templates = Templates(self._transport)
        self.recipients = Recipients(self._transport)
        self.verifications = Verifications(self._transport)
        self.account = AccountResource(self._transport)

    @property
    def base_url(self) -> str:
        return self._transport.config.root

    def stats(
        self,
        group_by: str | None = None,
        *,
        created_after: dt.datetime | str | None = None,
        created_before: dt.datetime | str | None = None,
    ) -> Stats:
        """Delivery figures grouped by provider, channel, template, day or segment."""
        return Stats.from_dict(_ops.obj(self._transport.request(_ops.stats(group_by, created_after, created_before))))

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
