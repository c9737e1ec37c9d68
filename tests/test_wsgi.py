"""The web process's WSGI application (messaging_center.wsgi): the API goes through the short
middleware chain (settings.API_MIDDLEWARE), admin and everything else through the full one. The
Django test client builds its own handler from settings.MIDDLEWARE, so these requests go through
the application itself, as granian calls it."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from django.core import signals
from django.db import close_old_connections

from messaging_center.wsgi import application

pytestmark = pytest.mark.django_db


def _call(
    method: str, path: str, body: bytes = b"", environ: dict[str, Any] | None = None, **headers: str
) -> tuple[int, dict[str, str], bytes]:
    environ_ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "HTTP_HOST": "testserver",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "CONTENT_LENGTH": str(len(body)),
        "CONTENT_TYPE": "application/json",
        **{"HTTP_" + name.upper().replace("-", "_"): value for name, value in headers.items()},
        **(environ or {}),
    }
    answer: dict[str, Any] = {}

    def start_response(status: str, response_headers: list[tuple[str, str]], exc_info: object = None) -> None:
        answer["status"], answer["headers"] = int(status[:3]), dict(response_headers)

    # As Django's test client does: the test's transaction is on a connection that the handler's
    # request_started/finished signals would otherwise close.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        response = application(environ_, start_response)
        content = b"".join(response)
        getattr(response, "close", lambda: None)()
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)
    return answer["status"], answer["headers"], content


def test_a_send_through_the_api_chain_is_accepted_and_stored(api, make_template) -> None:
    make_template(api)
    body = json.dumps({"template": "order_shipped", "to": {"phone": "+8613800138000"}, "params": {"order_no": "7"}})
    status, headers, content = _call("POST", "/api/v1/messages", body.encode(), Authorization=f"Bearer {api.key}")
    assert status == 202, content
    assert headers["Content-Type"] == "application/json" and headers["Content-Length"] == str(len(content))
    assert headers["X-Content-Type-Options"] == "nosniff"  # SecurityMiddleware is in the API chain
    assert "Set-Cookie" not in headers and "X-Frame-Options" not in headers  # no session, CSRF or frame options
    message_id = json.loads(content)["messages"][0]["id"]
    status, _, content = _call("GET", f"/api/v1/messages/{message_id}", Authorization=f"Bearer {api.key}")
    assert status == 200 and json.loads(content)["status"] == "queued"


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "code"),
    [
        ("GET", "/api/v1/messages", b"", {}, 401, "not_authenticated"),
        ("GET", "/api/v1/messages", b"", {"Authorization": "Bearer mc_nope_nope"}, 401, "not_authenticated"),
        ("GET", "/api/v1/no-such-thing", b"", {}, 404, "not_found"),
        ("PATCH", "/api/v1/account", b"{not json", {"Authorization": "KEY"}, 400, "validation_error"),
    ],
)
def test_errors_through_the_api_chain_keep_the_contract_format(api, method, path, body, headers, status, code) -> None:
    headers = {name: value.replace("KEY", f"Bearer {api.key}") for name, value in headers.items()}
    got, response_headers, content = _call(method, path, body, **headers)
    assert got == status, content
    assert response_headers["Content-Type"].startswith("application/json")
    assert json.loads(content)["code"] == code


def test_an_oversized_body_is_refused_before_it_is_read(api) -> None:
    class Exploding(io.RawIOBase):
        def read(self, *args: object) -> bytes:
            raise AssertionError("the body was read")

    declared = {"CONTENT_LENGTH": str(6 * 1024 * 1024), "wsgi.input": Exploding()}
    status, _, content = _call("POST", "/api/v1/messages", environ=declared, Authorization=f"Bearer {api.key}")
    assert status == 413 and json.loads(content)["code"] == "payload_too_large"


def test_the_api_address_make_run_prints_answers_without_a_key() -> None:
    status, _, content = _call("GET", "/api/v1/")
    assert status == 200, content
    assert json.loads(content)["docs"] == "/api/docs/"


def test_admin_keeps_the_full_chain() -> None:
    status, headers, content = _call("GET", "/admin/login/")
    assert status == 200, content[:300]
    assert "csrftoken" in headers.get("Set-Cookie", "")  # CSRF middleware
    assert headers["X-Frame-Options"] == "DENY"  # clickjacking middleware


def test_a_chunked_body_is_read_as_any_other(api, make_template) -> None:
    """The server hands a chunked body over dechunked and without Content-Length (granian does)."""
    make_template(api)
    body = json.dumps({"template": "order_shipped", "to": {"phone": "+8613800138000"}, "params": {"order_no": "8"}}).encode()
    chunked = {"CONTENT_LENGTH": "", "HTTP_TRANSFER_ENCODING": "chunked", "wsgi.input": io.BytesIO(body)}
    status, _, content = _call("POST", "/api/v1/messages", environ=chunked, Authorization=f"Bearer {api.key}")
    assert status == 202, content
    assert json.loads(content)["accepted"] == 1


def test_a_chunked_body_over_the_limit_is_413_after_reading_only_the_limit(api) -> None:
    class Endless(io.RawIOBase):
        asked: list[int] = []

        def read(self, size: int = -1) -> bytes:
            assert size > 0, "an unbounded read"
            self.asked.append(size)
            return b"[" * size

    endless = Endless()
    chunked = {"CONTENT_LENGTH": "", "HTTP_TRANSFER_ENCODING": "chunked", "wsgi.input": endless}
    status, _, content = _call("POST", "/api/v1/messages", environ=chunked, Authorization=f"Bearer {api.key}")
    assert status == 413 and json.loads(content)["code"] == "payload_too_large"
    assert endless.asked == [5 * 1024 * 1024 + 1]


@pytest.mark.parametrize(
    "body", [b"[" * 100_000, b'{"template": "t", "to": {"phone": "1"}, "params": {"a": ' + b"[" * 40 + b"]" * 40 + b"}}"]
)
def test_deeply_nested_json_is_400(api, body: bytes) -> None:
    status, _, content = _call("POST", "/api/v1/messages", body, Authorization=f"Bearer {api.key}")
    assert status == 400, content
    assert json.loads(content)["code"] == "validation_error" and "nested" in json.loads(content)["detail"]
