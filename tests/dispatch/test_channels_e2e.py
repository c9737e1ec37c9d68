"""Every channel through the API with a real worker against the simulator, as `make run` sets it up."""

from __future__ import annotations

import contextlib

import pytest

from apps.accounts.models import PushToken
from devstack.providers import simulator_providers_configure
from tests.helpers import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def providers(sim):
    simulator_providers_configure(base_url=sim.url, apns_port=sim.process.apns_port, smtp_port=sim.process.smtp_port)
    return sim


def _send_one(api, template: str, to: dict, **params) -> str:
    response = api.post("/api/v1/messages", {"template": template, "to": to, "params": params})
    assert response.status_code == 202, response.content
    [outcome] = response.json()["messages"]
    assert outcome["status"] == "queued", outcome
    return outcome["id"]


def _wait_status(api, message_id: str, status: str) -> dict:
    def settled() -> bool:
        return api.get(f"/api/v1/messages/{message_id}").json()["status"] in (status, "failed", "expired")

    with contextlib.suppress(AssertionError):
        wait_until(settled, 40, status)
    body = api.get(f"/api/v1/messages/{message_id}").json()
    assert body["status"] == status, (body["code"], body["detail"], body["events"][-3:])
    return body


def test_wechat_template_message(api, make_template, providers, dispatch_worker) -> None:
    make_template(
        api,
        code="shipped_wx",
        channel="wechat",
        title="Shipped",
        content="Order {{order_no}} shipped",
        provider_template_ids={"wechat": {"template_id": "TM0001", "fields": {"keyword1": "order_no"}}},
    )
    message_id = _send_one(api, "shipped_wx", {"wechat_openid": "oUser_0001"}, order_no="A1")
    body = _wait_status(api, message_id, "sent")
    assert body["provider"] == "sim-wechat"
    [record] = providers.messages(to="oUser_0001")
    assert record["provider"] == "wechat"
    assert record["request"]["template_id"] == "TM0001"
    assert record["request"]["data"]["keyword1"]["value"] == "A1"


def test_wecom_app_message(api, make_template, providers, dispatch_worker) -> None:
    make_template(api, code="ops_alert", channel="wecom", content="Disk {{disk}} is full")
    message_id = _send_one(api, "ops_alert", {"wecom_userid": "zhangsan"}, disk="/data")
    assert _wait_status(api, message_id, "sent")["provider"] == "sim-wecom"
    [record] = providers.messages(to="zhangsan")
    assert record["provider"] == "wecom"


def test_email_with_html_alternative(api, make_template, providers, dispatch_worker) -> None:
    make_template(api, code="welcome", channel="email", title="Welcome {{name}}", content="Hello <b>{{name}}</b>")
    message_id = _send_one(api, "welcome", {"email": "ann@example.com"}, name="<Ann & Co>")
    assert _wait_status(api, message_id, "sent")["provider"] == "sim-smtp"
    [record] = providers.messages(to="ann@example.com")
    assert record["provider"] == "smtp"
    assert record["request"]["subject"] == "Welcome <Ann & Co>"
    assert "&lt;Ann &amp; Co&gt;" in record["request"]["html"]  # params are escaped in the HTML body


def test_push_to_a_user_reaches_every_device(api, make_template, providers, dispatch_worker) -> None:
    api.put(
        "/api/v1/recipients/u-push",
        {
            "push_tokens": [
                {"platform": "fcm", "token": "fcm-token-1"},
                {"platform": "apns", "token": "a" * 64},
                {"platform": "jpush", "token": "jpush-1"},
            ]
        },
    )
    make_template(api, code="promo_push", channel="push", title="Sale", content="{{pct}}% off today")
    message_id = _send_one(api, "promo_push", {"user_id": "u-push"}, pct="20")
    body = _wait_status(api, message_id, "sent")
    assert len(body["provider_message_id"].split(",")) == 3
    for token, kind in (("fcm-token-1", "fcm"), ("a" * 64, "apns"), ("jpush-1", "jpush")):
        [record] = providers.messages(to=token)
        assert record["provider"] == kind


def test_unregistered_token_is_deactivated(api, make_template, providers, dispatch_worker) -> None:
    api.put("/api/v1/recipients/u-gone", {"push_tokens": [{"platform": "fcm", "token": "stale-token"}]})
    make_template(api, code="ping", channel="push", title="Ping", content="ping")
    providers.behave("fcm", fail_rate=1.0, error="invalid_number")
    message_id = _send_one(api, "ping", {"user_id": "u-gone"})
    body = _wait_status(api, message_id, "failed")
    assert body["code"] == "unregistered_token"
    assert PushToken.objects.get(token="stale-token").active is False
    again = api.post("/api/v1/messages", {"template": "ping", "to": {"user_id": "u-gone"}}).json()["messages"][0]
    assert (again["status"], again["code"]) == ("rejected", "invalid_address")  # no active device left
