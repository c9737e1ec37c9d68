"""SMS length: encoding (GSM-7 or UCS-2) and the number of segments a text is billed as.

GSM 03.38: a text made only of the basic table's characters is GSM-7; characters of the extension
table are sent as ESC + character and count as two. Anything else makes the whole text UCS-2,
counted in UTF-16 code units (a character outside the BMP, e.g. most emoji, counts as two).
One segment holds 160 GSM-7 units or 70 UCS-2 units; a concatenated message loses room to the
user data header and holds 153 or 67 per segment. A segment never splits an escape pair or a
surrogate pair. Chinese providers put the signature in front as `【signature】`; it is part of
what the recipient receives, so it counts.
"""

from __future__ import annotations

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")
_GSM7 = GSM7_BASIC | GSM7_EXTENSION

GSM7 = "GSM-7"
UCS2 = "UCS-2"
_LIMITS = {GSM7: (160, 153), UCS2: (70, 67)}


def signed(text: str, signature: str = "") -> str:
    """The text as the recipient sees it: `【signature】text` when there is a signature."""
    return f"【{signature}】{text}" if signature else text


def sms_encoding(text: str) -> str:
    return GSM7 if _GSM7.issuperset(text) else UCS2


def sms_length(text: str, signature: str = "") -> tuple[int, str]:
    """(segments, "GSM-7" | "UCS-2") of `text` sent with `signature`; an empty text is one segment."""
    full = signed(text, signature)
    encoding = sms_encoding(full)
    single, per_part = _LIMITS[encoding]
    if encoding == GSM7:
        doubles = sum(1 for char in full if char in GSM7_EXTENSION) if not GSM7_EXTENSION.isdisjoint(full) else 0
    else:
        doubles = sum(1 for char in full if char > "\uffff") if max(full, default="\0") > "\uffff" else 0
    units = len(full) + doubles
    if units <= single:
        return 1, encoding
    if not doubles:
        return -(-units // per_part), encoding
    return _packed_segments(full, encoding, per_part), encoding


def _packed_segments(text: str, encoding: str, per_part: int) -> int:
    """Segments when two-unit characters must not straddle a segment boundary."""
    segments, used = 1, 0
    for char in text:
        width = 2 if (char in GSM7_EXTENSION if encoding == GSM7 else char > "\uffff") else 1
        if used + width > per_part:
            segments += 1
            used = 0
        used += width
    return segments
