from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from apps.accounts.models import Account
from apps.accounts.services import account_create
from apps.dispatch.models import Message
from messaging_center import ids
from messaging_center.broker import redis_client


def _flush_retrying_deadlocks() -> None:
    """A transactional test's flush TRUNCATEs every table in an arbitrary order, while the session's
    real worker may still be finishing one of its messages (the message row, then the rollup row its
    trigger writes). The two can deadlock; PostgreSQL cancels one, and a flush that lost is run again."""
    from django.core.management.base import CommandError
    from django.test import TransactionTestCase
    from psycopg.errors import DeadlockDetected

    teardown = TransactionTestCase._fixture_teardown

    def retrying(self: TransactionTestCase) -> None:
        for attempt in range(5):
            try:
                teardown(self)
                return
            except CommandError as error:
                causes, cause = [], error.__cause__
                while cause is not None:
                    causes.append(cause)
                    cause = cause.__cause__
                if attempt == 4 or not any(isinstance(c, DeadlockDetected) for c in causes):
                    raise

    TransactionTestCase._fixture_teardown = retrying  # type: ignore[method-assign]


_flush_retrying_deadlocks()


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
def make_template(db: None) -> Callable[..., Any]:
    from apps.templates.services import template_create

    def make(api: ApiClient, code: str = "order_shipped", **fields: Any) -> Any:
        defaults: dict[str, Any] = {
            "name": code.replace("_", " ").title(),
            "channel": "sms",
            "category": "transactional",
            "content": "Your order {{order_no}} has shipped.",
            "sms_signature": "ACME",
        }
        return template_create(account=api.account, code=code, **(defaults | fields))

    return make


def _database_url() -> str:
    from django.db import connection

    s = connection.settings_dict
    auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
    return f"postgresql://{auth}@{s['HOST']}:{s['PORT']}/{s['NAME']}"


@pytest.fixture(scope="session")
def worker_env(django_db_setup: None, django_db_blocker: Any) -> dict[str, str]:
    """Environment for a subprocess (worker, launcher) that must see the test database and Redis."""
    import os

    from django.conf import settings

    with django_db_blocker.unblock():
        database_url = _database_url()
    return os.environ | {
        "DATABASE_URL": database_url,
        "REDIS_URL": settings.REDIS_URL,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
    }


DISPATCH_WORKER_APP = "mc-test-dispatch-worker"


@pytest.fixture(scope="session")
def dispatch_worker(worker_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real Celery worker consuming every lane of the test Redis, for the whole session."""
    from tests.helpers import celery_worker

    log = tmp_path_factory.mktemp("worker") / "worker.log"
    env = worker_env | {"PGAPPNAME": DISPATCH_WORKER_APP}  # its database sessions, by name
    with celery_worker(env, "mc.critical,mc.high,mc.normal,mc.bulk,mc.maintenance", log, name="dispatch") as process:
        yield process


@pytest.fixture
def operator(db: None) -> Client:
    """A browser session logged in to the admin as a superuser."""
    user = User.objects.create_superuser("ops", "ops@example.com", "secret-pass")
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def sms_template(api: Any, make_template: Callable[..., Any]) -> Any:
    return make_template(
        api, code="notice", content="Your code {{n}} is ready.", provider_template_ids={"aliyun": "SMS_100", "tencent": "1001"}
    )


@pytest.fixture
def make_message(api: Any, sms_template: Any) -> Callable[..., Message]:
    """A message accepted through the API, then put in the given state as a worker would leave it."""
    counter = iter(range(10_000_000))

    def make(status: str = "sent", provider: str = "test-aliyun", provider_message_id: str | None = None) -> Message:
        number = next(counter)
        response = api.post(
            "/api/v1/messages", {"template": "notice", "to": {"phone": f"+86139{number:08d}"}, "params": {"n": "1"}}
        )
        assert response.status_code == 202, response.content
        message = Message.objects.get(id=_uuid(response.json()["messages"][0]["id"]))
        message.status = status
        message.provider = provider
        message.provider_message_id = provider_message_id if provider_message_id is not None else f"biz-{number}"
        message.attempts = 1
        message.sent_at = timezone.now() - dt.timedelta(seconds=2) if status == "sent" else None
        message.save()
        return message

    return make


def _uuid(public_id: str) -> Any:
    return ids.decode("msg", public_id)
