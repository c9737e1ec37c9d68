"""Operators' sign-in resists guessing: wrong passwords lock the name and the address (django-axes),
an operator unlocks, and password hashing stays off the API's threads (one low-priority thread,
at most two sign-ins checked at once per process)."""

from __future__ import annotations

import os
import threading
import time

import pytest
from axes.utils import reset
from django.contrib.auth.hashers import PBKDF2PasswordHasher, check_password
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.test import Client, override_settings

from messaging_center import passwords
from messaging_center.middleware import AdminLoginGuardMiddleware

pytestmark = pytest.mark.django_db
LOGIN = "/admin/login/"


def _sign_in(client: Client, username: str, password: str, address: str = "198.51.100.7") -> int:
    response = client.post(LOGIN, {"username": username, "password": password, "next": "/admin/"}, REMOTE_ADDR=address)
    return response.status_code


def test_fifty_wrong_passwords_lock_the_name_and_an_operator_unlocks_it() -> None:
    User.objects.create_superuser("ops", "ops@example.com", "right-password")
    client = Client()
    codes = [_sign_in(client, "ops", f"guess-{n}", address=f"203.0.113.{n % 200}") for n in range(50)]
    assert codes[0] == 200  # the form again, with its error
    assert 429 in codes  # locked by name although every guess came from another address
    locked = client.post(LOGIN, {"username": "ops", "password": "right-password"}, REMOTE_ADDR="192.0.2.1")
    assert locked.status_code == 429 and b"too many wrong passwords" in locked.content  # the right one too
    reset(username="ops")  # what Axes → Access attempts (delete) or `manage.py axes_reset_username ops` does
    assert _sign_in(Client(), "ops", "right-password", address="192.0.2.1") == 302  # signed in


def test_wrong_passwords_from_one_address_lock_that_address_for_every_name() -> None:
    User.objects.create_superuser("ops", "ops@example.com", "right-password")
    client = Client()
    for n in range(10):
        _sign_in(client, f"nobody-{n}", "guess", address="198.51.100.99")
    assert _sign_in(client, "ops", "right-password", address="198.51.100.99") == 429
    assert _sign_in(Client(), "ops", "right-password", address="198.51.100.100") == 302


@override_settings(PASSWORD_HASHERS=["messaging_center.passwords.LowPriorityPBKDF2PasswordHasher"])
def test_passwords_are_hashed_on_one_low_priority_thread_with_djangos_algorithm() -> None:
    seen: dict[str, object] = {}
    original = PBKDF2PasswordHasher.encode

    def spy(self: PBKDF2PasswordHasher, password: str, salt: str, iterations: int | None = None) -> str:
        seen["thread"] = threading.current_thread().name
        seen["niceness"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        return original(self, password, salt, 1000)

    try:
        PBKDF2PasswordHasher.encode = spy  # type: ignore[method-assign]
        encoded = passwords.LowPriorityPBKDF2PasswordHasher().encode("secret", "salt1234")
    finally:
        PBKDF2PasswordHasher.encode = original  # type: ignore[method-assign]
    assert str(seen["thread"]).startswith("password") and seen["niceness"] == passwords.LOWEST_PRIORITY
    assert encoded.startswith("pbkdf2_sha256$1000$") and check_password("secret", encoded)


@override_settings(ADMIN_LOGIN_PATH=LOGIN)
def test_a_flood_of_sign_ins_is_answered_429_instead_of_holding_web_threads() -> None:
    release = threading.Event()
    entered = threading.Semaphore(0)

    def slow_login(request: HttpRequest) -> HttpResponse:
        entered.release()
        release.wait(10)
        return HttpResponse("checked")

    guard = AdminLoginGuardMiddleware(slow_login)
    answers: list[int] = []

    def post() -> None:
        request = HttpRequest()
        request.method, request.path_info = "POST", LOGIN
        answers.append(guard(request).status_code)

    checking = [threading.Thread(target=post) for _ in range(AdminLoginGuardMiddleware.LOGIN_CHECKS_PER_PROCESS)]
    for thread in checking:
        thread.start()
        assert entered.acquire(timeout=5)
    started = time.monotonic()
    post()  # a third sign-in while two are checked
    assert answers == [429] and time.monotonic() - started < 0.5  # at once: it held no web thread
    release.set()
    for thread in checking:
        thread.join(5)
    assert sorted(answers) == [200, 200, 429]
    request = HttpRequest()
    request.method, request.path_info = "GET", "/api/v1/account"
    assert guard(request).status_code == 200  # anything else passes untouched


@override_settings(PASSWORD_HASHERS=["messaging_center.passwords.LowPriorityPBKDF2PasswordHasher"])
def test_a_wrong_password_against_an_older_hash_does_not_wait_on_itself() -> None:
    """Django hardens the runtime of a check against a hash with fewer iterations by encoding again:
    that encode runs on the hashing thread already, and must not queue behind itself."""
    older = PBKDF2PasswordHasher().encode("right", "salt1234", iterations=1000)
    checked: list[bool] = []
    thread = threading.Thread(target=lambda: checked.append(check_password("wrong", older)), daemon=True)
    thread.start()
    thread.join(30)
    assert checked == [False], "the check never finished"
    assert check_password("right", older)
