from __future__ import annotations

import pytest
from django.test import Client

from apps.accounts.contacts import phone_masked
from apps.accounts.models import Account, Preference, Recipient
from apps.accounts.services import PushTokenInput, account_create, recipient_put

pytestmark = pytest.mark.django_db


@pytest.fixture
def recipient() -> Recipient:
    account = Account.objects.create(name="shop")
    recipient = recipient_put(
        account=account,
        user_id="u42",
        phone="+8613800138000",
        email="li@example.com",
        push_tokens=[PushTokenInput(platform="fcm", token="tok-1")],
    )
    Preference.objects.create(recipient=recipient, category="marketing", channel="sms", subscribed=False)
    return recipient


def test_recipient_changelist_masks_phones(operator: Client, recipient: Recipient) -> None:
    response = operator.get("/admin/accounts/recipient/")
    assert response.status_code == 200
    content = response.content.decode()
    assert "+86138****8000" in content
    assert "+8613800138000" not in content
    assert operator.get("/admin/accounts/recipient/", {"q": "u42"}).status_code == 200


def test_recipient_change_page_shows_tokens_and_preferences_inline(operator: Client, recipient: Recipient) -> None:
    response = operator.get(f"/admin/accounts/recipient/{recipient.pk}/change/")
    assert response.status_code == 200
    content = response.content.decode()
    assert "tok-1" in content
    assert "Preferences" in content


@pytest.mark.parametrize(
    "url",
    [
        "/admin/accounts/recipient/add/",
        "/admin/accounts/account/",
        "/admin/accounts/apikey/",
        "/admin/message_templates/messagetemplate/",
    ],
)
def test_other_admin_pages_render(operator: Client, recipient: Recipient, url: str) -> None:
    assert operator.get(url).status_code == 200


def test_account_change_page_renders(operator: Client, recipient: Recipient) -> None:
    assert operator.get(f"/admin/accounts/account/{recipient.account_id}/change/").status_code == 200


@pytest.mark.parametrize(
    ("e164", "masked"),
    [("+8613800138000", "+86138****8000"), ("+14155550132", "+1415***0132"), ("+3222345678", "+32******78")],
)
def test_phone_masking(e164: str, masked: str) -> None:
    assert phone_masked(e164) == masked


def test_api_key_change_page_renders(operator: Client) -> None:
    issued = account_create(name="keys")
    assert operator.get(f"/admin/accounts/apikey/{issued.api_key.pk}/change/").status_code == 200
