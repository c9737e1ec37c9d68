"""The E.164 fast path agrees with the full phonenumbers parser whenever it answers."""

from __future__ import annotations

import phonenumbers
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.accounts.contacts import _fast_e164, phone_e164


def _full(number: str) -> str | None:
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return None
    return (
        phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164) if phonenumbers.is_valid_number(parsed) else None
    )


country_codes = st.sampled_from(["86", "1", "44", "49", "81", "852", "7", "33", "91", "61", "39", "55", "234", "971"])


@settings(max_examples=3000, deadline=None)
@given(country_codes, st.text(alphabet="0123456789", min_size=4, max_size=13))
def test_fast_path_never_disagrees_with_the_parser(country: str, national: str) -> None:
    number = f"+{country}{national}"
    fast = _fast_e164(number)
    if fast is not None:
        assert fast == _full(number)
    assert phone_e164(number) == _full(number)


@settings(max_examples=1000, deadline=None)
@given(st.sampled_from("3456789"), st.text(alphabet="0123456789", min_size=9, max_size=9))
def test_chinese_mobiles_agree(second: str, rest: str) -> None:
    number = f"+861{second}{rest}"
    assert phone_e164(number) == _full(number)
