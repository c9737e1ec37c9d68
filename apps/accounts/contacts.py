"""Normalised addresses: one spelling per phone, e-mail and time zone, so that lookups by address
(opt-outs, frequency limits, message search) match whatever format a client sent."""

from __future__ import annotations

import re
import zoneinfo
from functools import lru_cache

import phonenumbers
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

_E164 = re.compile(r"^\+([1-9]\d{0,2})(\d{4,14})$")


_Desc = tuple[re.Pattern[str], frozenset[int]]


@lru_cache(maxsize=512)
def _type_patterns(country_code: str) -> tuple[_Desc, tuple[_Desc, ...]] | None:
    """(general, (mobile, fixed line)) number descriptions — pattern and possible lengths, as the
    library checks them — of a country code that belongs to exactly one region."""
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(int(country_code), ())
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(regions[0]) if len(regions) == 1 else None
    if metadata is None or metadata.general_desc is None or not metadata.general_desc.national_number_pattern:
        return None
    general_lengths = frozenset(metadata.general_desc.possible_length or ())

    def desc(d: phonenumbers.PhoneNumberDesc, pattern: str) -> _Desc:
        return re.compile(pattern), frozenset(d.possible_length or ()) or general_lengths

    types = tuple(
        desc(d, d.national_number_pattern)
        for d in (metadata.mobile, metadata.fixed_line)
        if d is not None and d.national_number_pattern
    )
    return desc(metadata.general_desc, metadata.general_desc.national_number_pattern), types


def _matches(national: str, description: _Desc) -> bool:
    pattern, lengths = description
    return len(national) in lengths and pattern.fullmatch(national) is not None


def _fast_e164(raw: str) -> str | None:
    """An already-E.164 number of a single-region country that is a valid mobile or fixed-line number
    by the library's own patterns: the send path validates 1,000 per request, and a full parse costs far more
    (docs/performance.md, Accept path). None means "ask the full parser", never "invalid"."""
    match = _E164.match(raw)
    if not match:
        return None
    for split in range(1, 4):
        country, national = raw[1 : 1 + split], raw[1 + split :]
        if int(country) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            descriptions = _type_patterns(country)
            if descriptions and _matches(national, descriptions[0]) and any(_matches(national, d) for d in descriptions[1]):
                return raw
            return None
    return None


def phone_e164(raw: str, *, region: str | None = None) -> str | None:
    """E.164 form of a valid number (national formats read in DEFAULT_PHONE_REGION), else None."""
    fast = _fast_e164(raw)
    if fast is not None:
        return fast
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
