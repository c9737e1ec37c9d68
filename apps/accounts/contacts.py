"""Normalised addresses: one spelling per phone, e-mail and time zone, so that lookups by address
(opt-outs, frequency limits, message search) match whatever format a client sent."""

from __future__ import annotations

import zoneinfo
from functools import lru_cache

import phonenumbers
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email


def phone_e164(raw: str, *, region: str | None = None) -> str | None:
    """E.164 form of a valid number (national formats read in DEFAULT_PHONE_REGION), else None."""
    try:
        number = phonenumbers.parse(raw, region or settings.DEFAULT_PHONE_REGION)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def email_normalized(raw: str) -> str | None:
    """The address with its domain lower-cased (the local part is the mailbox owner's), else None."""
    value = raw.strip()
    try:
        validate_email(value)
    except ValidationError:
        return None
    local, _, domain = value.rpartition("@")
    return f"{local}@{domain.lower()}"


@lru_cache(maxsize=1)
def _time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def timezone_valid(name: str) -> bool:
    return name in _time_zones()


def phone_masked(e164: str) -> str:
    """`+8613800138000` → `+86138****8000`: country code, the first three and last four digits."""
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return "****" + e164[-4:] if len(e164) > 4 else "****"
    national = str(number.national_number)
    shown = 7 if len(national) >= 9 else 2
    head = national[:3] if shown == 7 else ""
    tail = national[-4:] if shown == 7 else national[-2:]
    return f"+{number.country_code}{head}{'*' * (len(national) - len(head) - len(tail))}{tail}"
