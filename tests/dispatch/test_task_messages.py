"""The task messages we build ourselves (messaging_center.broker.task_message/push_task, which
outbox.publish sends) against what Celery's own `apply_async` publishes for the same task, arguments
and queue, both read back from a real Redis list; and a real worker running one of ours."""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery.worker.request import Request
from django.conf import settings
from kombu import Connection, pools

from apps.dispatch import outbox, tasks
from apps.dispatch.models import Message, Outbox
from celery_app import app
from messaging_center.broker import push_task
from tests.helpers import wait_until
from tests.settings import TEST_REDIS_DB

# Neither the suite's workers nor its tests use this database: no worker takes the messages first.
BROKER_URL = re.sub(r"/\d+$", f"/{TEST_REDIS_DB + 1}", settings.CELERY_BROKER_URL)
# What differs between any two messages, or between two processes: compared by shape only.
IDS = ("id", "root_id")
PROPERTY_IDS = ("correlation_id", "delivery_tag")
ONE_CHUNK = [[str(uuid.uuid4())]]
FULL_CHUNK = [[str(uuid.uuid4()) for _ in range(outbox.CHUNK_SIZE)]]  # its argsrepr is abbreviated


@pytest.fixture
def broker() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(BROKER_URL)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def _celerys(client: redis.Redis, args: list[Any], queue: str) -> dict[str, Any]:
    with pools.producers[app.connection_for_write(BROKER_URL)].acquire(block=True, timeout=5) as producer:
        tasks.deliver.apply_async(args=args, queue=queue, producer=producer, retry=False)
    return _read(client, queue)


def _ours(client: redis.Redis, args: list[Any], queue: str) -> dict[str, Any]:
    with client.pipeline(transaction=False) as pipe:
        push_task(pipe, outbox.DELIVER_TASK, queue, args)
        pipe.execute()
    return _read(client, queue)


def _read(client: redis.Redis, queue: str) -> dict[str, Any]:
    assert client.llen(queue) == 1
    raw = client.rpop(queue)
    assert isinstance(raw, bytes)
    message: dict[str, Any] = json.loads(raw)
    return message


def _comparable(message: dict[str, Any]) -> dict[str, Any]:
    """The message with its body decoded and what differs by nature replaced by its shape."""
    headers, properties = dict(message["headers"]), dict(message["properties"])
    assert headers["root_id"] == headers["id"] == properties["correlation_id"]
    for name in IDS:
        headers[name] = str(uuid.UUID(headers[name]).version)
    for name in PROPERTY_IDS:
        properties[name] = str(uuid.UUID(properties[name]).version)
    # Celery's anonymous node name of the publishing process: gen<pid>@<host>.
    headers["origin"] = re.sub(r"^gen\d+@.+$", "gen<pid>@<host>", headers["origin"])
    # Celery names the publishing thread for replies to it (no result backend here: never used).
    properties["reply_to"] = "<thread>" if properties["reply_to"] else ""
    assert properties["body_encoding"] == "base64"
    return {**message, "headers": headers, "properties": properties, "body": json.loads(base64.b64decode(message["body"]))}


@pytest.mark.parametrize("args", [ONE_CHUNK, FULL_CHUNK], ids=["one id", "a full chunk"])
@pytest.mark.parametrize("queue", ["mc.critical", "mc.bulk"])
def test_our_message_is_the_one_apply_async_publishes(broker: redis.Redis, args: list[Any], queue: str) -> None:
    celerys, ours = _comparable(_celerys(broker, args, queue)), _comparable(_ours(broker, args, queue))

    celerys_thread = celerys["properties"].pop("reply_to")
    assert (celerys_thread, ours["properties"].pop("reply_to")) == ("<thread>", "")
    assert ours == celerys
    assert ours["headers"]["origin"] == "gen<pid>@<host>"
    assert ours["properties"]["delivery_info"] == {"exchange": "", "routing_key": queue}
    assert ours["body"] == [args, {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]
    assert ours["headers"]["timelimit"] == [settings.CELERY_TASK_TIME_LIMIT, settings.CELERY_TASK_SOFT_TIME_LIMIT]


def test_a_worker_reads_ours_as_it_reads_celerys(broker: redis.Redis) -> None:
    """Celery's worker-side request (what its strategy builds from a message before running it)."""

    def request(message: dict[str, Any]) -> Request:
        with Connection(BROKER_URL) as connection:
            received = connection.default_channel.message_to_python(message)
            return Request(received, app=app, task=app.tasks[outbox.DELIVER_TASK])

    celerys = request(_celerys(broker, FULL_CHUNK, "mc.high"))
    ours = request(_ours(broker, FULL_CHUNK, "mc.high"))

    def seen(r: Request) -> tuple[Any, ...]:
        return (r.name, r.args, r.kwargs, r.time_limits, r.ignore_result, r.eta, r.expires, r.delivery_info, r.argsrepr)

    assert seen(ours) == seen(celerys)
    assert ours.args == FULL_CHUNK and ours.delivery_info["routing_key"] == "mc.high"


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_delivers_through_our_message(api: Any, make_template: Any, dispatch_worker: Any, monkeypatch: Any) -> None:
    make_template(api, code="notice", channel="inbox", content="Hello {{name}}.", title="Hi")
    # The send writes its message and outbox row but publishes nothing: the task below is the only one.
    monkeypatch.setattr(outbox, "publish_on_commit", lambda rows: None)
    response = api.post("/api/v1/messages", {"template": "notice", "to": {"user_id": "u1"}, "params": {"name": "Ann"}})
    assert response.status_code == 202, response.content
    [row] = Outbox.objects.all()

    with redis.Redis.from_url(settings.CELERY_BROKER_URL) as client, client.pipeline(transaction=False) as pipe:
        push_task(pipe, outbox.DELIVER_TASK, f"mc.{row.lane}", [row.message_ids])
        pipe.execute()

    [message_id] = row.message_ids
    wait_until(lambda: Message.objects.get(id=message_id).status == "delivered", 30, "the worker to deliver it")
