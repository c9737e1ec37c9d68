"""Hand-made rollup rows, a real local webhook receiver and operator recipients for the alert tests."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.db.models import F

from apps.alerts.models import AlertRule, OperatorRecipient
from apps.alerts.rules import floor
from apps.dispatch.models import LATENCY_BOUNDS_MS, Grain, Rollup
from tests.receipts.conftest import _live_simulator_process, live_sim, receipts_worker  # noqa: F401 - the end-to-end test's

WIDTHS = {Grain.MINUTE: dt.timedelta(minutes=1), Grain.HOUR: dt.timedelta(hours=1)}


@pytest.fixture
def rollup() -> Callable[..., Rollup]:
    """One rollup row, as the triggers would have written it for messages created at `at`."""

    def make(account: Any, *, at: dt.datetime, outcome: str, messages: int, provider: str = "p-one", **key: Any) -> Rollup:
        grain = key.pop("grain", Grain.MINUTE)
        fields = {
            "channel": "sms",
            "category": "transactional",
            "priority": "high",
            "template_code": "notice",
            "segment": "CN-mobile",
            "codes": 0,
            "filled": 0,
        } | key
        codes, filled = fields.pop("codes"), fields.pop("filled")
        row_key = {"account_id": account.id, "grain": grain, "bucket": floor(at, WIDTHS[grain])}
        row_key |= {"provider": provider, "outcome": outcome, **fields}
        added = {"messages": F("messages") + messages, "codes": F("codes") + codes, "filled": F("filled") + filled}
        if not Rollup.objects.filter(**row_key).update(**added):  # a row of the same key adds up, as the triggers do
            empty = [0] * len(LATENCY_BOUNDS_MS)
            Rollup.objects.create(**row_key, messages=messages, codes=codes, filled=filled, latency_ms=empty, queue_ms=empty)
        return Rollup.objects.get(**row_key)

    return make


@pytest.fixture
def only_rule(db: None) -> Callable[..., AlertRule]:
    """The given rule alone (the shipped defaults out of the way)."""

    def make(kind: str, threshold: float, **fields: Any) -> AlertRule:
        AlertRule.objects.all().delete()
        return AlertRule.objects.create(name=fields.pop("name", kind), kind=kind, threshold=threshold, **fields)

    return make


@dataclass
class Webhook:
    url: str
    bodies: list[dict[str, Any]] = field(default_factory=list)
    content_types: list[str] = field(default_factory=list)

    def contents(self) -> list[str]:
        return [b["text"]["content"] for b in self.bodies]


@pytest.fixture
def webhook(settings: Any) -> Iterator[Webhook]:
    """A real HTTP server on a local port, set as ALERT_WEBHOOK_URL; answers as a DingTalk robot does."""
    hook = Webhook("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            hook.bodies.append(json.loads(raw))
            hook.content_types.append(self.headers.get("Content-Type", ""))
            answer = b'{"errcode": 0, "errmsg": "ok"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hook.url = f"http://127.0.0.1:{server.server_address[1]}/robot/send?access_token=t"
    settings.ALERT_WEBHOOK_URL = hook.url
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield hook
    server.shutdown()
    server.server_close()


@pytest.fixture
def operators(db: None) -> list[OperatorRecipient]:
    return [
        OperatorRecipient.objects.create(name="Li Lei", wecom_userid="lilei", email="lilei@ops.example", phone="+8613900000001"),
        OperatorRecipient.objects.create(name="Han Mei", email="hanmei@ops.example"),
        OperatorRecipient.objects.create(name="Gone", phone="+8613900000009", active=False),
    ]
