"""#23's Done-when on the default run with its default schedules (`python -m bench.quality_faults`):
steady SMS traffic to +86 mobile numbers through the three domestic providers; then the simulator
makes Tencent's receipts `undelivered`, later makes every Tencent call fail (HTTP 500). For each
fault, and for the recovery after it, the seconds until

- at least 95 % of new messages go to the other providers (and the share Tencent kept),
- the dashboard's providers table shows Tencent demoted for CN-mobile, or its circuit open
  (apps/monitoring/states.provider_states: what /admin/dashboard/data.json shows),
- an alert reaches the webhook (ALERT_WEBHOOK_URL, a local server here) and an operator's WeCom
  (our own send path, received by the simulator),
- and, after the recovery, Tencent takes traffic again and the resolve notice reaches the webhook.

The routing quality job runs every 15 s and the alert cycle every 30 s, as beat runs them; nothing is
sped up. About 20 minutes."""

from __future__ import annotations

import argparse
import http.server
import json
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from bench.throughput import _api, _control, _sim, _sql, bench_account, start_stack, stop_stack

PROVIDER = "sim-tencent"
SEGMENT = "CN-mobile"
RATE = 8.0  # messages a second


class Webhook(http.server.ThreadingHTTPServer):
    """The robot webhook: every POSTed `text.content` with the time it came."""

    def __init__(self) -> None:
        self.received: list[tuple[float, str]] = []
        webhook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server's name
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                webhook.received.append((time.monotonic(), str(body.get("text", {}).get("content", ""))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def first(self, since: float, *words: str) -> float | None:
        return next((at for at, text in self.received if at >= since and all(w in text for w in words)), None)


class Traffic:
    """RATE messages a second to fresh CN-mobile numbers; remembers when each was accepted."""

    def __init__(self, stack: Any, key: str) -> None:
        self.stack, self.key = stack, key
        self.sent: list[tuple[float, str]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        number, next_at = 0, time.monotonic()
        while not self.stop.is_set():
            number += 1
            body = {"template": "bench_delivery", "to": {"phone": f"+86139{number:08d}"}, "params": {"order_no": "A1"}}
            try:
                answer = _api(self.stack, "POST", "/api/v1/messages", self.key, body)
                self.sent.append((time.monotonic(), str(answer["messages"][0]["id"])))  # type: ignore[index]
            except Exception as error:
                print(f"  send refused: {error}", flush=True)
            next_at += 1 / RATE
            time.sleep(max(0.0, next_at - time.monotonic()))

    def share(self, start: float, end: float) -> tuple[float, int]:
        """Tencent's share of the messages accepted in [start, end) that a provider took."""
        from messaging_center import ids

        picked = [ids.decode("msg", mid) for at, mid in self.sent if start <= at < end]
        rows = _sql(self.stack, "SELECT provider FROM dispatch_message WHERE id = ANY(%s) AND provider <> ''", (picked,))
        names = [str(row[0]) for row in rows]
        return (sum(1 for n in names if n == PROVIDER) / len(names) if names else 0.0), len(names)


def _operator_messages(stack: Any) -> int:
    port = stack.env["SIM_PORT"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_sim/messages?to=oncall", timeout=10) as response:
        return len(json.loads(response.read())["results"])


def _state(segment: str) -> str:
    from apps.monitoring.states import provider_states

    return next((s.state for s in provider_states() if s.provider == PROVIDER and s.segment == segment), "")


def _until(found: Callable[[], bool], timeout: float, started: float) -> float | None:
    while time.monotonic() < started + timeout:
        if found():
            return time.monotonic() - started
        time.sleep(1.0)
    return None


def _shift(traffic: Traffic, fault: float, end: float) -> tuple[int | None, float, int]:
    """The first 5 s step after the fault from which on at most 5 % of new messages went to Tencent."""
    for step in range(0, int(end - fault), 5):
        share, count = traffic.share(fault + step, end)
        if share <= 0.05:
            return step, share, count
    return None, *traffic.share(fault, end)


def _seconds(value: float | None) -> str:
    return "not within the wait" if value is None else f"{value:.0f} s"


def scenario(name: str, stack: Any, traffic: Traffic, webhook: Webhook, fault: dict[str, Any], heal: dict[str, Any]) -> None:
    print(f"\n{name}", flush=True)
    shown = "demoted" if "receipt" in fault else "open"
    segment = SEGMENT if "receipt" in fault else "*"
    operators_before = _operator_messages(stack)
    _sim(stack, "/_sim/behavior", {"provider": "tencent", **fault})
    broke = time.monotonic()
    dashboard = _until(lambda: _state(segment).startswith(shown), 180, broke)
    alert = _until(lambda: webhook.first(broke, "ALERT", PROVIDER) is not None, 180, broke)
    operator = _until(lambda: _operator_messages(stack) > operators_before, 180, broke)
    time.sleep(max(0.0, broke + 150 - time.monotonic()))  # two and a half minutes of traffic under the fault
    shift, share, count = _shift(traffic, broke, time.monotonic())
    print(f"  dashboard shows {PROVIDER} {shown} ({segment}) after {_seconds(dashboard)}")
    print(f"  alert at the webhook after {_seconds(alert)}, at an operator's WeCom after {_seconds(operator)}")
    at = "not within the fault" if shift is None else f"{shift} s"
    print(f"  ≥ 95 % of new messages to the other providers from {at} on ({1 - share:.1%} of {count} after that)")
    if webhook.received:
        print(f"  the alert: {next((t for a, t in webhook.received if a >= broke and 'ALERT' in t), '')[:300]!r}")

    _sim(stack, "/_sim/behavior", {"provider": "tencent", **heal})
    healed = time.monotonic()
    back = _until(lambda: traffic.share(time.monotonic() - 20, time.monotonic())[0] >= 0.15, 420, healed)
    resolved = _until(lambda: webhook.first(healed, "RESOLVED", PROVIDER) is not None, 420, healed)
    print(f"  after the recovery: Tencent takes traffic again after {_seconds(back)}; resolve notice after {_seconds(resolved)}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.quality_faults", description=__doc__.split("\n\n")[0])
    parser.add_argument("--warm-up", type=float, default=200.0, help="seconds of healthy traffic first (default 200)")
    args = parser.parse_args()
    webhook = Webhook()
    stack = start_stack({"ALERT_WEBHOOK_URL": f"http://127.0.0.1:{webhook.server_address[1]}/robot"})
    try:
        key = bench_account(stack)
        body = {
            "code": "bench_delivery",
            "name": "bench_delivery",
            "channel": "sms",
            "category": "transactional",
            "content": "Your order {{order_no}} has shipped.",
            "sms_signature": "ACME",
            "provider_template_ids": {"aliyun": "SMS_100", "tencent": "1001", "volcengine": "ST_00000100"},
        }
        _api(stack, "POST", "/api/v1/templates", key, body)
        _control(stack)  # Django in this process, on the stack's database
        from apps.alerts.models import OperatorRecipient

        OperatorRecipient.objects.create(name="on call", wecom_userid="oncall")
        traffic = Traffic(stack, key)
        print(f"{RATE:.0f} SMS/s to CN-mobile numbers; {args.warm_up:.0f} s of healthy traffic first …", flush=True)
        time.sleep(args.warm_up)
        print(f"  before any fault: Tencent took {traffic.share(0, time.monotonic())[0]:.0%} of the messages")
        scenario(
            "1. Tencent's receipts say undelivered", stack, traffic, webhook, {"receipt": "undelivered"}, {"receipt": "delivered"}
        )
        scenario(
            "2. Every Tencent call fails (HTTP 500)",
            stack,
            traffic,
            webhook,
            {"fail_rate": 1.0, "error": "http_500"},
            {"fail_rate": 0.0},
        )
        traffic.stop.set()
        traffic.thread.join(10)
    finally:
        stop_stack(stack)
        webhook.shutdown()


if __name__ == "__main__":
    main()
