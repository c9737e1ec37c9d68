"""The one guarded road out (messaging_center/outbound.py), as an attacker with an API key tries it:
every bypass of the callback URL is refused when set (PATCH) and when delivered, a real listener on
127.0.0.1 receives nothing, and a name is resolved once per delivery (the connection goes to the
address that was checked, whatever a second answer would say)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from django.test import override_settings
from django.utils import timezone

from apps.accounts.models import Account
from apps.accounts.services import account_set_callback
from apps.receipts import callbacks
from apps.receipts.callbacks import callbacks_deliver, callbacks_enqueue
from apps.receipts.models import StatusCallback
from messaging_center import outbound

pytestmark = pytest.mark.django_db


def bypasses(port: int) -> list[str]:
    """URLs whose connection would reach our listener on 127.0.0.1:`port` (or another internal host)."""
    return [
        f"http://127.0.0.1:{port}\\@8.8.8.8/x",  # urllib3 stops the host at the backslash
        f"http://8.8.8.8@127.0.0.1:{port}/x",  # user info
        f"http://user:secret@127.0.0.1:{port}/x",
        f"http://127.0.0.1:{port}/x",
        f"http://127.1:{port}/x",
        f"http://0x7f000001:{port}/x",  # hexadecimal
        f"http://0177.0.0.1:{port}/x",  # octal
        f"http://2130706433:{port}/x",  # decimal
        f"http://[::ffff:127.0.0.1]:{port}/x",  # IPv4-mapped IPv6
        f"http://0.0.0.0:{port}/x",
        f"http://localhost:{port}/x",  # a name that resolves to a private address
        f"http://[::1]:{port}/x",
        "http://169.254.169.254/latest/meta-data/",  # the cloud metadata address
        "http://10.1.2.3/hook",
        "http://100.64.0.1/hook",  # shared address space (CGNAT)
        "http://[fe80::1]/hook",
        "http://[2002:7f00:1::1]/hook",  # 6to4 of 127.0.0.1
        "http://[64:ff9b::7f00:1]/hook",  # NAT64 of 127.0.0.1
        "http://[::127.0.0.1]/hook",  # IPv4-compatible
        "http://[fec0::1]/hook",  # site-local
        "gopher://127.0.0.1/x",
        "file:///etc/passwd",
    ]


@override_settings(CALLBACK_ALLOW_PRIVATE=False)
def test_every_bypass_is_refused_at_patch(api, callback_receiver) -> None:
    port = int(callback_receiver.url.split(":")[2].split("/")[0])
    for url in bypasses(port):
        response = api.patch("/api/v1/account", {"callback_url": url})
        assert response.status_code == 400, url
        body = response.json()
        assert body["code"] == "validation_error" and "callback_url" in body["errors"], url
    api.account.refresh_from_db()
    assert api.account.callback_url == ""
    assert callback_receiver.requests == []


def test_every_bypass_is_refused_at_delivery(api, make_message, callback_receiver, monkeypatch) -> None:
    """URLs stored before the guard existed (the backlog the issue found): refused before any connection."""
    monkeypatch.setattr(callbacks, "publish", lambda ids, countdown=0: None)
    port = int(callback_receiver.url.split(":")[2].split("/")[0])
    account_set_callback(account=api.account, callback_url=callback_receiver.url)  # the account's secret
    message = make_message(status="sent")
    with override_settings(CALLBACK_ALLOW_PRIVATE=False):
        for url in bypasses(port):
            Account.objects.filter(id=api.account.id).update(callback_url=url)  # as the old PATCH let through
            StatusCallback.objects.all().delete()
            callbacks_enqueue(message_ids=[message.id], status="sent")
            StatusCallback.objects.update(next_attempt_at=timezone.now() - dt.timedelta(seconds=1))
            [outcome] = callbacks_deliver(callback_ids=list(StatusCallback.objects.values_list("id", flat=True)))
            assert outcome.status_code is None and outcome.error.startswith("refused: "), (url, outcome)
    assert callback_receiver.requests == []


def _stub(answers: dict[str, list[str]], calls: list[str]) -> Callable[[str, int], list[str]]:
    def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        return answers[host]

    return resolve


@override_settings(CALLBACK_ALLOW_PRIVATE=False)
def test_a_name_resolving_to_a_private_address_is_refused(api, monkeypatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(outbound, "RESOLVER", _stub({"hooks.shop.test": ["93.184.216.34", "10.0.0.7"]}, calls))
    response = api.patch("/api/v1/account", {"callback_url": "https://hooks.shop.test/mc"})
    assert response.status_code == 400 and "10.0.0.7" in response.json()["detail"]
    assert calls == ["hooks.shop.test"]


def test_dns_is_resolved_once_per_delivery_and_the_checked_address_is_called(
    api, make_message, callback_receiver, monkeypatch
) -> None:
    """A rebinding resolver (first a good answer, then an internal one) cannot move the connection:
    one resolution per delivery, and the POST goes to the address that was checked, under its name."""
    monkeypatch.setattr(callbacks, "publish", lambda ids, countdown=0: None)
    port = int(callback_receiver.url.split(":")[2].split("/")[0])
    account_set_callback(account=api.account, callback_url=f"http://hooks.shop.test:{port}/mc")
    answers = iter([["127.0.0.1"], ["10.66.0.1"], ["10.66.0.1"]])
    calls: list[str] = []

    def rebinding(host: str, port: int) -> list[str]:
        calls.append(host)
        return next(answers)

    monkeypatch.setattr(outbound, "RESOLVER", rebinding)
    callbacks_enqueue(message_ids=[make_message(status="sent").id], status="sent")
    StatusCallback.objects.update(next_attempt_at=timezone.now() - dt.timedelta(seconds=1))
    [outcome] = callbacks_deliver(callback_ids=list(StatusCallback.objects.values_list("id", flat=True)))
    assert outcome.ok, outcome
    assert calls == ["hooks.shop.test"]
    [hook] = callback_receiver.requests
    assert hook.headers["Host"] == f"hooks.shop.test:{port}"


def test_a_redirect_to_a_private_address_is_not_followed(api, make_message, callback_receiver, monkeypatch) -> None:
    monkeypatch.setattr(callbacks, "publish", lambda ids, countdown=0: None)
    account_set_callback(account=api.account, callback_url=callback_receiver.url)
    callback_receiver.answers = [("redirect", "http://127.0.0.1:9/internal")]
    callbacks_enqueue(message_ids=[make_message(status="sent").id], status="sent")
    StatusCallback.objects.update(next_attempt_at=timezone.now() - dt.timedelta(seconds=1))
    [outcome] = callbacks_deliver(callback_ids=list(StatusCallback.objects.values_list("id", flat=True)))
    assert outcome.status_code == 302 and "not followed" in outcome.error
    assert len(callback_receiver.requests) == 1
