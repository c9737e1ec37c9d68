"""The alert cycle: one open alert per rule and subject, notices to a real webhook and to operators
through our own send path, reminders, a cool-down against flapping, and a resolve notice."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from apps.accounts.selectors import quota_key
from apps.alerts.models import Alert, AlertNotice, Kind
from apps.alerts.report import quality_report_send
from apps.alerts.services import alerts_evaluate
from apps.dispatch.models import Grain, Message
from messaging_center.broker import redis_client

pytestmark = pytest.mark.django_db

MIN = dt.timedelta(minutes=1)


@pytest.fixture
def near(make_api_client, only_rule):
    only_rule(Kind.QUOTA_NEAR, 0.9, name="Account near its quota", cooldown_minutes=10, repeat_minutes=30)
    return make_api_client("shop", daily_quota=100).account


def _use(account, used: int, now: dt.datetime) -> None:
    redis_client().set(quota_key(account, now), used)


def test_an_alert_reaches_the_webhook_and_operators_once_and_its_resolve_notice_too(near, webhook, operators) -> None:
    now = timezone.now()
    _use(near, 95, now)

    assert alerts_evaluate(now=now).opened == 1
    assert alerts_evaluate(now=now + MIN).opened == 0  # dedup: still the one alert, no second notice
    [alert] = Alert.objects.all()
    assert (alert.subject, alert.state, alert.announced) == ("shop", "open", True)
    assert len(webhook.bodies) == 1
    [body] = webhook.bodies
    assert set(body) == {"msgtype", "text"} and body["msgtype"] == "text" and set(body["text"]) == {"content"}
    assert webhook.content_types == ["application/json; charset=utf-8"]
    content = body["text"]["content"]
    assert content.startswith("[Messaging Center] ALERT Account near its quota · shop: 95 of its 100 messages today (95%)")
    assert "since " in content and "Done: At 100 % its sends are refused" in content

    # Operators: one message per active address, made through the send path as the ops account.
    sent = Message.objects.filter(account__name="ops")
    assert sorted((m.channel, m.address, m.status) for m in sent) == [
        ("email", "hanmei@ops.example", "queued"),
        ("email", "lilei@ops.example", "queued"),
        ("sms", "+8613900000001", "queued"),
        ("wecom", "lilei", "queued"),
    ]
    assert all(m.content == content and m.priority == "high" for m in sent)
    [notice] = alert.notices.all()
    assert notice.kind == "opened" and notice.webhook == "HTTP 200"
    assert notice.operator_messages.count(" queued") == 4

    _use(near, 40, now + 2 * MIN)  # a quota raised by an operator, say
    cycle = alerts_evaluate(now=now + 2 * MIN)
    assert (cycle.resolved, cycle.notices) == (1, 1)
    alert.refresh_from_db()
    assert alert.state == "resolved" and alert.resolved_at == now + 2 * MIN
    resolved = webhook.contents()[-1]
    assert resolved.startswith("[Messaging Center] RESOLVED Account near its quota · shop: clear since")
    assert "Now: 40 of its 100 messages today (40%)." in resolved
    assert Message.objects.filter(account__name="ops").count() == 8
    assert [n.kind for n in alert.notices.all()] == ["opened", "resolved"]


def test_cool_down_holds_a_flapping_alert_back_and_reminders_repeat(near, webhook) -> None:
    now = timezone.now()
    _use(near, 95, now)
    alerts_evaluate(now=now)
    _use(near, 10, now)
    alerts_evaluate(now=now + MIN)
    assert [c.split(" ")[2] for c in webhook.contents()] == ["ALERT", "RESOLVED"]

    # It fires again 2 minutes after the resolve notice: a new alert, held back by the 10-minute cool-down…
    _use(near, 95, now)
    alerts_evaluate(now=now + 3 * MIN)
    flapping = Alert.objects.get(state="open")
    assert not flapping.announced and len(webhook.bodies) == 2
    # …and clears before the cool-down ends: resolved without a word, since nothing was announced.
    _use(near, 10, now)
    alerts_evaluate(now=now + 5 * MIN)
    flapping.refresh_from_db()
    assert flapping.state == "resolved" and not flapping.notices.exists() and len(webhook.bodies) == 2

    # Once more, and this time it stays: announced when the cool-down has passed, then reminded every 30 minutes.
    _use(near, 95, now)
    alerts_evaluate(now=now + 6 * MIN)
    alerts_evaluate(now=now + 12 * MIN)
    assert len(webhook.bodies) == 3 and webhook.contents()[-1].split(" ")[2] == "ALERT"
    alerts_evaluate(now=now + 30 * MIN)
    assert len(webhook.bodies) == 3
    alerts_evaluate(now=now + 42 * MIN)
    assert len(webhook.bodies) == 4 and webhook.contents()[-1].split(" ")[2:4] == ["STILL", "OPEN"]
    assert Alert.objects.filter(state="open").count() == 1


def test_a_subject_that_is_gone_resolves_its_alert_and_a_dead_webhook_stops_nothing(near, operators, settings) -> None:
    settings.ALERT_WEBHOOK_URL = "http://127.0.0.1:9/nothing-listens"
    now = timezone.now()
    _use(near, 95, now)
    alerts_evaluate(now=now)
    [notice] = AlertNotice.objects.all()
    assert notice.webhook.startswith("failed:") and " queued" in notice.operator_messages

    near.daily_quota = 0  # no quota any more: the account is no subject of the rule
    near.save()
    alerts_evaluate(now=now + MIN)
    assert Alert.objects.get().state == "resolved"


def test_the_daily_report_lists_each_provider_and_segment(api, rollup, webhook, operators) -> None:
    now = timezone.now()
    hour = now - dt.timedelta(hours=3)
    rollup(api.account, at=hour, grain=Grain.HOUR, provider="sim-aliyun", outcome="delivered", messages=97)
    rollup(api.account, at=hour, grain=Grain.HOUR, provider="sim-aliyun", outcome="undelivered", messages=3)
    rollup(api.account, at=hour, grain=Grain.HOUR, provider="sim-aliyun", segment="CN-unicom", outcome="sent", messages=10)
    quality_report_send(now=now)
    [report] = webhook.contents()
    assert "- sim-aliyun · CN-mobile: 100 sent, delivered 97.0%, receipts 100.0%, 3 undelivered, 0 failed, 0 expired" in report
    assert "- sim-aliyun · CN-unicom: 10 sent, delivered 0.0%, receipts 0.0%" in report
    # Too long for SMS: WeCom and e-mail only.
    assert sorted(Message.objects.filter(account__name="ops").values_list("channel", flat=True)) == ["email", "email", "wecom"]
