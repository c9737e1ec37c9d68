from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from apps.accounts.models import Account
from apps.accounts.services import account_create
from messaging_center.broker import redis_client


@pytest.fixture(autouse=True)
def _clean_redis() -> Iterator[None]:
    redis_client().flushdb()
    yield


@dataclass
class ApiClient:
    """A test client that speaks JSON and carries one account's API key."""

    client: Client
    key: str
    account: Account

    def _headers(self, headers: dict[str, str] | None) -> dict[str, str]:
        return {"HTTP_AUTHORIZATION": f"Bearer {self.key}", **(headers or {})}

    def get(self, path: str, data: dict[str, Any] | None = None, **headers: str) -> Any:
        return self.client.get(path, data, **self._headers(headers))

    def post(self, path: str, body: Any = None, **headers: str) -> Any:
        return self.client.post(path, body if body is not None else {}, content_type="application/json", **self._headers(headers))

    def put(self, path: str, body: Any, **headers: str) -> Any:
        return self.client.put(path, body, content_type="application/json", **self._headers(headers))

    def patch(self, path: str, body: Any, **headers: str) -> Any:
        return self.client.patch(path, body, content_type="application/json", **self._headers(headers))

    def delete(self, path: str, **headers: str) -> Any:
        return self.client.delete(path, **self._headers(headers))


@pytest.fixture
def make_api_client(db: None) -> Callable[..., ApiClient]:
    counter = iter(range(1_000_000))

    def make(name: str | None = None, **fields: int) -> ApiClient:
        issued = account_create(name=name or f"system-{next(counter)}", **fields)
        return ApiClient(Client(), issued.raw_key, issued.api_key.account)

    return make


@pytest.fixture
def api(make_api_client: Callable[..., ApiClient]) -> ApiClient:
    return make_api_client("orders")


@pytest.fixture
def operator(db: None) -> Client:
    """A browser session logged in to the admin as a superuser."""
    user = User.objects.create_superuser("ops", "ops@example.com", "secret-pass")
    client = Client()
    client.force_login(user)
    return client
