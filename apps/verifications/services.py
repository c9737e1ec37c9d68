"""Verification codes: draw a 6-digit code, send it through the ordinary accept path (verification
templates go to the critical lane; frequency limits apply), keep only its HMAC; check it once.

The code is hashed with a key derived from SECRET_KEY, bound to the account and the address, so a
code of another account or another phone never matches. Checks lock the latest code of the
account and address (SELECT … FOR UPDATE), so concurrent checks count every wrong try and a
right code is accepted once."""

from __future__ import annotations

import datetime as dt
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.crypto import salted_hmac

from apps.accounts.models import Account
from apps.dispatch.accept.idempotency import SendResponse
from apps.dispatch.accept.templates import TEMPLATES, template_or_error
from apps.dispatch.contacts import CHANNEL_ADDRESS_KEY, normalize_address
from apps.dispatch.models import Message
from apps.dispatch.spool import store
from apps.dispatch.spool.accept import database_down, message_send, note_database_down
from apps.verifications.models import Verification
from messaging_center import ids
from messaging_center.errors import DATABASE_DOWN, ServiceError, ValidationFailed

CODE_DIGITS = 6
MAX_FAILED_CHECKS = 5
# Why a send was not accepted → the status and code the verification request answers with.
REFUSALS = {
    "frequency_limited": 429,
    "duplicate": 429,
    "invalid_address": 400,
    "opted_out": 409,
}


class VerificationRefused(ServiceError):
    code = "verification_not_sent"


def code_hash(*, account_id: Any, address: str, code: str) -> str:
    return salted_hmac("messaging_center.verification", f"{account_id}:{address}:{code}", algorithm="sha256").hexdigest()


def _address(data: Any, channel: str) -> tuple[str, dict[str, Any]]:
    key = CHANNEL_ADDRESS_KEY.get(channel)
    to = data.get("to") if isinstance(data, dict) else None
    if key is None or not isinstance(to, dict) or not isinstance(to.get(key), str):
        raise ValidationFailed(f"`to` must be an object with `{key or 'phone'}`.", errors={"to": [f"Needs `{key}`."]})
    address, problem = normalize_address(channel, to[key])
    if problem:
        raise ValidationFailed(problem, errors={f"to.{key}": [problem]})
    return address, {key: address}


@dataclass(frozen=True)
class SentCode:
    verification: Verification
    message_public_id: str


def verification_send(*, account: Account, data: Any) -> SentCode:
    if not isinstance(data, dict) or not isinstance(data.get("template"), str):
        raise ValidationFailed("`template` is required.", errors={"template": ["Required."]})
    unknown = set(data) - {"template", "to"}
    if unknown:
        raise ValidationFailed(
            f"Unknown field(s): {', '.join(sorted(unknown))}.", errors={k: ["Unknown field."] for k in unknown}
        )
    # The send path's cached template: it is there through a database outage too.
    template = TEMPLATES.get_or_load(
        (account.id, data["template"]), lambda: template_or_error(account, data["template"]), stale_on=DATABASE_DOWN
    )
    if isinstance(template, ServiceError):
        raise template
    if template.category != "verification":
        raise ValidationFailed(
            f"Template {template.code!r} is not a verification template.", errors={"template": ["Not a verification template."]}
        )
    address, to = _address(data, template.channel)
    code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
    send = {"template": template.code, "to": to, "params": {"code": code}}
    verification = Verification(
        id=ids.uuid7(),
        account=account,
        address=address,
        template_code=template.code,
        code_hash=code_hash(account_id=account.id, address=address, code=code),
        created_at=timezone.now(),
    )
    if database_down():
        # Into the spool with the message, stored with it when the database is back.
        row = {name: str(getattr(verification, name)) for name in ("id", "address", "template_code", "code_hash")}
        outcome = _sent(message_send(account=account, data=send, secret_params=frozenset({"code"}), verification=row))
        message_id = ids.decode("msg", outcome["id"])
        assert message_id is not None  # the id of our own send's response
        spooled = store.get(message_id.hex)
        assert spooled is not None  # written by this send
        verification.expires_at = dt.datetime.fromisoformat(spooled.data["row"]["expires_at"])
        return SentCode(verification, outcome["id"])
    try:
        with transaction.atomic():
            outcome = _sent(message_send(account=account, data=send, secret_params=frozenset({"code"})))
            message_id = ids.decode("msg", outcome["id"])
            assert message_id is not None  # the id of our own send's response
            message = Message.objects.only("id", "expires_at").get(id=message_id)
            verification.message, verification.expires_at = message, message.expires_at
            verification.save(force_insert=True)
    except DATABASE_DOWN:
        note_database_down()  # the next code goes to the spool
        raise
    return SentCode(verification, outcome["id"])


def _sent(sent: SendResponse) -> dict[str, Any]:
    """The send's one outcome; a code that was not sent is refused with why."""
    outcome: dict[str, Any] = json.loads(sent.body)["messages"][0]
    if outcome["status"] not in ("queued", "scheduled"):
        raise VerificationRefused(
            outcome.get("detail") or f"The code was not sent ({outcome.get('code')}).",
            code=outcome.get("code") or "verification_not_sent",
            status_code=REFUSALS.get(outcome.get("code", ""), 422),
        )
    return outcome


@dataclass(frozen=True)
class CheckResult:
    valid: bool
    reason: str | None = None


def verification_check(*, account: Account, data: Any) -> CheckResult:
    if not isinstance(data, dict) or not isinstance(data.get("code"), str):
        raise ValidationFailed("`code` is required.", errors={"code": ["Required, a string."]})
    to = data.get("to")
    channel = next((c for c, k in CHANNEL_ADDRESS_KEY.items() if isinstance(to, dict) and k in to), "sms")
    address, _ = _address(data, channel)
    now = timezone.now()
    with transaction.atomic():
        latest = Verification.objects.select_for_update().filter(account=account, address=address).order_by("-created_at").first()
        if latest is None or latest.state == Verification.State.USED:
            return CheckResult(False, "invalid")
        if latest.state == Verification.State.BURNED:
            return CheckResult(False, "too_many_attempts")
        if latest.expires_at <= now:
            return CheckResult(False, "expired")
        expected = code_hash(account_id=account.id, address=address, code=data["code"].strip())
        if hmac.compare_digest(expected, latest.code_hash):
            latest.state, latest.verified_at = Verification.State.USED, now
            latest.save(update_fields=["state", "verified_at"])
            return CheckResult(True)
        latest.failed_checks += 1
        if latest.failed_checks >= MAX_FAILED_CHECKS:
            latest.state = Verification.State.BURNED
        latest.save(update_fields=["failed_checks", "state"])
        return CheckResult(False, "invalid")
