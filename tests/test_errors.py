"""Every error under /api/ has the contract's body: {"code", "detail", "errors"?}, never HTML."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def _assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["code"] == code
    assert isinstance(body["detail"], str) and body["detail"]
    assert "Traceback" not in response.content.decode()
    return body


def test_malformed_json_is_400(api) -> None:
    response = api.client.patch(
        "/api/v1/account", "{not json", content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {api.key}"
    )
    _assert_error(response, 400, "validation_error")


def test_wrong_content_type_is_415(api) -> None:
    response = api.client.patch(
        "/api/v1/account",
        "callback_url=x",
        content_type="application/x-www-form-urlencoded",
        HTTP_AUTHORIZATION=f"Bearer {api.key}",
    )
    _assert_error(response, 415, "unsupported_media_type")


def test_body_over_5_mib_is_413_without_reading_it(api) -> None:
    class ExplodingStream:
        def read(self, *args: object) -> bytes:
            raise AssertionError("the body was read")

        readline = read

    response = api.client.generic(
        "PATCH",
        "/api/v1/account",
        b"",
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {api.key}",
        CONTENT_LENGTH=str(5 * 1024 * 1024 + 1),
        **{"wsgi.input": ExplodingStream()},
    )
    _assert_error(response, 413, "payload_too_large")


def test_unknown_api_path_is_json_404(api) -> None:
    _assert_error(api.get("/api/v1/no-such-thing"), 404, "not_found")
    _assert_error(Client().get("/api/v1/no-such-thing"), 404, "not_found")


def test_wrong_method_is_405(api) -> None:
    _assert_error(api.delete("/api/v1/account"), 405, "method_not_allowed")


def test_validation_errors_name_the_field(api) -> None:
    body = _assert_error(api.patch("/api/v1/account", {"rotate_callback_secret": "maybe"}), 400, "validation_error")
    assert "rotate_callback_secret" in body["errors"]


def test_unexpected_error_is_json_500(api, monkeypatch: pytest.MonkeyPatch) -> None:
    from apps.accounts import api as account_api

    def explode(**kwargs: object) -> int:
        raise RuntimeError("boom")

    monkeypatch.setattr(account_api, "account_used_today", explode)
    api.client.raise_request_exception = False
    body = _assert_error(api.get("/api/v1/account"), 500, "internal_error")
    assert "boom" not in body["detail"]
