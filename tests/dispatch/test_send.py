"""POST /api/v1/messages: request-level faults store nothing; every entry gets an outcome."""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest
from django.test import TestCase
from django.utils import timezone

from apps.accounts.models import Preference, Recipient
from apps.accounts.selectors import quota_key
from apps.dispatch import outbox
from apps.dispatch.models import IdempotencyRecord, Message, MessageEvent, Outbox
from apps.dispatch.selectors import message_timeline
from messaging_center.broker import redis_client

pytestmark = pytest.mark.django_db


def _nothing_stored() -> None:
    assert Message.objects.count() == 0
    assert MessageEvent.objects.count() == 0
    assert Outbox.objects.count() == 0
    assert redis_client().llen("mc.high") == 0


@pytest.fixture
def shipped(api, make_template):
    return make_template(api)


def _send(api, body, **headers):
    # The test runs inside a transaction that never commits: run the on-commit publish explicitly.
    with TestCase.captureOnCommitCallbacks(execute=True):
        return api.post("/api/v1/messages", body, **headers)


def test_single_recipient_is_queued_stored_and_published(api, shipped) -> None:
    response = _send(api, {"template": "order_shipped", "to": {"phone": "+8613800138000"}, "params": {"order_no": "A1"}})

    assert response.status_code == 202
    body = response.json()
    assert body["accepted"] == 1 and body["rejected"] == 0
    assert body["batch_id"].startswith("bat_")
    [outcome] = body["messages"]
    assert outcome["status"] == "queued" and outcome["id"].startswith("msg_")
    message = Message.objects.get()
    assert (message.address, message.content, message.priority, message.segments) == (
        "+8613800138000",
        "Your order A1 has shipped.",
        "high",
        1,
    )
    assert [(e.status, e.detail) for e in message_timeline(message)] == [("queued", "accepted")]
    assert redis_client().llen("mc.high") == 1  # one task for the lane, published on commit
    [row] = Outbox.objects.all()
    assert redis_client().sismember(outbox.PUBLISHED_KEY, str(row.id))  # marked published in the same breath
    assert outbox.outbox_relay() == 0  # the relay clears it without publishing again
    assert Outbox.objects.count() == 0
    assert redis_client().llen("mc.high") == 1


def test_outcomes_are_in_request_order_and_entry_params_override(api, shipped) -> None:
    Recipient.objects.create(account=api.account, user_id="u42", phone="+8613800138001")
    response = _send(
        api,
        {
            "template": "order_shipped",
            "to": [
                {"phone": "+8613800138000", "params": {"order_no": "A1"}},
                {"user_id": "u42"},
                {"phone": "12"},
                {"user_id": "nobody"},
                {"email": "a@example.com"},
            ],
            "params": {"order_no": "A0"},
        },
    )
    assert response.status_code == 202
    outcomes = response.json()["messages"]
    assert [(o["status"], o.get("code")) for o in outcomes] == [
        ("queued", None),
        ("queued", None),
        ("rejected", "invalid_address"),
        ("rejected", "invalid_address"),
        ("rejected", "invalid_address"),
    ]
    contents = {m.address: m.content for m in Message.objects.filter(status="queued")}
    assert contents == {"+8613800138000": "Your order A1 has shipped.", "+8613800138001": "Your order A0 has shipped."}
    assert Message.objects.filter(status="rejected").count() == 3  # stored too, for "why did they get nothing"
    assert "nobody" in outcomes[3]["detail"]


def test_national_phone_format_is_stored_e164(api, shipped) -> None:
    _send(api, {"template": "order_shipped", "to": {"phone": "138 0013 8000"}, "params": {"order_no": "1"}})
    assert Message.objects.get().address == "+8613800138000"


def test_entry_missing_params_is_rejected_while_others_go(api, shipped) -> None:
    response = _send(
        api,
        {
            "template": "order_shipped",
            "to": [{"phone": "+8613800138000", "params": {"order_no": "A1"}}, {"phone": "+8613800138001"}],
        },
    )
    assert [(o["status"], o.get("code")) for o in response.json()["messages"]] == [
        ("queued", None),
        ("rejected", "missing_params"),
    ]
    assert "order_no" in response.json()["messages"][1]["detail"]


def test_request_missing_params_no_entry_supplies_is_400(api, shipped) -> None:
    response = _send(api, {"template": "order_shipped", "to": [{"phone": "+8613800138000"}]})
    assert response.status_code == 400
    assert response.json()["code"] == "missing_params"
    assert "order_no" in response.json()["detail"]
    _nothing_stored()


def test_opted_out_recipient_is_suppressed(api, make_template) -> None:
    make_template(api, code="promo", category="marketing", content="Sale!")
    recipient = Recipient.objects.create(account=api.account, user_id="u1", phone="+8613800138000", timezone="UTC")
    Preference.objects.create(recipient=recipient, category="marketing", channel="sms", subscribed=False)
    response = _send(
        api,
        {
            "template": "promo",
            "to": [{"user_id": "u1"}, {"phone": "+8613800138000"}, {"phone": "+8613800138001"}],
            "send_at": _daytime_utc(),
        },
    )
    outcomes = [(o["status"], o.get("code")) for o in response.json()["messages"]]
    assert outcomes[:2] == [("suppressed", "opted_out"), ("suppressed", "opted_out")]
    assert outcomes[2][0] in ("queued", "scheduled")


def _daytime_utc() -> str:
    """A send time outside quiet hours in UTC, a little in the future."""
    now = timezone.now().astimezone(dt.UTC)
    at = now.replace(hour=12, minute=0, second=0, microsecond=0)
    if at <= now:
        at += dt.timedelta(days=1)
    return at.isoformat()


def test_marketing_inside_quiet_hours_is_scheduled_for_the_window_end(api, make_template) -> None:
    make_template(api, code="promo", category="marketing", content="Sale!")
    Recipient.objects.create(account=api.account, user_id="night", phone="+8613800138000", timezone="Asia/Shanghai")
    local_night = (timezone.now().astimezone(dt.timezone(dt.timedelta(hours=8))) + dt.timedelta(days=1)).replace(
        hour=23, minute=0, second=0, microsecond=0
    )
    response = _send(api, {"template": "promo", "to": {"user_id": "night"}, "send_at": local_night.isoformat()})
    [outcome] = response.json()["messages"]
    assert outcome["status"] == "scheduled"
    expected_end = (local_night + dt.timedelta(days=1)).replace(hour=8)
    assert dt.datetime.fromisoformat(outcome["scheduled_at"]) == expected_end
    assert Message.objects.get().scheduled_at == expected_end


def test_transactional_ignores_quiet_hours_and_future_send_at_is_scheduled(api, shipped) -> None:
    at = timezone.now() + dt.timedelta(hours=3)
    response = _send(
        api,
        {"template": "order_shipped", "to": {"phone": "+8613800138000"}, "params": {"order_no": "1"}, "send_at": at.isoformat()},
    )
    [outcome] = response.json()["messages"]
    assert outcome["status"] == "scheduled"
    message = Message.objects.get()
    assert message.scheduled_at == at.replace(microsecond=at.microsecond)
    assert message.expires_at == message.scheduled_at + dt.timedelta(seconds=3600)
    assert redis_client().llen("mc.high") == 0  # waits in the database, not as a Celery ETA


def test_verification_duplicate_and_frequency_limits(api, make_template) -> None:
    make_template(api, code="login", category="verification", content="Code {{code}}")
    first = _send(api, {"template": "login", "to": {"phone": "+8613800138000"}, "params": {"code": "111111"}}).json()
    same = _send(api, {"template": "login", "to": {"phone": "+8613800138000"}, "params": {"code": "111111"}}).json()
    other = _send(api, {"template": "login", "to": {"phone": "+8613800138000"}, "params": {"code": "222222"}}).json()
    assert first["messages"][0]["status"] == "queued"
    assert (same["messages"][0]["status"], same["messages"][0]["code"]) == ("suppressed", "duplicate")
    assert (other["messages"][0]["status"], other["messages"][0]["code"]) == ("rejected", "frequency_limited")
    assert Message.objects.get(status="queued").priority == "critical"
    assert redis_client().llen("mc.critical") == 1


def test_duplicate_entries_in_one_request_each_get_an_outcome(api, make_template) -> None:
    make_template(api, code="login", category="verification", content="Code {{code}}")
    response = _send(api, {"template": "login", "to": [{"phone": "+8613800138000"}] * 3, "params": {"code": "123456"}})
    assert [(o["status"], o.get("code")) for o in response.json()["messages"]] == [
        ("queued", None),
        ("suppressed", "duplicate"),
        ("suppressed", "duplicate"),
    ]
    assert len({o["id"] for o in response.json()["messages"]}) == 3


def test_marketing_frequency_limit_three_per_day(api, make_template) -> None:
    make_template(api, code="promo", category="marketing", content="Sale {{n}}", dedup_window=0)
    Recipient.objects.create(account=api.account, user_id="u", phone="+8613800138000", timezone="UTC")
    entries = [{"user_id": "u", "params": {"n": str(i)}} for i in range(4)]
    response = _send(api, {"template": "promo", "to": entries, "send_at": _daytime_utc()})
    assert [o.get("code") for o in response.json()["messages"]] == [None, None, None, "frequency_limited"]


def test_unicode_and_emoji_params(api, shipped) -> None:
    response = _send(api, {"template": "order_shipped", "to": {"phone": "+8613800138000"}, "params": {"order_no": "订单🚚"}})
    assert response.status_code == 202
    message = Message.objects.get()
    assert message.content == "Your order 订单🚚 has shipped."
    assert message.segments == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"to": {"phone": "+8613800138000"}}, "template"),
        ({"template": "order_shipped", "to": []}, "to"),
        ({"template": "order_shipped", "to": "+8613800138000"}, "to"),
        ({"template": "order_shipped", "to": [42]}, "to[0]"),
        ({"template": "order_shipped", "to": [{"params": {}}]}, "to[0]"),
        ({"template": "order_shipped", "to": [{"phone": 8613800138000}]}, "to[0].phone"),
        ({"template": "order_shipped", "to": [{"mobile": "+8613800138000"}]}, "to[0].mobile"),
        ({"template": "order_shipped", "to": {"phone": "+86138"}, "params": {"order_no": {"x": 1}}}, "params.order_no"),
        ({"template": "order_shipped", "to": {"phone": "+86138"}, "params": {"order_no": True}}, "params.order_no"),
        ({"template": "order_shipped", "to": {"phone": "+86138"}, "params": ["A1"]}, "params"),
        ({"template": "order_shipped", "to": {"phone": "+86138"}, "priority": "urgent"}, "priority"),
        ({"template": "order_shipped", "to": {"phone": "+86138"}, "ttl": 0}, "ttl"),
        ({"template": "order_shipped", "to": {"phone": "+86138"}, "ttl": 7 * 86400 + 1}, "ttl"),
        ({"template": "order_shipped", "to": {"phone": "+86138"}, "ttl": "60"}, "ttl"),
        ({"template": "order_shipped", "to": {"phone": "+86138"}, "send_at": "tomorrow"}, "send_at"),
        ({"template": "order_shipped", "to": {"phone": "+86138"}, "send_at": "2026-11-24T09:00:00"}, "send_at"),
        ({"template": "order_shipped", "to": {"phone": "+86138"}, "send_at": "2020-01-01T00:00:00Z"}, "send_at"),
        ({"template": "order_shipped", "to": {"phone": "+86138"}, "colour": "red"}, "colour"),
        ([{"template": "order_shipped"}], "non_field_errors"),
        # What the database cannot store is refused before anything is decided.
        ({"template": "order_shipped", "to": {"user_id": "u" * 256}}, "to[0].user_id"),
        ({"template": "order_shipped", "to": {"phone": "+8613800138000\x00"}}, "to[0].phone"),
        ({"template": "order_shipped", "to": {"phone": "+86138"}, "params": {"order_no": "A\x001"}}, "params.order_no"),
        ({"template": "order_\x00shipped", "to": {"phone": "+86138"}}, "template"),
    ],
)
def test_request_level_validation_errors_store_nothing(api, shipped, body, field) -> None:
    response = _send(api, body)
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "validation_error"
    assert field in response.json()["errors"]
    _nothing_stored()


def test_send_at_a_few_minutes_late_is_sent_now(api, shipped) -> None:
    late = (timezone.now() - dt.timedelta(minutes=2)).isoformat()
    response = _send(
        api, {"template": "order_shipped", "to": {"phone": "+8613800138000"}, "params": {"order_no": "1"}, "send_at": late}
    )
    assert response.json()["messages"][0]["status"] == "queued"


def test_send_at_more_than_30_days_ahead_is_400_and_stores_nothing(api, shipped) -> None:
    body = {"template": "order_shipped", "to": {"phone": "+8613800138000"}, "params": {"order_no": "1"}}
    too_far = (timezone.now() + dt.timedelta(days=30, minutes=1)).isoformat()
    response = _send(api, body | {"send_at": too_far})
    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"
    assert response.json()["errors"]["send_at"] == ["Is more than 30 days ahead."]
    _nothing_stored()

    within = (timezone.now() + dt.timedelta(days=29, hours=23)).isoformat()
    response = _send(api, body | {"send_at": within})
    assert response.status_code == 202
    assert response.json()["messages"][0]["status"] == "scheduled"


def test_more_than_1000_recipients_is_400(api, shipped) -> None:
    response = _send(api, {"template": "order_shipped", "to": [{"phone": "+8613800138000"}] * 1001, "params": {"order_no": "1"}})
    assert response.status_code == 400
    assert response.json()["code"] == "too_many_recipients"
    _nothing_stored()


def test_unknown_deleted_and_foreign_templates_are_404(api, shipped, make_api_client, make_template) -> None:
    from apps.templates.services import template_delete

    other = make_api_client("other")
    make_template(other, code="theirs")
    for code in ("nope", "theirs"):
        response = _send(api, {"template": code, "to": {"phone": "+8613800138000"}})
        assert response.status_code == 404
        assert response.json()["code"] == "template_not_found"
    template_delete(template=shipped)
    response = _send(api, {"template": "order_shipped", "to": {"phone": "+8613800138000"}, "params": {"order_no": "1"}})
    assert response.json()["code"] == "template_not_found"
    _nothing_stored()


def test_ten_megabytes_of_params_is_413(api, shipped) -> None:
    body = {"template": "order_shipped", "to": {"phone": "+8613800138000"}, "params": {"order_no": "x" * (10 * 1024 * 1024)}}
    response = _send(api, body)
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    _nothing_stored()


def test_malformed_json_and_wrong_content_type(api, shipped) -> None:
    bad = api.client.post("/api/v1/messages", "{", content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {api.key}")
    assert (bad.status_code, bad.json()["code"]) == (400, "validation_error")
    form = api.client.post("/api/v1/messages", "template=x", content_type="text/plain", HTTP_AUTHORIZATION=f"Bearer {api.key}")
    assert (form.status_code, form.json()["code"]) == (415, "unsupported_media_type")
    _nothing_stored()


def test_idempotency_key_replays_byte_for_byte_and_conflicts_on_another_body(api, shipped) -> None:
    body = {"template": "order_shipped", "to": {"phone": "+8613800138000"}, "params": {"order_no": "A1"}}
    first = _send(api, body, HTTP_IDEMPOTENCY_KEY="order-A1")
    again = _send(api, body, HTTP_IDEMPOTENCY_KEY="order-A1")
    assert first.status_code == again.status_code == 202
    assert first.content == again.content
    assert Message.objects.count() == 1
    assert redis_client().llen("mc.high") == 1

    changed = _send(api, {**body, "params": {"order_no": "A2"}}, HTTP_IDEMPOTENCY_KEY="order-A1")
    assert changed.status_code == 409
    assert changed.json()["code"] == "idempotency_conflict"
    assert Message.objects.count() == 1


def test_idempotency_keys_are_per_account(api, shipped, make_api_client, make_template) -> None:
    other = make_api_client("other")
    make_template(other)
    body = {"template": "order_shipped", "to": {"phone": "+8613800138000"}, "params": {"order_no": "A1"}}
    a = _send(api, body, HTTP_IDEMPOTENCY_KEY="k").json()
    b = _send(other, body, HTTP_IDEMPOTENCY_KEY="k").json()
    assert a["batch_id"] != b["batch_id"]


def test_overlong_idempotency_key_is_400(api, shipped) -> None:
    response = _send(
        api,
        {"template": "order_shipped", "to": {"phone": "+8613800138000"}, "params": {"order_no": "1"}},
        HTTP_IDEMPOTENCY_KEY="k" * 256,
    )
    assert response.status_code == 400
    _nothing_stored()


def test_daily_quota_refuses_a_partly_fitting_batch_whole(make_api_client, make_template) -> None:
    api = make_api_client("small", daily_quota=3)
    make_template(api)
    ok = _send(api, {"template": "order_shipped", "to": [{"phone": "+8613800138000"}] * 2, "params": {"order_no": "1"}})
    assert ok.status_code == 202
    refused = _send(api, {"template": "order_shipped", "to": [{"phone": "+8613800138001"}] * 2, "params": {"order_no": "1"}})
    assert refused.status_code == 429
    assert refused.json()["code"] == "quota_exceeded"
    assert int(refused["Retry-After"]) > 0
    assert Message.objects.count() == 2
    assert api.get("/api/v1/account").json()["used_today"] == 2
    fits = _send(api, {"template": "order_shipped", "to": [{"phone": "+8613800138001"}], "params": {"order_no": "1"}})
    assert fits.status_code == 202


def test_request_rate_limit_is_429_with_retry_after(make_api_client, make_template) -> None:
    api = make_api_client("slow", rate_limit=2)
    statuses = [api.get("/api/v1/account").status_code for _ in range(4)]
    assert statuses[:2] == [200, 200]
    assert 429 in statuses[2:]
    limited = api.get("/api/v1/account")
    assert limited.status_code == 429
    assert limited.json()["code"] == "rate_limited"
    assert int(limited["Retry-After"]) >= 1


def test_sends_over_the_request_rate_are_429_count_nothing_and_free_their_key(make_api_client, make_template) -> None:
    """A send takes its request-rate token in the same Redis call as its limits: over the rate it is
    refused before anything is counted, and its Idempotency-Key stays free for the retry."""
    api = make_api_client("slow-sender", rate_limit=2)
    make_template(api)

    def body(n: int) -> dict:
        return {"template": "order_shipped", "to": {"phone": f"+86138001380{n:02d}"}, "params": {"order_no": "1"}}

    assert [_send(api, body(i), HTTP_IDEMPOTENCY_KEY=f"key-{i}").status_code for i in range(2)] == [202, 202]
    limited = _send(api, body(2), HTTP_IDEMPOTENCY_KEY="key-2")
    assert limited.status_code == 429, limited.content
    assert limited.json()["code"] == "rate_limited"
    assert int(limited["Retry-After"]) >= 1
    assert Message.objects.count() == 2
    assert int(redis_client().get(quota_key(api.account, timezone.now())) or 0) == 2  # not counted
    assert not IdempotencyRecord.objects.filter(account=api.account, key="key-2").exists()
    # An invalid request, or one whose body cannot be read, is throttled too.
    assert _send(api, {"template": "order_shipped", "to": []}).status_code == 429
    garbage = api.client.post(
        "/api/v1/messages", "{oops", content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {api.key}"
    )
    assert garbage.status_code == 429
    time.sleep(1.1)  # two tokens back at 2 per second
    assert _send(api, body(2), HTTP_IDEMPOTENCY_KEY="key-2").status_code == 202
    assert _send(api, {"template": "order_shipped", "to": []}).status_code == 400


def test_response_is_compact_json(api, shipped) -> None:
    response = _send(api, {"template": "order_shipped", "to": {"phone": "+8613800138000"}, "params": {"order_no": "1"}})
    assert response["Content-Type"] == "application/json"
    assert json.loads(response.content)["accepted"] == 1


def test_control_characters_survive_storage(api, make_template) -> None:
    make_template(api, code="raw", channel="email", content="{{body}}", title="t")
    tricky = "tab\there\nnew line\\backslash\r\\N and 中文 ✓"
    response = _send(api, {"template": "raw", "to": {"email": "a@example.com"}, "params": {"body": tricky}})
    assert response.status_code == 202
    message = Message.objects.get()
    assert message.content == tricky
    assert message.params == {"body": tricky}


def test_the_202_body_is_compact_json_with_every_outcome(api, make_template, shipped) -> None:
    """The body is written out by hand for the common outcome: it must stay exactly what json.dumps
    writes (compact, non-ASCII kept), for every kind of entry, since replays return it byte for byte."""
    make_template(api, code="promo", category="marketing", content="Sale {{n}} 🎉", dedup_window=0)
    entries = [
        {"phone": "+8613800138000"},
        {"phone": 'not a "number" 号码'},
        {"email": "a@example.com"},
        {"phone": "+8613800138001", "params": {"n": "二"}},
    ]
    response = _send(api, {"template": "promo", "to": entries, "params": {"n": "1"}, "send_at": _daytime_utc()})
    assert response.status_code == 202, response.content
    body = response.json()
    assert [o["status"] for o in body["messages"]] == ["scheduled", "rejected", "rejected", "scheduled"]
    assert response.content == json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    queued = _send(api, {"template": "order_shipped", "to": [{"phone": "+8613800138002"}] * 2, "params": {"order_no": "1"}})
    assert [o["status"] for o in queued.json()["messages"]] == ["queued", "queued"]
    assert queued.content == json.dumps(queued.json(), ensure_ascii=False, separators=(",", ":")).encode()


def test_an_address_longer_than_the_column_is_an_invalid_address(api, make_template) -> None:
    make_template(api, code="app_notice", channel="push", content="Order {{order_no}}", sms_signature="")
    response = _send(
        api,
        {"template": "app_notice", "to": [{"push_token": "t" * 256}, {"push_token": "t" * 255}], "params": {"order_no": "1"}},
    )
    assert response.status_code == 202, response.content
    too_long, fits = response.json()["messages"]
    assert (too_long["status"], too_long["code"]) == ("rejected", "invalid_address")
    assert fits["status"] == "queued"
