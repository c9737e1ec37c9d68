"""One time policy: every timestamp the API answers is UTC with `Z`, whatever the server's zone
(Asia/Shanghai by default); admin shows the operator's zone and says which."""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import User
from django.test import Client

from apps.dispatch.models import Message

pytestmark = pytest.mark.django_db
UTC_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def _timestamps(body: object) -> list[str]:
    if isinstance(body, dict):
        return [v for k, v in body.items() if (k.endswith("_at") or k == "at") and isinstance(v, str)] + [
            t for v in body.values() for t in _timestamps(v)
        ]
    if isinstance(body, list):
        return [t for v in body for t in _timestamps(v)]
    return []


def test_every_api_timestamp_is_utc_with_z(api, make_template) -> None:
    make_template(api)
    make_template(api, code="note", channel="inbox", content="Hi {{order_no}}")
    api.put("/api/v1/recipients/u1", {"phone": "+8613800138000"})
    sent = api.post(
        "/api/v1/messages", {"template": "order_shipped", "to": {"phone": "+8613800138000"}, "params": {"order_no": "1"}}
    )
    at = (dt.datetime.now(ZoneInfo("Asia/Shanghai")) + dt.timedelta(days=10)).replace(hour=9, minute=0, second=0, microsecond=0)
    later = api.post(
        "/api/v1/messages",
        {
            "template": "order_shipped",
            "to": {"phone": "+8613800138001"},
            "params": {"order_no": "2"},
            "send_at": at.isoformat(),  # 09:00+08:00, within the 30 days ahead a send may be scheduled
        },
    )
    api.post("/api/v1/messages", {"template": "note", "to": {"user_id": "u1"}, "params": {"order_no": "3"}})
    message_id = sent.json()["messages"][0]["id"]
    bodies = [
        later.json(),
        api.get(f"/api/v1/messages/{message_id}").json(),
        api.get("/api/v1/messages").json(),
        api.get("/api/v1/templates/order_shipped").json(),
        api.get("/api/v1/recipients/u1/inbox").json(),
    ]
    stamps = [t for body in bodies for t in _timestamps(body)]
    assert len(stamps) >= 8
    assert [t for t in stamps if not UTC_Z.match(t)] == []
    assert later.json()["messages"][0]["scheduled_at"] == f"{at.astimezone(dt.UTC):%Y-%m-%d}T01:00:00Z"


def test_admin_timeline_is_in_the_operators_zone_and_says_so(api, make_template, settings) -> None:
    make_template(api)
    sent = api.post(
        "/api/v1/messages", {"template": "order_shipped", "to": {"phone": "+8613800138000"}, "params": {"order_no": "1"}}
    )
    message = Message.objects.get()
    operator = Client()
    operator.force_login(User.objects.create_superuser("ops", "ops@example.com", "x"))
    page = operator.get(f"/admin/dispatch/message/{message.id}/change/").content.decode()
    assert f"at ({settings.TIME_ZONE})" in page
    local = message.created_at.astimezone(ZoneInfo(settings.TIME_ZONE))
    assert f"{local:%Y-%m-%d %H:%M:%S}" in page
    assert sent.status_code == 202
