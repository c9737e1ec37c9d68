from __future__ import annotations

import json

import pytest
from django.test import Client

from apps.accounts.models import Account
from apps.templates.models import MessageTemplate
from apps.templates.services import template_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def template() -> MessageTemplate:
    account = Account.objects.create(name="shop")
    return template_create(
        account=account,
        code="login_code",
        name="Login code",
        channel="sms",
        category="verification",
        content="Your code is {{code}}",
        sms_signature="ACME",
        sample_params={"code": "123456"},
    )


def test_changelist_and_filters_render(operator: Client, template: MessageTemplate) -> None:
    url = "/admin/message_templates/messagetemplate/"
    response = operator.get(url)
    assert response.status_code == 200
    assert b"login_code" in response.content
    for query in (
        {"channel__exact": "sms"},
        {"category__exact": "verification"},
        {"status__exact": "active"},
        {"deleted": "no"},
        {"q": "login"},
    ):
        response = operator.get(url, query)
        assert response.status_code == 200
        assert b"login_code" in response.content
    assert b"login_code" not in operator.get(url, {"q": "marketing"}).content


def test_change_page_renders_the_preview_with_segments(operator: Client, template: MessageTemplate) -> None:
    response = operator.get(f"/admin/message_templates/messagetemplate/{template.pk}/change/")
    assert response.status_code == 200
    content = response.content.decode()
    assert "【ACME】Your code is 123456" in content
    assert "1 segment(s), UCS-2" in content
    assert "message_templates/preview.js" in content


def test_add_page_renders(operator: Client) -> None:
    assert operator.get("/admin/message_templates/messagetemplate/add/").status_code == 200


def test_live_preview_endpoint(operator: Client) -> None:
    url = "/admin/message_templates/messagetemplate/preview/"
    body = operator.post(
        url,
        {
            "channel": "sms",
            "category": "marketing",
            "content": "Sale {{pct}}% off",
            "sms_signature": "",
            "sample_params": json.dumps({"pct": 20}),
        },
    ).json()
    assert body == {"content": "Sale 20% off", "title": "", "missing": [], "segments": 1, "encoding": "GSM-7", "signed": ""}
    broken = operator.post(url, {"channel": "sms", "category": "marketing", "content": "Sale {{pct", "sample_params": ""}).json()
    assert "position 6" in broken["error"]
    assert Client().post(url, {}).status_code == 302  # operators only


def test_admin_save_validates_like_the_api(operator: Client, template: MessageTemplate) -> None:
    data = {
        "account": template.account_id,
        "code": "welcome",
        "name": "Welcome",
        "channel": "sms",
        "category": "verification",
        "status": "active",
        "content": "Welcome {{name}}",
        "title": "",
        "sms_signature": "",
        "sample_params": "{}",
        "priority": "",
        "frequency_limits": "null",
        "provider_template_ids": "{}",
    }
    response = operator.post("/admin/message_templates/messagetemplate/add/", data)
    assert response.status_code == 200
    assert "{{code}}" in response.content.decode()
    assert not MessageTemplate.objects.filter(code="welcome").exists()

    response = operator.post("/admin/message_templates/messagetemplate/add/", {**data, "category": "transactional"})
    assert response.status_code == 302
    assert MessageTemplate.objects.get(code="welcome").variables == ["name"]

    duplicate = operator.post("/admin/message_templates/messagetemplate/add/", {**data, "category": "transactional"})
    assert duplicate.status_code == 200
    assert MessageTemplate.objects.filter(code="welcome").count() == 1


def test_soft_delete_action(operator: Client, template: MessageTemplate) -> None:
    response = operator.post(
        "/admin/message_templates/messagetemplate/",
        {"action": "soft_delete", "_selected_action": [str(template.pk)]},
    )
    assert response.status_code == 302
    template.refresh_from_db()
    assert template.deleted_at is not None
