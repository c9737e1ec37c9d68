"""The staff dashboard: only staff see it, it is linked from the admin's index, and after traffic through
the simulator its data has something for every chart and table, across accounts, with no address."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db.models import F
from django.test import Client
from django.utils import timezone

from apps.dispatch.delivery import chunk
from apps.dispatch.models import Message, Provider
from apps.dispatch.providers.base import Receipt
from apps.dispatch.providers_config import provider_save
from apps.receipts.matching import receipts_record

pytestmark = pytest.mark.django_db

VENDOR = Path(__file__).resolve().parents[2] / "apps/monitoring/static/monitoring/vendor/echarts"


def test_only_staff_see_the_dashboard_and_its_data(operator: Client) -> None:
    anonymous = Client()
    for path in ("/admin/dashboard/", "/admin/dashboard/data.json"):
        response = anonymous.get(path)
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/"), path
    clerk = Client()
    clerk.force_login(User.objects.create_user("clerk", password="secret-pass"))  # signed in, not staff
    for path in ("/admin/dashboard/", "/admin/dashboard/data.json"):
        response = clerk.get(path)
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/"), path

    page = operator.get("/admin/dashboard/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "monitoring/vendor/echarts/echarts.min.js" in html and "monitoring/dashboard.js" in html
    assert not re.search(r"<script[^>]+src=\"https?://", html), "a script from outside"
    assert 'href="/admin/dashboard/"' in operator.get("/admin/").content.decode()
    assert operator.get("/admin/dashboard/data.json", {"range": "2y"}).json()["code"] == "validation_error"


def test_the_vendored_charting_library_is_the_version_noted_with_its_license() -> None:
    noted = (VENDOR / "VERSION.md").read_text()
    digest = hashlib.sha256((VENDOR / "echarts.min.js").read_bytes()).hexdigest()
    assert f"`{digest}`" in noted
    assert (
        "Apache License" in (VENDOR / "LICENSE").read_text() and "Apache Software Foundation" in (VENDOR / "NOTICE").read_text()
    )


def _providers(sim: Any) -> None:
    for kind in ("aliyun", "tencent"):
        provider_save(provider=Provider(name=f"test-{kind}", kind=kind, channel="sms"), settings=sim.settings(kind))


def test_after_traffic_every_chart_and_table_has_data(
    api: Any, make_api_client: Any, make_template: Any, sim: Any, operator: Client
) -> None:
    _providers(sim)
    other = make_api_client("billing", daily_quota=500)
    for client in (api, other):
        make_template(
            client, code="notice", content="Your code {{n}} is ready.", provider_template_ids={"aliyun": "SMS_1", "tencent": "1"}
        )
    sim.behave("tencent", fail_rate=1.0, error="http_500")  # every call to tencent fails; failover sends
    for client, first, count in ((api, 0, 20), (other, 100, 10)):
        to = [{"phone": f"+86139{n:08d}"} for n in range(first, first + count)]
        response = client.post("/api/v1/messages", {"template": "notice", "to": to, "params": {"n": "1"}})
        assert response.status_code == 202, response.content
    later = (timezone.now() + dt.timedelta(hours=2)).isoformat()
    scheduled = api.post(
        "/api/v1/messages", {"template": "notice", "to": {"phone": "+8613900009999"}, "params": {"n": "1"}, "send_at": later}
    )
    assert scheduled.json()["messages"][0]["status"] == "scheduled"
    for _ in range(4):  # retries at once: the backoff is the worker's business
        waiting = list(Message.objects.filter(status__in=("queued", "retry_wait")).values_list("id", flat=True))
        Message.objects.filter(id__in=waiting).update(lease_until=None)
        chunk.deliver_messages(waiting)
    # The test is one transaction, whose now() the finishes wrote as sent_at: as if sent an hour ago, so
    # that reports dated 3 s after it are in the past (a report is applied as of its date).
    assert Message.objects.filter(status="sent").update(sent_at=F("sent_at") - dt.timedelta(hours=1)) == 30
    sent = list(Message.objects.filter(status="sent").order_by("id"))
    providers = {p.name: p for p in Provider.objects.all()}
    receipts = [
        Receipt(
            provider=m.provider,
            provider_message_id=None,
            message_id=m.public_id,
            to="",
            status="delivered" if i % 5 else "undelivered",
            code="" if i % 5 else "UNDELIV",
            detail="",
            at=m.sent_at + dt.timedelta(seconds=3),  # type: ignore[operator]
        )
        for i, m in enumerate(sent)
    ]
    receipts_record(provider=providers["test-aliyun"], receipts=receipts, source="push")

    response = operator.get("/admin/dashboard/data.json", {"range": "1h"})
    assert response.status_code == 200
    data = response.json()
    assert "+86139" not in response.content.decode()  # no address anywhere
    assert data["grain"] == "minute"
    assert sum(n for _, n in data["volume"]["by_channel"]["sms"]) == 31  # both accounts, the scheduled one too
    assert set(data["volume"]["by_lane"]) == {"high"}

    quality = data["quality"]
    assert [rate for _, rate in quality["success_rate"]["test-tencent"]] and all(
        rate == 0.0 for _, rate in quality["success_rate"]["test-tencent"]
    )
    assert all(rate == 1.0 for _, rate in quality["success_rate"]["test-aliyun"])
    assert "test-aliyun" in quality["call_p95_ms"] and "test-tencent" in quality["call_p95_ms"]
    delivered = [rate for _, rate in quality["delivery_rate"]["test-aliyun"]]
    assert delivered and all(0.75 <= rate <= 0.85 for rate in delivered), delivered  # 24 of 30 delivered
    assert all(2_000 <= p95 <= 4_000 for _, p95 in quality["receipt_p95_ms"]["test-aliyun"]), quality["receipt_p95_ms"]

    [top, *_] = data["errors"]
    assert (top["provider"], top["outcome"]) == ("test-tencent", "provider_error") and top["calls"] >= 10
    states = {s["provider"]: s for s in data["states"]}
    assert states["test-tencent"]["state"] == "open" and states["test-tencent"]["success_rate"] == 0.0
    assert states["test-aliyun"]["state"] == "closed" and states["test-aliyun"]["segment"] == "*"

    assert [lane["lane"] for lane in data["lanes"]] == ["critical", "high", "normal", "bulk"]
    assert data["backlogs"] == {"scheduled": 1, "retry_wait": 0, "callbacks": 0}
    accounts = {a["account"]: a for a in data["accounts"]}
    assert accounts["orders"]["messages"] == 21 and accounts["orders"]["sent"] == 20
    assert (accounts["billing"]["used_today"], accounts["billing"]["daily_quota"]) == (10, 500)
    assert accounts["billing"]["delivery_rate"] is not None
    assert data["currency"] == "CNY" and accounts["billing"]["cost"] == 0.0  # no prices set


def test_a_provider_demoted_for_a_segment_shows_in_the_providers_table(operator: Client) -> None:
    from apps.dispatch.routing.quality import quality_update
    from tests.dispatch.test_routing_quality import _rows, make_providers

    make_providers()
    _rows("test-aliyun", 0, delivered=2, undelivered=18)  # this minute: 10 % delivered
    _rows("test-tencent", 0, delivered=30)
    quality_update()

    states = operator.get("/admin/dashboard/data.json").json()["states"]
    by_segment = {(s["provider"], s["segment"]): s for s in states}
    aliyun = by_segment[("test-aliyun", "CN-mobile")]
    assert aliyun["state"] == "demoted (delivery rate 10% < 80%)" and aliyun["success_rate"] == pytest.approx(0.1)
    assert by_segment[("test-tencent", "CN-mobile")]["state"] == "ok"
    assert by_segment[("test-aliyun", "*")]["state"] == "closed"  # its circuit: calls are fine
