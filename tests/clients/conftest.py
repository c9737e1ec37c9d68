"""The SDK and `mc` against the real service: our WSGI app on pytest-django's live server (real
HTTP, PostgreSQL and Redis), accounts and templates made as in the other tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from messaging_center_client import Client

from tests.conftest import ApiClient


@pytest.fixture
def connect(live_server: Any) -> Iterator[Callable[..., Client]]:
    """Clients of the live server for an account's key; closed after the test."""
    clients: list[Client] = []

    def make(account: ApiClient, **options: Any) -> Client:
        client = Client(**({"base_url": live_server.url, "api_key": account.key} | options))
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def mc(api: ApiClient, connect: Callable[..., Client]) -> Client:
    """The `orders` account's client."""
    return connect(api)
