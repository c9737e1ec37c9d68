"""Done-when of issue #23 for alerts, measured: under steady SMS traffic to +86 numbers through two
providers, the simulator turns one provider's receipts `undelivered`; the alert reaches the webhook
and an operator's WeCom (sent through our own send path and the simulator) within 2 minutes, with
the alert cycle run every 30 s as beat runs it; when the provider recovers, a resolve notice follows.
The times are printed. Eight minutes of real traffic: `make measure`, not part of `make test`."""

from __future__ import annotations

import threading
import time

import pytest

from apps.alerts.models import Kind, OperatorRecipient
from apps.alerts.services import alerts_evaluate
from apps.dispatch.models import Provider
from apps.dispatch.providers_config import provider_save
from tests.dispatch.conftest import SIM_SETTINGS
from tests.receipts.conftest import RECEIPT_TOKEN, make_provider

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.measure, pytest.mark.timeout(900)]

BEAT_SECONDS = 30  # CELERY_BEAT_SCHEDULE["evaluate-alerts"]
SENDS_PER_SECOND = 4
WARM_UP_SECONDS = 200  # the rule's 3-minute window (and the minute it starts in) full of healthy traffic


def _traffic(api, stop: threading.Event) -> threading.Thread:  # type: ignore[no-untyped-def]
    def run() -> None:
        from django.db import connection

        number = 0
        try:
            while not stop.wait(1 / SENDS_PER_SECOND):
                number += 1
                body = {"template": "notice", "to": {"phone": f"+86139{number:08d}"}, "params": {"n": "1"}}
                assert api.post("/api/v1/messages", body).status_code == 202
        finally:
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _until(found, timeout: float, started: float) -> float:  # type: ignore[no-untyped-def]
    """Runs the alert cycle every BEAT_SECONDS (as beat would) until `found()`; seconds since `started`."""
    deadline = started + timeout
    next_run = time.monotonic()
    while time.monotonic() < deadline:
        if time.monotonic() >= next_run:
            alerts_evaluate()
            next_run += BEAT_SECONDS
        if found():
            return time.monotonic() - started
        time.sleep(0.5)
    raise AssertionError(f"not within {timeout:.0f} s")


def test_undelivered_receipts_reach_webhook_and_operator_within_two_minutes_and_resolve(
    api, sms_template, live_sim, dispatch_worker, receipts_worker, webhook, only_rule
) -> None:
    only_rule(Kind.DELIVERY_RATE_DROP, 0.2, name="Delivery rate drop", window_minutes=3, min_volume=20)  # as shipped
    for kind in ("aliyun", "tencent"):
        make_provider(kind, endpoint=live_sim.url, receipt_token=RECEIPT_TOKEN)
    provider_save(
        provider=Provider(name="test-wecom", kind="wecom", channel="wecom"),
        settings={**SIM_SETTINGS["wecom"], "endpoint": live_sim.url},
    )
    OperatorRecipient.objects.create(name="on call", wecom_userid="oncall")
    stop = threading.Event()
    traffic = _traffic(api, stop)
    try:
        time.sleep(WARM_UP_SECONDS)  # steady healthy traffic over a whole window: nothing fires
        alerts_evaluate()
        assert webhook.bodies == []

        live_sim.behave("tencent", receipt="undelivered")
        broke = time.monotonic()
        to_webhook = _until(lambda: any("ALERT" in c and "test-tencent" in c for c in webhook.contents()), 180, broke)
        to_operator = _until(lambda: any(m["to"] == "oncall" for m in live_sim.messages(to="oncall")), 180, broke)
        print(f"\nreceipts undelivered → webhook alert {to_webhook:.0f} s, operator's WeCom (simulator) {to_operator:.0f} s")
        print("alert:", webhook.contents()[-1])
        assert to_webhook <= 120 and to_operator <= 120
        assert not any("test-aliyun" in c for c in webhook.contents())

        live_sim.behave("tencent", receipt="delivered")
        recovered = time.monotonic()
        to_resolve = _until(lambda: any("RESOLVED" in c for c in webhook.contents()), 420, recovered)
        print(f"provider recovered → resolve notice {to_resolve:.0f} s")
        print("resolve:", webhook.contents()[-1])
    finally:
        stop.set()
        traffic.join(10)
