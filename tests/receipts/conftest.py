"""Receipts and callbacks: messages put in a given state, a business system's callback receiver,
and (for the end-to-end tests) a simulator whose pushes reach our app on a live server."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from apps.dispatch.models import Provider
from apps.dispatch.providers_config import provider_save
from tests.dispatch.conftest import SIM_SETTINGS, Receiver, Simulator, SimulatorProcess, simulator_process
from tests.helpers import celery_worker

RECEIPT_TOKEN = "test-receipt-token-1234567890"


def make_provider(kind: str, *, name: str | None = None, endpoint: str = "http://127.0.0.1:9", **settings: str) -> Provider:
    provider = Provider(name=name or f"test-{kind}", kind=kind, channel="sms")
    return provider_save(provider=provider, settings={**SIM_SETTINGS[kind], "endpoint": endpoint, **settings})


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
