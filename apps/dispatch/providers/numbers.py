"""Phone numbers as the domestic SMS APIs write them in their reports."""

from __future__ import annotations


def reported_e164(number: str) -> str:
    """A reported number in E.164: as it is when it has its '+', a mainland mobile number's 11
    digits (1xxxxxxxxxx) with +86, other digits taken to start with their country code."""
    if number.startswith("+"):
        return number
    return f"+86{number}" if len(number) == 11 and number.startswith("1") else f"+{number}"
