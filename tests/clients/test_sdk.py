"""The Python SDK against the live service: every call is real HTTP to our app."""

from __future__ import annotations

import asyncio
import datetime as dt
import http.client
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from messaging_center_client import (
    APIConnectionError,
    AsyncClient,
    AuthenticationError,
    Client,
    IdempotencyConflictError,
    MissingParamsError,
    NotCancelableError,
    NotFoundError,
    RateLimitError,
    TemplateNotFoundError,
    TooManyRecipientsError,
    ValidationError,
    verify_signature,
)

from apps.dispatch.models import Message
from apps.dispatch.sealing import unseal
from apps.receipts.callbacks import signature_header
from messaging_center import ids

pytestmark = pytest.mark.django_db(transaction=True)


def phone(n: int) -> str:
    return f"+86139{n:08d}"


def in_db(account: Any) -> int:
    return Message.objects.filter(account=account.account).count()


def test_send_get_list_and_cancel(mc: Client, api: Any, sms_template: Any) -> None:
    batch = mc.messages.send(
        template="notice", to=[{"phone": phone(1)}, {"phone": phone(2), "params": {"n": "9"}}], params={"n": "1"}
    )
    assert (batch.accepted, batch.rejected) == (2, 0)
    assert [m.status for m in batch.messages] == ["queued", "queued"]
    assert batch.batch_id.startswith("bat_") and len(batch.idempotency_key) == 36  # a uuid4 was generated

    first = mc.messages.get(batch.messages[0].id)
    assert (first.id, first.batch_id, first.status, first.template) == (batch.messages[0].id, batch.batch_id, "queued", "notice")
    assert first.to == {"phone": phone(1)} and first.content == "Your code 1 is ready."
    assert first.created_at is not None and first.created_at.tzinfo is not None
    assert [e.status for e in first.events] == ["queued"]
    assert mc.messages.get(batch.messages[1].id).content == "Your code 9 is ready."  # the entry's params win

    assert {m.id for m in mc.messages.list(batch_id=batch.batch_id)} == {m.id for m in batch.messages}

    canceled = mc.messages.cancel(first.id)
    assert canceled.status == "canceled" and canceled.events[-1].status == "canceled"
    with pytest.raises(NotCancelableError) as refused:
        mc.messages.cancel(first.id)
    assert (refused.value.status, refused.value.code) == (409, "not_cancelable")
    assert "canceled" in refused.value.detail


def test_list_follows_the_cursor_across_pages(mc: Client, sms_template: Any) -> None:
    batch = mc.messages.send(template="notice", to=[{"phone": phone(n)} for n in range(7)], params={"n": "1"})
    other = mc.messages.send(template="notice", to={"phone": phone(100)}, params={"n": "1"})

    listed = list(mc.messages.list(batch_id=batch.batch_id, limit=3))  # pages of 3, 3 and 1
    assert [m.id for m in listed] == sorted((m.id for m in batch.messages), key=lambda i: ids.decode("msg", i), reverse=True)
    assert other.messages[0].id not in {m.id for m in listed}

    first = mc.messages.list_page(batch_id=batch.batch_id, limit=3)
    second = mc.messages.list_page(batch_id=batch.batch_id, limit=3, cursor=first.next)
    assert len(first.results) == len(second.results) == 3 and first.next and second.next
    assert [m.id for m in first.results + second.results] == [m.id for m in listed[:6]]
    assert len(list(mc.messages.list(status="queued", channel="sms", template="notice", limit=500))) == 8


def test_errors_carry_the_contracts_code_detail_and_fields(
    mc: Client, api: Any, sms_template: Any, connect: Callable[..., Client]
) -> None:
    with pytest.raises(TemplateNotFoundError) as missing:
        mc.messages.send(template="nope", to={"phone": phone(1)})
    assert isinstance(missing.value, NotFoundError)
    assert (missing.value.status, missing.value.code) == (404, "template_not_found")

    with pytest.raises(ValidationError) as invalid:
        mc.messages.send(template="notice", to={"phone": phone(1)}, params={"n": "1"}, priority="urgent")
    assert (invalid.value.status, invalid.value.code) == (400, "validation_error")
    assert "priority" in invalid.value.errors

    with pytest.raises(MissingParamsError) as params:
        mc.messages.send(template="notice", to={"phone": phone(1)})
    assert params.value.code == "missing_params"

    with pytest.raises(TooManyRecipientsError):
        mc.messages.send(template="notice", to=[{"phone": phone(n)} for n in range(1001)], params={"n": "1"})

    with pytest.raises(NotFoundError) as unknown:
        mc.messages.get("msg_0000000000000000000000")
    assert (unknown.value.status, unknown.value.code) == (404, "not_found")

    stranger = connect(api, api_key="not-a-key")
    with pytest.raises(AuthenticationError) as unauthenticated:
        stranger.account.get()
    assert (unauthenticated.value.status, unauthenticated.value.code) == (401, "not_authenticated")
    assert in_db(api) == 0


def test_the_same_idempotency_key_returns_the_same_batch_and_sends_once(mc: Client, api: Any, sms_template: Any) -> None:
    body: dict[str, Any] = {"template": "notice", "to": [{"phone": phone(1)}, {"phone": phone(2)}], "params": {"n": "1"}}
    first = mc.messages.send(**body, idempotency_key="order-A1-shipped")
    again = mc.messages.send(**body, idempotency_key="order-A1-shipped")
    assert again.batch_id == first.batch_id and again.messages == first.messages
    assert first.idempotency_key == again.idempotency_key == "order-A1-shipped"
    assert in_db(api) == 2

    with pytest.raises(IdempotencyConflictError) as conflict:
        mc.messages.send(**(body | {"params": {"n": "2"}}), idempotency_key="order-A1-shipped")
    assert (conflict.value.status, conflict.value.code) == (409, "idempotency_conflict")
    assert in_db(api) == 2


@dataclass
class DroppingProxy:
    """Forwards requests to the live server; for the next `drop` POSTs, throws the answer away and
    closes the connection, as a network failure after the server acted would."""

    upstream: str
    url: str = ""
    drop: int = 0
    posts: list[str] = field(default_factory=list)


@pytest.fixture
def proxy(live_server: Any) -> Iterator[DroppingProxy]:
    proxy = DroppingProxy(live_server.url)
    target = urllib.parse.urlsplit(live_server.url)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _forward(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            upstream = http.client.HTTPConnection(target.hostname or "127.0.0.1", target.port, timeout=30)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
            upstream.request(self.command, self.path, body=body or None, headers=headers)
            answer = upstream.getresponse()
            content = answer.read()
            upstream.close()
            if self.command == "POST":
                proxy.posts.append(self.path)
                if proxy.drop > 0:
                    proxy.drop -= 1
                    self.close_connection = True  # the server acted; its answer never arrives
                    return
            self.send_response(answer.status)
            for name, value in answer.getheaders():
                if name.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    proxy.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield proxy
    server.shutdown()
    server.server_close()


def test_a_send_whose_answer_was_lost_is_retried_with_its_key_and_sent_once(
    api: Any, sms_template: Any, proxy: DroppingProxy
) -> None:
    with Client(base_url=proxy.url, api_key=api.key, max_retries=2) as mc:
        proxy.drop = 1
        result = mc.messages.send(template="notice", to={"phone": phone(1)}, params={"n": "1"})
        assert proxy.posts == ["/api/v1/messages", "/api/v1/messages"]  # both reached the server
        assert in_db(api) == 1
        stored = Message.objects.get(account=api.account)
        assert result.messages[0].id == ids.encode("msg", stored.id)

        # A POST without an Idempotency-Key is not repeated once it may have acted.
        proxy.drop = 1
        with pytest.raises(APIConnectionError) as lost:
            mc.templates.create(code="welcome", name="Welcome", channel="sms", category="transactional", content="Hi")
        assert lost.value.status is None and lost.value.code == "connection_error"
        assert proxy.posts[2:] == ["/api/v1/templates"]
        assert mc.templates.get("welcome").content == "Hi"  # it was created, once


def test_a_rate_limited_send_waits_for_retry_after(
    make_api_client: Callable[..., Any], connect: Callable[..., Client], make_template: Any
) -> None:
    limited = make_api_client("limited", rate_limit=1)
    make_template(limited, code="notice", content="Your code {{n}} is ready.")
    mc = connect(limited)
    started = time.monotonic()
    first = mc.messages.send(template="notice", to={"phone": phone(1)}, params={"n": "1"})
    second = mc.messages.send(template="notice", to={"phone": phone(2)}, params={"n": "1"})  # 429, Retry-After: 1, then 202
    assert time.monotonic() - started >= 0.9
    assert first.batch_id != second.batch_id and in_db(limited) == 2

    impatient = connect(limited, max_retries=0)
    with pytest.raises(RateLimitError) as refused:
        impatient.messages.send(template="notice", to={"phone": phone(3)}, params={"n": "1"})
    assert (refused.value.status, refused.value.code, refused.value.retry_after) == (429, "rate_limited", 1.0)
    assert in_db(limited) == 2


def test_verify_signature() -> None:
    body = b'{"type":"message.status","message_id":"msg_1","status":"delivered","code":null,"at":"2026-01-01T00:00:00+00:00"}'
    now = int(time.time())
    header = signature_header(secret="whsec", body=body, timestamp=now)  # the service's own signer

    assert verify_signature({"X-MC-Signature": header}, body, "whsec")
    assert verify_signature({"x-mc-signature": header}, body.decode(), "whsec")
    assert verify_signature({"HTTP_X_MC_SIGNATURE": header}, body, "whsec")  # a WSGI environ
    assert not verify_signature({"X-MC-Signature": header}, body.replace(b"delivered", b"failed"), "whsec")  # tampered
    assert not verify_signature({"X-MC-Signature": header}, body, "another secret")
    stale = signature_header(secret="whsec", body=body, timestamp=now - 301)
    assert not verify_signature({"X-MC-Signature": stale}, body, "whsec")
    assert verify_signature({"X-MC-Signature": stale}, body, "whsec", tolerance=600)
    future = signature_header(secret="whsec", body=body, timestamp=now + 301)
    assert not verify_signature({"X-MC-Signature": future}, body, "whsec")
    assert not verify_signature({}, body, "whsec")
    assert not verify_signature({"X-MC-Signature": "t=soon,v1=abc"}, body, "whsec")
    assert not verify_signature({"X-MC-Signature": f"t={now}"}, body, "whsec")


def test_async_client_basics(api: Any, live_server: Any, sms_template: Any) -> None:
    async def scenario() -> None:
        async with AsyncClient(base_url=live_server.url, api_key=api.key) as mc:
            account = await mc.account.get()
            assert account.name == "orders"
            batch = await mc.messages.send(template="notice", to=[{"phone": phone(n)} for n in range(3)], params={"n": "4"})
            assert batch.accepted == 3
            again = await mc.messages.send(
                template="notice",
                to=[{"phone": phone(n)} for n in range(3)],
                params={"n": "4"},
                idempotency_key=batch.idempotency_key,
            )
            assert again.batch_id == batch.batch_id
            message = await mc.messages.get(batch.messages[0].id)
            assert message.content == "Your code 4 is ready."
            listed = [m.id async for m in mc.messages.list(batch_id=batch.batch_id, limit=2)]
            assert sorted(listed) == sorted(m.id for m in batch.messages)
            assert (await mc.messages.cancel(message.id)).status == "canceled"
            with pytest.raises(TemplateNotFoundError):
                await mc.messages.send(template="nope", to={"phone": phone(1)})

    asyncio.run(scenario())
    assert in_db(api) == 3


def test_templates_recipients_inbox_verifications_stats_and_account(mc: Client, api: Any) -> None:
    created = mc.templates.create(
        code="order_shipped",
        name="Order shipped",
        channel="sms",
        category="transactional",
        content="Order {{order_no}} shipped.",
        sms_signature="ACME",
    )
    assert created.variables == ["order_no"] and created.priority == "high"
    assert mc.templates.update("order_shipped", name="Shipped").name == "Shipped"
    preview = mc.templates.preview("order_shipped", {"order_no": "A1"})
    assert (preview.content, preview.segments, preview.encoding) == ("Order A1 shipped.", 1, "UCS-2")  # 【ACME】 counts
    mc.templates.create(code="news", name="News", channel="inbox", category="marketing", content="Hello {{name}}", title="News")
    assert {t.code for t in mc.templates.list(limit=1)} == {"order_shipped", "news"}
    mc.templates.delete("order_shipped")
    with pytest.raises(NotFoundError):
        mc.templates.get("order_shipped")

    recipient = mc.recipients.put("u42", phone="13800138000", email="u42@example.com", timezone="Asia/Shanghai")
    assert (recipient.user_id, recipient.phone) == ("u42", "+8613800138000")
    assert mc.recipients.get("u42").email == "u42@example.com"
    assert mc.recipients.preferences.get("u42")["marketing"]["sms"] is True
    assert mc.recipients.preferences.update("u42", {"marketing": {"sms": False}})["marketing"]["sms"] is False
    with pytest.raises(ValidationError):
        mc.recipients.preferences.update("u42", {"verification": {"sms": False}})

    sent = mc.messages.send(template="news", to=[{"user_id": "u42"}, {"user_id": "u42"}], params={"name": "Li"})
    Message.objects.filter(account=api.account, channel="inbox").update(status="delivered")  # as the worker stores them
    assert [item.content for item in mc.recipients.inbox.list("u42", unread=True, limit=1)] == ["Hello Li", "Hello Li"]
    assert mc.recipients.inbox.page("u42").unread_count == 2
    assert mc.recipients.inbox.read("u42", sent.messages[0].id).read_at is not None
    assert mc.recipients.inbox.read_all("u42") == 1
    assert mc.recipients.inbox.page("u42", unread=True).results == []

    mc.templates.create(code="login_code", name="Login", channel="sms", category="verification", content="Code {{code}}")
    verification = mc.verifications.send(to={"phone": "+8613800138000"}, template="login_code")
    assert verification.message_id.startswith("msg_") and verification.expires_at is not None
    wrong = mc.verifications.check(to={"phone": "+8613800138000"}, code="000000")
    assert (bool(wrong), wrong.reason) == (False, "invalid")
    code = unseal(Message.objects.get(id=ids.decode("msg", verification.message_id)).params)["code"]
    assert mc.verifications.check(to={"phone": "+8613800138000"}, code=code).valid

    by_channel = {g.key: g for g in mc.stats(group_by="channel").groups}
    assert (by_channel["inbox"].total, by_channel["inbox"].delivered, by_channel["sms"].total) == (2, 2, 1)
    with pytest.raises(ValidationError):
        mc.stats(group_by="colour")

    account = mc.account.get()
    assert (account.name, account.callback_url, account.callback_secret_set) == ("orders", None, False)
    updated = mc.account.update(callback_url="http://127.0.0.1:9/hooks/mc")
    assert updated.callback_url == "http://127.0.0.1:9/hooks/mc" and updated.callback_secret
    assert mc.account.get().callback_secret is None and mc.account.get().callback_secret_set
    assert mc.account.update(callback_url=None).callback_url is None


def test_configuration_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, api: Any, live_server: Any) -> None:
    monkeypatch.setenv("MC_BASE_URL", live_server.url + "/")
    monkeypatch.setenv("MC_API_KEY", api.key)
    with Client() as mc:
        assert mc.base_url == live_server.url + "/api/v1"
        assert mc.account.get().name == "orders"
    monkeypatch.delenv("MC_API_KEY")
    with pytest.raises(ValueError, match="MC_API_KEY"):
        Client()


def test_send_at_needs_a_zone(mc: Client, sms_template: Any) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        mc.messages.send(template="notice", to={"phone": phone(1)}, params={"n": "1"}, send_at=dt.datetime(2030, 1, 1))
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    batch = mc.messages.send(template="notice", to={"phone": phone(1)}, params={"n": "1"}, send_at=later)
    assert batch.messages[0].status == "scheduled"
    scheduled_at = mc.messages.get(batch.messages[0].id).scheduled_at
    assert scheduled_at is not None and abs((scheduled_at - later).total_seconds()) < 1
