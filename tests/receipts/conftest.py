"""Receipts and callbacks: messages put in a given state, a business system's callback receiver,
and (for the end-to-end tests) a simulator whose pushes reach our app on a live server."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.utils import timezone

from apps.dispatch.models import Message, Provider
from apps.dispatch.providers_config import provider_save
from tests.dispatch.conftest import SIM_SETTINGS, Receiver, Simulator, SimulatorProcess, simulator_process
from tests.helpers import celery_worker

RECEIPT_TOKEN = "test-receipt-token-1234567890"


def make_provider(kind: str, *, name: str | None = None, endpoint: str = "http://127.0.0.1:9", **settings: str) -> Provider:
    provider = Provider(name=name or f"test-{kind}", kind=kind, channel="sms")
    return provider_save(provider=provider, settings={**SIM_SETTINGS[kind], "endpoint": endpoint, **settings})


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
    from messaging_center import ids

    return ids.decode("msg", public_id)


def verify_signature(header: str, body: bytes, secret: str, *, tolerance: int = 300) -> bool:
    parts = dict(item.split("=", 1) for item in header.split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256).hexdigest()
    return abs(time.time() - int(parts["t"])) < tolerance and hmac.compare_digest(expected, parts["v1"])


@dataclass
class Hook:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class CallbackReceiver:
    """A business system's endpoint: records each POST and answers per `answers` (status codes,
    "hang", or ("redirect", location)), then 200."""

    url: str
    requests: list[Hook] = field(default_factory=list)
    answers: list[Any] = field(default_factory=list)

    def statuses(self) -> list[str]:
        return [h.json["status"] for h in self.requests]


@pytest.fixture
def callback_receiver() -> Iterator[CallbackReceiver]:
    receiver = CallbackReceiver("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            receiver.requests.append(Hook(self.path, dict(self.headers), body))
            answer = receiver.answers.pop(0) if receiver.answers else 200
            if answer == "hang":
                time.sleep(3)
                answer = 200
            if isinstance(answer, tuple):
                self.send_response(302)
                self.send_header("Location", answer[1])
            else:
                self.send_response(answer)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/mc"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield receiver
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def receipts_worker(worker_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real worker on the `mc.receipts` lane (status callbacks), allowed to call loopback receivers."""
    log = tmp_path_factory.mktemp("receipts-worker") / "worker.log"
    with celery_worker(worker_env | {"CALLBACK_ALLOW_PRIVATE": "1"}, "mc.receipts", log, name="receipts") as process:
        yield process


@pytest.fixture(scope="session")
def _live_simulator_process(live_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorProcess]:
    """A simulator whose Aliyun/Tencent/WeChat pushes go to our app on the live server."""
    log_path = tmp_path_factory.mktemp("live-simulator") / "simulator.log"
    with simulator_process(f"{live_server.url}/api/v1/receipts/t/{RECEIPT_TOKEN}/", log_path) as process:
        yield process


@pytest.fixture
def live_sim(_live_simulator_process: SimulatorProcess) -> Simulator:
    simulator = Simulator(_live_simulator_process, Receiver(""))
    simulator.control("POST", "/_sim/reset")
    return simulator
