from __future__ import annotations

import pytest

from apps.accounts.models import PushToken
from apps.accounts.services import push_tokens_deactivate

pytestmark = pytest.mark.django_db

FULL = {
    "phone": "+8613800138000",
    "email": "li@Example.COM",
    "wechat_openid": "oAbc123",
    "wecom_userid": "lilei",
    "push_tokens": [{"platform": "fcm", "token": "fcm-token-1"}, {"platform": "apns", "token": "a" * 64}],
    "timezone": "Asia/Shanghai",
}


def _assert_400(response, field: str) -> dict:
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "validation_error"
    assert field in body["errors"], body
    return body


def test_put_creates_and_returns_the_stored_record(api) -> None:
    response = api.put("/api/v1/recipients/u42", FULL)
    assert response.status_code == 200
    body = response.json()
    assert body["user_id"] == "u42"
    assert body["phone"] == "+8613800138000"
    assert body["email"] == "li@example.com"
    assert body["wechat_openid"] == "oAbc123"
    assert body["wecom_userid"] == "lilei"
    assert body["timezone"] == "Asia/Shanghai"
    assert body["push_tokens"] == [
        {"platform": "fcm", "token": "fcm-token-1", "active": True},
        {"platform": "apns", "token": "a" * 64, "active": True},
    ]
    assert api.get("/api/v1/recipients/u42").json() == body


def test_put_replaces_the_whole_record(api) -> None:
    api.put("/api/v1/recipients/u42", FULL)
    body = api.put("/api/v1/recipients/u42", {"email": "new@example.com", "push_tokens": [FULL["push_tokens"][1]]}).json()
    assert body["phone"] is None
    assert body["wechat_openid"] is None
    assert body["timezone"] is None
    assert body["email"] == "new@example.com"
    assert [token["platform"] for token in body["push_tokens"]] == ["apns"]
    assert PushToken.objects.count() == 1


@pytest.mark.parametrize("raw", ["13800138000", "138 0013 8000", "+86 138-0013-8000", "008613800138000"])
def test_national_and_formatted_phones_are_stored_e164(api, raw: str) -> None:
    assert api.put("/api/v1/recipients/u1", {"phone": raw}).json()["phone"] == "+8613800138000"


def test_default_phone_region_is_a_setting(api, settings) -> None:
    settings.DEFAULT_PHONE_REGION = "US"
    assert api.put("/api/v1/recipients/u1", {"phone": "(415) 555-0132"}).json()["phone"] == "+14155550132"


@pytest.mark.parametrize("phone", ["12345", "+86123", "not a phone", "+999999999999"])
def test_invalid_phone_is_400(api, phone: str) -> None:
    _assert_400(api.put("/api/v1/recipients/u1", {"phone": phone}), "phone")


@pytest.mark.parametrize("email", ["nope", "a@", "@b.com", "a b@c.com"])
def test_invalid_email_is_400(api, email: str) -> None:
    _assert_400(api.put("/api/v1/recipients/u1", {"email": email}), "email")


@pytest.mark.parametrize("tz", ["Mars/Olympus", "+08:00", "../etc/passwd", "asia/shanghai"])
def test_invalid_timezone_is_400(api, tz: str) -> None:
    _assert_400(api.put("/api/v1/recipients/u1", {"timezone": tz}), "timezone")


@pytest.mark.parametrize(
    ("tokens", "field"),
    [
        ([{"platform": "gcm", "token": "x"}], "push_tokens.0.platform"),
        ([{"platform": "fcm"}], "push_tokens.0.token"),
        ({"platform": "fcm", "token": "x"}, "push_tokens"),
        ([{"platform": "fcm", "token": f"t{i}"} for i in range(51)], "push_tokens"),
    ],
)
def test_invalid_push_tokens_are_400(api, tokens: object, field: str) -> None:
    _assert_400(api.put("/api/v1/recipients/u1", {"push_tokens": tokens}), field)


def test_wrong_types_are_400(api) -> None:
    _assert_400(api.put("/api/v1/recipients/u1", {"wechat_openid": ["x"]}), "wechat_openid")


def test_user_id_over_128_characters_is_400(api) -> None:
    _assert_400(api.put("/api/v1/recipients/" + "u" * 129, {}), "user_id")
    assert api.put("/api/v1/recipients/" + "u" * 128, {}).status_code == 200


def test_empty_record_is_fine(api) -> None:
    body = api.put("/api/v1/recipients/u1", {}).json()
    assert body["push_tokens"] == []
    assert body["phone"] is None


def test_unknown_recipient_is_404(api) -> None:
    response = api.get("/api/v1/recipients/ghost")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_other_accounts_recipient_is_404_and_user_ids_are_per_account(api, make_api_client) -> None:
    api.put("/api/v1/recipients/u42", FULL)
    other = make_api_client("billing")
    assert other.get("/api/v1/recipients/u42").status_code == 404
    assert other.get("/api/v1/recipients/u42/preferences").status_code == 404
    assert other.patch("/api/v1/recipients/u42/preferences", {"marketing": {"sms": False}}).status_code == 404
    assert other.put("/api/v1/recipients/u42", {"email": "mine@example.com"}).status_code == 200
    assert api.get("/api/v1/recipients/u42").json()["email"] == "li@example.com"


def test_deactivated_token_is_shown_inactive_and_a_new_put_reactivates_it(api) -> None:
    api.put("/api/v1/recipients/u42", FULL)
    assert push_tokens_deactivate(tokens=["fcm-token-1"]) == 1
    tokens = api.get("/api/v1/recipients/u42").json()["push_tokens"]
    assert tokens[0] == {"platform": "fcm", "token": "fcm-token-1", "active": False}
    assert api.put("/api/v1/recipients/u42", FULL).json()["push_tokens"][0]["active"] is True


def test_duplicate_tokens_in_one_put_are_stored_once(api) -> None:
    token = {"platform": "jpush", "token": "j1"}
    assert len(api.put("/api/v1/recipients/u1", {"push_tokens": [token, token]}).json()["push_tokens"]) == 1


def test_bad_default_phone_region_stops_the_start() -> None:
    from tests.test_settings_env import _run

    result = _run({"DEFAULT_PHONE_REGION": "XX"})
    assert result.returncode != 0
    assert "DEFAULT_PHONE_REGION" in result.stderr.splitlines()[-1]
