"""A message's destination segment (stats' `group_by=segment`, the rollups' key): for SMS the country
of the number — the ISO code of the calling code's main region (`US` for every +1 number, `RU` for
+7, `001` for non-geographic codes) — and for +86 the carrier, told by the number's prefix
(`CN-mobile`, `CN-unicom`, `CN-telecom`, `CN-other`); for the other channels the channel itself.

Decided once, at accept, by prefix lookups in dicts built at import: the send path labels 1,000
numbers per request and a `phonenumbers.parse` per number would cost more than the rest of it.
Migration 0010 holds the same rules in SQL (`dispatch_segment`) for the rows written before; a
test keeps the two in step."""

from __future__ import annotations

import phonenumbers

from messaging_center.vocabulary import Channel

# Calling code → the ISO code of its main region (phonenumbers lists the main region first).
CALLING_CODES: dict[str, str] = {
    str(code): regions[0] for code, regions in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.items() if regions
}

# Mainland mobile number blocks by carrier (MIIT allocations, MVNO blocks by host network). Four-digit
# blocks first: they override their three-digit block.
_CN_BLOCKS: dict[str, tuple[str, ...]] = {
    "mobile": (
        "1440", "1703", "1705", "1706",
        "134", "135", "136", "137", "138", "139", "147", "148", "150", "151", "152", "157", "158", "159",
        "165", "172", "178", "182", "183", "184", "187", "188", "195", "197", "198",
    ),
    "unicom": (
        "1704", "1707", "1708", "1709",
        "130", "131", "132", "145", "146", "155", "156", "166", "167", "171", "175", "176", "185", "186", "196",
    ),
    "telecom": (
        "1349", "1700", "1701", "1702",
        "133", "149", "153", "162", "173", "174", "177", "180", "181", "189", "190", "191", "193", "199",
    ),
}  # fmt: skip
CN_CARRIER_BLOCKS: dict[str, str] = {block: carrier for carrier, blocks in _CN_BLOCKS.items() for block in blocks}


def segment_of(channel: str, address: str) -> str:
    """The destination segment of a message to `address` (E.164 for SMS) on `channel`."""
    if channel != "sms":
        return channel
    if address.startswith("+86"):
        national = address[3:]
        carrier = CN_CARRIER_BLOCKS.get(national[:4]) or CN_CARRIER_BLOCKS.get(national[:3], "other")
        return f"CN-{carrier}"
    for length in (1, 2, 3):  # calling codes are a prefix code: at most one length matches
        region = CALLING_CODES.get(address[1 : 1 + length])
        if region is not None:
            return region
    return ""


def known_segments() -> frozenset[str]:
    """Every segment `segment_of` can answer (operators' rules and prices name one of these)."""
    carriers = {f"CN-{carrier}" for carrier in (*_CN_BLOCKS, "other")}
    return frozenset({*carriers, *CALLING_CODES.values(), *(c for c in Channel.values if c != "sms")} - {"CN"})
