from __future__ import annotations

import pytest
from django.db import IntegrityError

from apps.accounts.models import Account, Preference, PushToken, Recipient
from apps.accounts.selectors import preferences_opted_out, recipients_by_user_id
from messaging_center.vocabulary import Category, Channel

pytestmark = pytest.mark.django_db

URL = "/api/v1/recipients/u1/preferences"


@pytest.fixture
def recipient(api) -> None:
    assert api.put("/api/v1/recipients/u1", {"phone": "+8613800138000"}).status_code == 200


def _assert_400(response, field: str) -> None:
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "validation_error"
    assert field in response.json()["errors"], response.json()


def test_default_is_subscribed_to_everything(api, recipient) -> None:
    body = api.get(URL).json()
    assert set(body) == set(Category.values)
    for channels in body.values():
        assert channels == dict.fromkeys(Channel.values, True)


def test_patch_merges(api, recipient) -> None:
    first = api.patch(URL, {"marketing": {"sms": False}})
    assert first.status_code == 200
    assert first.json()["marketing"]["sms"] is False
    second = api.patch(URL, {"marketing": {"email": False}, "transactional": {"push": False}}).json()
    assert second["marketing"] == {**dict.fromkeys(Channel.values, True), "sms": False, "email": False}
    assert second["transactional"]["push"] is False
    assert api.patch(URL, {"marketing": {"sms": True}}).json()["marketing"]["sms"] is True
    assert api.get(URL).json() == api.patch(URL, {}).json()


def test_verification_cannot_be_turned_off(api, recipient) -> None:
    _assert_400(api.patch(URL, {"verification": {"sms": False}}), "verification.sms")
    assert api.patch(URL, {"verification": {"sms": True}}).status_code == 200
    assert api.get(URL).json()["verification"]["sms"] is True


def test_the_database_refuses_verification_opt_outs_too(api, recipient) -> None:
    with pytest.raises(IntegrityError):
        Preference.objects.create(
            recipient=Recipient.objects.get(user_id="u1"), category="verification", channel="sms", subscribed=False
        )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"promotions": {"sms": False}}, "promotions"),
        ({"marketing": {"fax": False}}, "marketing.fax"),
        ({"marketing": {"sms": "no"}}, "marketing.sms"),
        ({"marketing": False}, "marketing"),
    ],
)
def test_bad_patch_is_400_and_changes_nothing(api, recipient, body: dict, field: str) -> None:
    _assert_400(api.patch(URL, {**body, "transactional": {"sms": False}}), field)
    assert api.get(URL).json()["transactional"]["sms"] is True


def test_patch_body_must_be_an_object(api, recipient) -> None:
    response = api.patch(URL, ["marketing"])
    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"


def test_unknown_recipient_is_404(api) -> None:
    assert api.get("/api/v1/recipients/ghost/preferences").status_code == 404
    assert api.patch("/api/v1/recipients/ghost/preferences", {"marketing": {"sms": False}}).status_code == 404


def _recipients(account: Account, count: int) -> list[Recipient]:
    recipients = Recipient.objects.bulk_create(
        Recipient(
            account=account,
            user_id=f"u{index}",
            phone=f"+86138{index:08d}",
            email=f"u{index}@example.com",
            wechat_openid=f"openid-{index}",
            wecom_userid=f"wecom-{index}",
        )
        for index in range(count)
    )
    PushToken.objects.bulk_create(
        PushToken(recipient=recipient, platform="fcm", token=f"token-{recipient.user_id}-{n}")
        for recipient in recipients
        for n in range(2)
    )
    return recipients


def test_opted_out_for_1000_recipients_is_one_query(api, django_assert_num_queries) -> None:
    recipients = _recipients(api.account, 1000)
    Preference.objects.bulk_create(
        Preference(recipient=recipient, category="marketing", channel="sms", subscribed=False) for recipient in recipients[::10]
    )
    Preference.objects.bulk_create(
        Preference(recipient=recipient, category="marketing", channel="email", subscribed=False)
        for recipient in recipients[1::10]
    )
    user_ids = [f"u{index}" for index in range(0, 1000, 2)]
    addresses = [f"+86138{index:08d}" for index in range(1, 1000, 2)]
    with django_assert_num_queries(1):
        opted_out = preferences_opted_out(
            account_id=api.account.id, category="marketing", channel="sms", user_ids=user_ids, addresses=addresses
        )
    # Even user ids among every tenth recipient; odd-numbered ones would be addressed by phone but none opted out.
    assert opted_out == {f"u{index}" for index in range(0, 1000, 10)}


def test_opted_out_matches_each_kind_of_address(api) -> None:
    recipients = _recipients(api.account, 3)
    Preference.objects.create(recipient=recipients[1], category="marketing", channel="push", subscribed=False)
    addresses = [
        "+8613800000001",
        "u1@example.com",
        "openid-1",
        "wecom-1",
        "token-u1-1",
        "+8613800000000",
        "token-u0-0",
        "u1",  # a user id passed as an address is not an address
    ]
    opted_out = preferences_opted_out(
        account_id=api.account.id, category="marketing", channel="push", user_ids=["u0", "u1", "u2"], addresses=addresses
    )
    # Addresses are those of the channel asked about: a push opt-out matches the recipient's tokens.
    assert opted_out == {"u1", "token-u1-1"}
    for channel, address in (
        ("sms", "+8613800000001"),
        ("email", "u1@example.com"),
        ("wechat", "openid-1"),
        ("wecom", "wecom-1"),
    ):
        Preference.objects.create(recipient=recipients[1], category="marketing", channel=channel, subscribed=False)
        found = preferences_opted_out(account_id=api.account.id, category="marketing", channel=channel, addresses=addresses)
        assert found == {address}
    assert preferences_opted_out(account_id=api.account.id, category="marketing", channel="inbox", user_ids=["u1"]) == set()
    assert preferences_opted_out(account_id=api.account.id, category="transactional", channel="push", user_ids=["u1"]) == set()


def test_opted_out_stays_within_the_account(api, make_api_client) -> None:
    recipients = _recipients(api.account, 1)
    Preference.objects.create(recipient=recipients[0], category="marketing", channel="sms", subscribed=False)
    other = make_api_client("billing").account
    assert (
        preferences_opted_out(
            account_id=other.id, category="marketing", channel="sms", user_ids=["u0"], addresses=["+8613800000000"]
        )
        == set()
    )


def test_opted_out_with_nothing_to_check_or_verification_asks_nothing(api, django_assert_num_queries) -> None:
    with django_assert_num_queries(0):
        assert preferences_opted_out(account_id=api.account.id, category="marketing", channel="sms") == set()
        assert preferences_opted_out(account_id=api.account.id, category="verification", channel="sms", user_ids=["u0"]) == set()


def test_opted_out_by_addresses_only(api, django_assert_num_queries) -> None:
    recipients = _recipients(api.account, 2)
    Preference.objects.create(recipient=recipients[0], category="marketing", channel="email", subscribed=False)
    with django_assert_num_queries(1):
        found = preferences_opted_out(
            account_id=api.account.id, category="marketing", channel="email", addresses=["u0@example.com", "u1@example.com"]
        )
    assert found == {"u0@example.com"}


def test_recipients_by_user_id_prefetches_active_tokens_in_two_queries(api, django_assert_num_queries) -> None:
    _recipients(api.account, 1000)
    PushToken.objects.filter(token__endswith="-1").update(active=False)
    wanted = [f"u{index}" for index in range(1000)] + ["ghost"]
    with django_assert_num_queries(2):
        found = recipients_by_user_id(account_id=api.account.id, user_ids=wanted)
        tokens = {user_id: [t.token for t in recipient.active_push_tokens] for user_id, recipient in found.items()}
    assert len(found) == 1000
    assert "ghost" not in found
    assert tokens["u7"] == ["token-u7-0"]
    assert found["u7"].phone == "+8613800000007"


def test_recipients_by_user_id_stays_within_the_account(api, make_api_client) -> None:
    _recipients(api.account, 1)
    other = make_api_client("billing").account
    assert recipients_by_user_id(account_id=other.id, user_ids=["u0"]) == {}
    assert recipients_by_user_id(account_id=api.account.id, user_ids=[]) == {}
