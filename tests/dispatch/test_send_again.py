"""Admin "Send again" is a send like any other: it goes through the accept path, so opt-outs, quiet
hours, frequency limits and the quota apply; each outcome is shown and kept in admin's log."""

from __future__ import annotations

import re

import pytest
from django.contrib.admin.models import CHANGE, LogEntry

from apps.dispatch.models import Message
from messaging_center import ids

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/dispatch/message/"


def _sent(api, template: str, to: dict[str, str]) -> Message:
    response = api.post("/api/v1/messages", {"template": template, "to": to, "params": {"n": "7"}})
    assert response.status_code == 202, response.content
    outcome = response.json()["messages"][0]
    assert outcome["status"] in ("queued", "scheduled"), outcome
    return Message.objects.get(id=ids.decode("msg", outcome["id"]))


def _send_again(operator, message: Message) -> str:
    page = operator.post(CHANGELIST, {"action": "send_again", "_selected_action": [str(message.pk)]}, follow=True)
    assert page.status_code == 200
    return page.content.decode()


def test_send_again_to_a_recipient_who_opted_out_is_refused_with_the_reason(api, make_template, operator) -> None:
    make_template(api, code="promo", category="marketing", content="Sale {{n}}!")
    assert api.put("/api/v1/recipients/u1", {"phone": "+8613800138000", "timezone": "UTC"}).status_code == 200
    original = _sent(api, "promo", {"user_id": "u1"})
    assert api.patch("/api/v1/recipients/u1/preferences", {"marketing": {"sms": False}}).status_code == 200

    page = _send_again(operator, original)

    assert "Not sent again" in page and "The recipient opted out of marketing sms. (suppressed)" in page
    assert Message.objects.filter(account=api.account).exclude(status="suppressed").count() == 1  # only the original
    [entry] = LogEntry.objects.all()
    assert (entry.action_flag, entry.object_id, entry.object_repr) == (CHANGE, str(original.pk), original.public_id)
    assert entry.get_change_message() == "Send again refused: The recipient opted out of marketing sms. (suppressed)."
    assert entry.user.username == "ops"
    # The operator's action shows under "Recent actions" on the admin index.
    assert original.public_id in operator.get("/admin/").content.decode()


def test_send_again_of_an_allowed_message_is_sent_and_logged(api, sms_template, operator) -> None:
    original = _sent(api, "notice", {"phone": "+8613800138001"})

    page = _send_again(operator, original)

    [copy_id] = re.findall(r"Sent again 1 message\(s\): (msg_\w+) \(queued\)", page)
    copy = Message.objects.get(id=ids.decode("msg", copy_id))
    assert (copy.address, copy.content, copy.status, copy.priority) == (original.address, original.content, "queued", "high")
    assert copy.batch_id != original.batch_id  # a send of its own
    events = api.get(f"/api/v1/messages/{copy_id}").json()["events"]
    assert [(e["status"], e["code"], e["detail"]) for e in events] == [
        ("queued", "resend", f"sent again from {original.public_id} by operator ops")
    ]
    [entry] = LogEntry.objects.all()
    assert entry.get_change_message() == f"Sent again as {copy_id} (queued)."


def test_send_again_counts_against_the_quota(make_api_client, sms_template, make_template, operator) -> None:
    small = make_api_client("small", daily_quota=1)
    make_template(small, code="notice", content="Your code {{n}} is ready.", provider_template_ids={"aliyun": "SMS_100"})
    original = _sent(small, "notice", {"phone": "+8613800138002"})

    page = _send_again(operator, original)

    assert "The daily quota of 1 messages is used up (0 left); nothing was sent. (quota_exceeded)" in page
    assert Message.objects.filter(account=small.account).count() == 1
