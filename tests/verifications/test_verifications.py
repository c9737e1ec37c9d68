"""Verification codes: sent on the critical lane through the accept path, only a hash stored,
single use, five wrong tries burn it, other accounts' codes never match."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from django.db import connection
from django.utils import timezone

from apps.dispatch.models import Message
from apps.dispatch.sealing import unseal
from apps.verifications.models import Verification
from messaging_center import ids

pytestmark = pytest.mark.django_db

PHONE = "+8613800138000"


@pytest.fixture
def login_code(api, make_template):  # type: ignore[no-untyped-def]
    return make_template(api, code="login_code", category="verification", content="Your code is {{code}}.", ttl=300)


def _send(api, phone: str = PHONE):  # type: ignore[no-untyped-def]
    return api.post("/api/v1/verifications", {"to": {"phone": phone}, "template": "login_code"})


def _code_of(message_id: str) -> str:
    """The code as the recipient gets it: only the worker can open the sealed param."""
    return unseal(Message.objects.get(id=ids.decode("msg", message_id)).params)["code"]


def _check(api, code: str, phone: str = PHONE):  # type: ignore[no-untyped-def]
    response = api.post("/api/v1/verifications/check", {"to": {"phone": phone}, "code": code})
    assert response.status_code == 200, response.content
    return response.json()


def test_send_stores_only_a_hash_and_uses_the_critical_lane(api, login_code) -> None:
    response = _send(api)
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["id"].startswith("ver_") and body["message_id"].startswith("msg_")
    message = Message.objects.get(id=ids.decode("msg", body["message_id"]))
    assert message.priority == "critical" and message.status == "queued"
    code = unseal(message.params)["code"]
    assert len(code) == 6 and code.isdigit()
    # Nowhere in plain text: the stored param is encrypted and the stored content masked.
    assert code not in message.params["code"] and message.params["code"].startswith("sealed:")
    assert code not in message.content and "******" in message.content
    verification = Verification.objects.get()
    assert code not in verification.code_hash and len(verification.code_hash) == 64
    expires = dt.datetime.fromisoformat(body["expires_at"])
    assert expires == message.expires_at
    assert dt.timedelta(seconds=290) < expires - timezone.now() <= dt.timedelta(seconds=300)


def test_right_code_is_valid_once(api, login_code) -> None:
    code = _code_of(_send(api).json()["message_id"])
    assert _check(api, code) == {"valid": True}
    assert _check(api, code) == {"valid": False, "reason": "invalid"}


def test_wrong_phone_or_other_account_never_matches(api, login_code, make_api_client, make_template) -> None:
    code = _code_of(_send(api).json()["message_id"])
    assert _check(api, code, phone="+8613800138001") == {"valid": False, "reason": "invalid"}
    other = make_api_client("other")
    assert _check(other, code) == {"valid": False, "reason": "invalid"}
    assert _check(api, code) == {"valid": True}


def test_expired_code(api, login_code) -> None:
    code = _code_of(_send(api).json()["message_id"])
    Verification.objects.update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert _check(api, code) == {"valid": False, "reason": "expired"}


def test_five_wrong_tries_burn_the_code(api, login_code) -> None:
    code = _code_of(_send(api).json()["message_id"])
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    assert [_check(api, wrong)["reason"] for _ in range(5)] == ["invalid"] * 5
    assert _check(api, code) == {"valid": False, "reason": "too_many_attempts"}


def test_the_latest_code_counts(api, login_code) -> None:
    first = _code_of(_send(api).json()["message_id"])
    Verification.objects.update(created_at=timezone.now() - dt.timedelta(minutes=2))
    from messaging_center.broker import redis_client

    redis_client().flushdb()  # past the 60 s frequency limit
    second = _code_of(_send(api).json()["message_id"])
    if first != second:
        assert _check(api, first) == {"valid": False, "reason": "invalid"}
    assert _check(api, second) == {"valid": True}


def test_frequency_limited_send_is_a_429_and_leaves_no_code(api, login_code) -> None:
    assert _send(api).status_code == 202
    response = _send(api)
    assert response.status_code == 429
    assert response.json()["code"] == "frequency_limited"
    assert Verification.objects.count() == 1


@pytest.mark.parametrize(
    "body",
    [
        {"to": {"phone": "not a phone"}, "template": "login_code"},
        {"to": "+8613800138000", "template": "login_code"},
        {"to": {"phone": PHONE}},
    ],
)
def test_bad_requests(api, login_code, body) -> None:
    response = api.post("/api/v1/verifications", body)
    assert response.status_code == 400 and response.json()["code"] == "validation_error"
    assert not Verification.objects.exists()


def test_only_verification_templates(api, make_template) -> None:
    make_template(api, code="order_shipped")
    response = api.post("/api/v1/verifications", {"to": {"phone": PHONE}, "template": "order_shipped"})
    assert response.status_code == 400


def test_unknown_template(api) -> None:
    assert _send(api).status_code == 404


@pytest.mark.django_db(transaction=True)
def test_concurrent_checks_accept_the_right_code_once(api, login_code) -> None:
    code = _code_of(_send(api).json()["message_id"])
    results: list[bool] = []

    def check() -> None:
        from apps.verifications.services import verification_check

        try:
            results.append(verification_check(account=api.account, data={"to": {"phone": PHONE}, "code": code}).valid)
        finally:
            connection.close()

    threads = [threading.Thread(target=check) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 7 + [True]


def test_admin_shows_the_number_masked_only(api, login_code, operator) -> None:
    assert _send(api).status_code == 202
    verification = Verification.objects.get()
    for url in ("/admin/verifications/verification/", f"/admin/verifications/verification/{verification.pk}/change/"):
        page = operator.get(url).content.decode()
        assert "+86138****8000" in page, url
        assert PHONE not in page, url
