"""An account's retention_days (API.md, Accounts): default 30, 1 to 400, set by operators in admin, shown by the API."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction
from django.test import Client

from apps.accounts.models import Account

pytestmark = pytest.mark.django_db


def test_account_api_shows_retention_days_default_30(api) -> None:
    body = api.get("/api/v1/account").json()
    assert body["retention_days"] == 30


def _change(operator: Client, account: Account, retention_days: object) -> object:
    return operator.post(
        f"/admin/accounts/account/{account.pk}/change/",
        {
            "name": account.name,
            "is_active": "on",
            "rate_limit": account.rate_limit,
            "daily_quota": account.daily_quota,
            "retention_days": retention_days,
            "timezone": account.timezone,
            "callback_url": "",
            "api_keys-TOTAL_FORMS": "0",
            "api_keys-INITIAL_FORMS": "0",
            "api_keys-MIN_NUM_FORMS": "0",
            "api_keys-MAX_NUM_FORMS": "1000",
        },
    )


def test_operator_sets_retention_days_in_admin_and_the_api_shows_it(operator: Client, api) -> None:
    response = _change(operator, api.account, 400)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Account.objects.get(pk=api.account.pk).retention_days == 400
    assert api.get("/api/v1/account").json()["retention_days"] == 400


@pytest.mark.parametrize("value", [0, 401, -1, "x"])
def test_admin_refuses_retention_outside_1_to_400(operator: Client, api, value: object) -> None:
    response = _change(operator, api.account, value)
    assert response.status_code == 200  # the form again, with its error
    assert "retention_days" in response.context["adminform"].form.errors
    assert Account.objects.get(pk=api.account.pk).retention_days == 30


def test_database_refuses_retention_outside_the_range() -> None:
    account = Account.objects.create(name="direct")
    for value in (0, 401):
        with pytest.raises(IntegrityError), transaction.atomic():
            Account.objects.filter(pk=account.pk).update(retention_days=value)
