"""A real simulator process and a tiny receipt receiver, shared by the provider tests."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from devstack.simulator.fcm import service_account_json
from devstack.simulator.state import DEFAULT_CREDENTIALS
from tests.helpers import BASE_DIR, free_port, stop_process_group, wait_until

SIM_SETTINGS = {
    "aliyun": {**DEFAULT_CREDENTIALS["aliyun"], "sign_name": "ACME"},
    "tencent": {**DEFAULT_CREDENTIALS["tencent"], "sdk_app_id": "1400000001"},
    "volcengine": {**DEFAULT_CREDENTIALS["volcengine"], "sms_account": "7a2b0c1d", "sign_name": "ACME"},
    "twilio": {**DEFAULT_CREDENTIALS["twilio"], "from_number": "+15005550006"},
    "wechat": {name: DEFAULT_CREDENTIALS["wechat"][name] for name in ("appid", "secret", "token", "encoding_aes_key")},
    "wecom": {**DEFAULT_CREDENTIALS["wecom"], "agentid": "1000002"},
    "fcm": {"project_id": DEFAULT_CREDENTIALS["fcm"]["project_id"]},
    "apns": {**DEFAULT_CREDENTIALS["apns"], "topic": "com.example.app"},
    "jpush": {**DEFAULT_CREDENTIALS["jpush"], "apns_production": "false"},
    "smtp": {**DEFAULT_CREDENTIALS["smtp"], "host": "127.0.0.1", "from_email": "ACME <noreply@acme.example>"},
}


@dataclass
class PushedRequest:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Collects the status reports the simulator pushes; answers as a provider expects."""

    base_url: str
    requests: list[PushedRequest] = field(default_factory=list)

    def on(self, path: str) -> list[PushedRequest]:
        return [r for r in self.requests if r.path.split("?")[0] == path]


@pytest.fixture(scope="session")
def _receiver() -> Iterator[Receiver]:
    receiver = Receiver("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            receiver.requests.append(PushedRequest(self.path, dict(self.headers), body))
            answer = b'{"code": 0, "msg": "ok"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield receiver
    server.shutdown()
    server.server_close()


@dataclass(frozen=True)
class SimulatorProcess:
    url: str
    apns_port: int
    smtp_port: int


@dataclass
class Simulator:
    process: SimulatorProcess
    receiver: Receiver

    @property
    def url(self) -> str:
        return self.process.url

    def control(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    def behave(self, provider: str = "*", **changes: Any) -> Any:
        return self.control("POST", "/_sim/behavior", {"provider": provider, **changes})

    def messages(self, to: str | None = None) -> list[dict[str, Any]]:
        query = "?" + urllib.parse.urlencode({"to": to}) if to else ""
        return self.control("GET", "/_sim/messages" + query)["results"]

    def raw(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        request = urllib.request.Request(self.url + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def settings(self, provider: str, **overrides: str) -> dict[str, str]:
        """The adapter settings that reach this simulator: APNs and SMTP on their own ports."""
        where: dict[str, str] = {"endpoint": self.url}
        if provider == "apns":
            where = {"endpoint": f"http://127.0.0.1:{self.process.apns_port}"}
        elif provider == "smtp":
            where = {"port": str(self.process.smtp_port)}
        elif provider == "fcm":
            where |= {"service_account_json": service_account_json(self.url, DEFAULT_CREDENTIALS["fcm"])}
        return {**SIM_SETTINGS[provider], **where, **overrides}

    def token_requests(self, provider: str) -> int:
        return int(self.control("GET", "/_sim/tokens")["requests"].get(provider, 0))


@contextlib.contextmanager
def simulator_process(receipt_base_url: str, log_path: Path) -> Iterator[SimulatorProcess]:
    """A real simulator process on free ports whose receipts go to `receipt_base_url`."""
    port, apns_port, smtp_port = free_port(), free_port(), free_port()
    env = {**os.environ, "SIM_RECEIPT_BASE_URL": receipt_base_url}
    argv = [sys.executable, "-m", "devstack.simulator", "--port", str(port), "--apns-port", str(apns_port)]
    argv += ["--smtp-port", str(smtp_port)]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(argv, cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            with urllib.request.urlopen(url + "/_sim/providers", timeout=1):
                return True
        except OSError:
            return process.poll() is not None

    try:
        wait_until(answers, 20, "the simulator")
        assert process.poll() is None, log_path.read_text()
        yield SimulatorProcess(url, apns_port, smtp_port)
    finally:
        stop_process_group(process)


@pytest.fixture(scope="session")
def _simulator_process(_receiver: Receiver, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorProcess]:
    log_path = tmp_path_factory.mktemp("simulator") / "simulator.log"
    with simulator_process(f"{_receiver.base_url}/receipts/", log_path) as process:
        yield process


@pytest.fixture
def sim(_simulator_process: SimulatorProcess, _receiver: Receiver) -> Simulator:
    """The shared simulator, reset to its defaults, and an empty receiver."""
    simulator = Simulator(_simulator_process, _receiver)
    simulator.control("POST", "/_sim/reset")
    _receiver.requests.clear()
    return simulator
