from __future__ import annotations

import hashlib
import hmac
import io

import pytest
from django.core.management import call_command
from django.test import Client

from apps.accounts.models import Account, ApiKey
from apps.accounts.services import api_key_revoke
from messaging_center import crypto

pytestmark = pytest.mark.django_db


def test_create_account_prints_key_last_and_key_works() -> None:
    out = io.StringIO()
    call_command("create_account", "billing", "--rate-limit", "50", "--daily-quota", "1000", stdout=out)
    key = out.getvalue().strip().splitlines()[-1]

    response = Client().get("/api/v1/account", HTTP_AUTHORIZATION=f"Bearer {key}")

    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "billing"
    assert body["rate_limit"] == 50
    assert body["daily_quota"] == 1000
    assert body["used_today"] == 0
    assert body["callback_url"] is None
    assert body["callback_secret_set"] is False
    assert body["id"].startswith("acc_")


def test_key_is_stored_only_hashed() -> None:
    out = io.StringIO()
    call_command("create_account", "hashing", stdout=out)
    key = out.getvalue().strip().splitlines()[-1]
    stored = ApiKey.objects.get(account__name="hashing")
    assert key not in {stored.prefix, stored.key_hash}
    assert stored.key_hash == hashlib.sha256(key.encode()).hexdigest()


def test_create_account_rejects_duplicates_and_bad_limits() -> None:
    call_command("create_account", "dup", stdout=io.StringIO())
    with pytest.raises(Exception, match="already exists"):
        call_command("create_account", "dup", stdout=io.StringIO())
    with pytest.raises(Exception, match="rate-limit"):
        call_command("create_account", "neg", "--rate-limit", "0", stdout=io.StringIO())


@pytest.mark.parametrize(
    "header",
    ["", "Bearer", "Bearer mc_000000000000_nope", "Basic dXNlcjpwYXNz", "Bearer not-a-key"],
)
def test_missing_or_unknown_key_is_401(header: str) -> None:
    response = Client().get("/api/v1/account", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert response["Content-Type"] == "application/json"


def test_revoked_key_is_401(api) -> None:
    api_key_revoke(api_key=ApiKey.objects.get(account=api.account))
    response = api.get("/api/v1/account")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert "revoked" in response.json()["detail"]


def test_disabled_account_is_403(api) -> None:
    account = Account.objects.get(pk=api.account.pk)
    account.is_active = False
    account.save()
    response = api.get("/api/v1/account")
    assert response.status_code == 403
    assert response.json()["code"] == "account_disabled"


def test_first_callback_url_returns_secret_once_and_stores_it_encrypted(api) -> None:
    first = api.patch("/api/v1/account", {"callback_url": "https://orders.example.com/mc-callback"})
    assert first.status_code == 200
    secret = first.json()["callback_secret"]
    assert first.json()["callback_secret_set"] is True
    assert first.json()["callback_url"] == "https://orders.example.com/mc-callback"

    second = api.patch("/api/v1/account", {"callback_url": "https://orders.example.com/v2"})
    assert "callback_secret" not in second.json()
    assert api.get("/api/v1/account").json()["callback_url"] == "https://orders.example.com/v2"

    stored = Account.objects.get(pk=api.account.pk).callback_secret_encrypted
    assert secret not in stored
    assert hmac.compare_digest(crypto.decrypt(stored), secret)


def test_rotating_the_callback_secret_returns_a_new_one(api) -> None:
    first = api.patch("/api/v1/account", {"callback_url": "https://a.example.com/cb"}).json()["callback_secret"]
    rotated = api.patch("/api/v1/account", {"rotate_callback_secret": True}).json()["callback_secret"]
    assert rotated != first


@pytest.mark.parametrize("url", ["ftp://example.com/x", "not a url", 42])
def test_bad_callback_url_is_400_naming_the_field(api, url: object) -> None:
    response = api.patch("/api/v1/account", {"callback_url": url})
    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"
    assert "callback_url" in response.json()["errors"]


def test_clearing_the_callback_url(api) -> None:
    api.patch("/api/v1/account", {"callback_url": "https://a.example.com/cb"})
    response = api.patch("/api/v1/account", {"callback_url": None})
    assert response.json()["callback_url"] is None
