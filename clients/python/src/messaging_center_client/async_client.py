"""The asyncio client: the same surface as `Client`, with `await` (and `async for` over lists)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any

import httpx

from messaging_center_client import _ops
from messaging_center_client._http import AsyncTransport, Config, Request
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


async def _pages(transport: AsyncTransport, request: Callable[[str | None], Request]) -> AsyncIterator[Mapping[str, Any]]:
    cursor: str | None = None
    while True:
        items, cursor = _ops.page_items(await transport.request(request(cursor)))
        for item in items:
            yield item
        if cursor is None:
            return


class AsyncMessages:
    def __init__(self, transport: AsyncTransport) -> None:
        self._t = transport

    async def send(
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
        """See `Client.messages.send`: retries reuse the `Idempotency-Key`, so a send is never doubled."""
        request = _ops.send(
            template=template, to=to, params=params, priority=priority, send_at=send_at, ttl=ttl, idempotency_key=idempotency_key
        )
        return SendResult.from_dict(_ops.obj(await self._t.request(request)), idempotency_key=request.idempotency_key or "")

    async def get(self, message_id: str) -> Message:
        return Message.from_dict(_ops.obj(await self._t.request(_ops.message(message_id))))

    async def list(self, **filters: QueryValue) -> AsyncIterator[Message]:
        """`async for m in client.messages.list(batch_id=…)`: every page, following the cursor."""
        params = _ops.query(filters, _ops.MESSAGE_FILTERS, "message")
        async for item in _pages(self._t, lambda cursor: _ops.messages_page(params, cursor)):
            yield Message.from_dict(item)

    async def list_page(self, *, cursor: str | None = None, **filters: QueryValue) -> Page[Message]:
        params = _ops.query(filters, _ops.MESSAGE_FILTERS, "message")
        items, next_cursor = _ops.page_items(await self._t.request(_ops.messages_page(params, cursor)))
        return Page([Message.from_dict(item) for item in items], next_cursor)

    async def cancel(self, message_id: str) -> Message:
        return Message.from_dict(_ops.obj(await self._t.request(_ops.cancel(message_id))))


class AsyncTemplates:
    def __init__(self, transport: AsyncTransport) -> None:
        self._t = transport

    async def create(self, *, code: str, name: str, channel: str, category: str, content: str, **fields: Any) -> Template:
        body = {"code": code, "name": name, "channel": channel, "category": category, "content": content, **fields}
        return Template.from_dict(_ops.obj(await self._t.request(_ops.template_create(body))))

    async def get(self, code: str) -> Template:
        return Template.from_dict(_ops.obj(await self._t.request(_ops.template(code))))

    async def list(self, **filters: QueryValue) -> AsyncIterator[Template]:
        params = _ops.query(filters, _ops.TEMPLATE_FILTERS, "template")
        async for item in _pages(self._t, lambda cursor: _ops.templates_page(params, cursor)):
            yield Template.from_dict(item)

    async def update(self, code: str, **fields: Any) -> Template:
        return Template.from_dict(_ops.obj(await self._t.request(_ops.template_update(code, fields))))

    async def delete(self, code: str) -> None:
        await self._t.request(_ops.template_delete(code))

    async def preview(self, code: str, params: Params | None = None) -> Preview:
        return Preview.from_dict(_ops.obj(await self._t.request(_ops.template_preview(code, params))))


class AsyncPreferences:
    def __init__(self, transport: AsyncTransport) -> None:
        self._t = transport

    async def get(self, user_id: str) -> dict[str, dict[str, bool]]:
        return _ops.preferences_body(await self._t.request(_ops.preferences(user_id)))

    async def update(self, user_id: str, changes: Mapping[str, Mapping[str, bool]]) -> dict[str, dict[str, bool]]:
        return _ops.preferences_body(await self._t.request(_ops.preferences_update(user_id, changes)))


class AsyncInbox:
    def __init__(self, transport: AsyncTransport) -> None:
        self._t = transport

    async def list(self, user_id: str, *, unread: bool = False, limit: int | None = None) -> AsyncIterator[InboxItem]:
        async for item in _pages(self._t, lambda cursor: _ops.inbox_page(user_id, unread=unread, limit=limit, cursor=cursor)):
            yield InboxItem.from_dict(item)

    async def page(self, user_id: str, *, unread: bool = False, limit: int | None = None, cursor: str | None = None) -> InboxPage:
        body = _ops.obj(await self._t.request(_ops.inbox_page(user_id, unread=unread, limit=limit, cursor=cursor)))
        items, next_cursor = _ops.page_items(body)
        unread_count = body.get("unread_count")
        return InboxPage(
            [InboxItem.from_dict(i) for i in items], next_cursor, unread_count if isinstance(unread_count, int) else 0
        )

    async def read(self, user_id: str, message_id: str) -> InboxItem:
        return InboxItem.from_dict(_ops.obj(await self._t.request(_ops.inbox_read(user_id, message_id))))

    async def read_all(self, user_id: str) -> int:
        return _ops.updated_count(await self._t.request(_ops.inbox_read_all(user_id)))


class AsyncRecipients:
    def __init__(self, transport: AsyncTransport) -> None:
        self._t = transport
        self.preferences = AsyncPreferences(transport)
        self.inbox = AsyncInbox(transport)

    async def put(
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
        fields = {
            "phone": phone,
            "email": email,
            "wechat_openid": wechat_openid,
            "wecom_userid": wecom_userid,
            "push_tokens": push_tokens,
            "timezone": timezone,
        }
        return Recipient.from_dict(_ops.obj(await self._t.request(_ops.recipient_put(user_id, fields))))

    async def get(self, user_id: str) -> Recipient:
        return Recipient.from_dict(_ops.obj(await self._t.request(_ops.recipient(user_id))))


class AsyncVerifications:
    def __init__(self, transport: AsyncTransport) -> None:
        self._t = transport

    async def send(self, *, to: Entry, template: str) -> Verification:
        return Verification.from_dict(_ops.obj(await self._t.request(_ops.verification_send(to, template))))

    async def check(self, *, to: Entry, code: str) -> VerificationCheck:
        return VerificationCheck.from_dict(_ops.obj(await self._t.request(_ops.verification_check(to, code))))


class AsyncAccountResource:
    def __init__(self, transport: AsyncTransport) -> None:
        self._t = transport

    async def get(self) -> Account:
        return Account.from_dict(_ops.obj(await self._t.request(_ops.account())))

    async def update(self, *, callback_url: str | Unset | None = UNSET, rotate_callback_secret: bool = False) -> Account:
        return Account.from_dict(_ops.obj(await self._t.request(_ops.account_update(callback_url, rotate_callback_secret))))


class AsyncClient:
    """`Client` for asyncio: `async with AsyncClient(...) as mc: await mc.messages.send(...)`."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | httpx.Timeout | None = None,
        max_retries: int = 3,
        headers: Mapping[str, str] | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        config = Config.resolve(base_url, api_key, timeout=timeout, max_retries=max_retries, headers=headers)
        self._transport = AsyncTransport(config, http_client)
        self.messages = AsyncMessages(self._transport)
        self.templates = AsyncTemplates(self._transport)
        self.recipients = AsyncRecipients(self._transport)
        self.verifications = AsyncVerifications(self._transport)
        self.account = AsyncAccountResource(self._transport)

    @property
    def base_url(self) -> str:
        return self._transport.config.root

    async def stats(
        self,
        group_by: str | None = None,
        *,
        created_after: dt.datetime | str | None = None,
        created_before: dt.datetime | str | None = None,
    ) -> Stats:
        return Stats.from_dict(_ops.obj(await self._transport.request(_ops.stats(group_by, created_after, created_before))))

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()
