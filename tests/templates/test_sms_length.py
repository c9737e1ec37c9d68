"""SMS length rules, checked against hand-computed cases and, by property, against an independent
reference that encodes the text the way a modem does (septets with ESC pairs / UTF-16 code units)
and fills segments without splitting an escape or surrogate pair."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.templates.sms import sms_length

# GSM 03.38 default alphabet, by septet value (0x1B is the escape to the extension table).
GSM_BASIC_TABLE = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
GSM_EXTENSION_TABLE = {
    0x0A: "\f",
    0x14: "^",
    0x28: "{",
    0x29: "}",
    0x2F: "\\",
    0x3C: "[",
    0x3D: "~",
    0x3E: "]",
    0x40: "|",
    0x65: "€",
}
ESC = 0x1B
assert len(GSM_BASIC_TABLE) == 128


def reference_units(text: str) -> tuple[str, list[list[int]]] | None:
    """(encoding, indivisible groups of code units) as transmitted."""
    basic = {char: septet for septet, char in enumerate(GSM_BASIC_TABLE) if septet != ESC}
    extension = {char: septet for septet, char in GSM_EXTENSION_TABLE.items()}
    groups: list[list[int]] = []
    for char in text:
        if char in basic:
            groups.append([basic[char]])
        elif char in extension:
            groups.append([ESC, extension[char]])
        else:
            break
    else:
        return "GSM-7", groups
    encoded = text.encode("utf-16-be")
    units = [int.from_bytes(encoded[i : i + 2], "big") for i in range(0, len(encoded), 2)]
    groups = []
    index = 0
    while index < len(units):
        width = 2 if 0xD800 <= units[index] <= 0xDBFF else 1
        groups.append(units[index : index + width])
        index += width
    return "UCS-2", groups


def reference_sms_length(text: str, signature: str = "") -> tuple[int, str]:
    full = ("【" + signature + "】" if signature else "") + text
    encoding, groups = reference_units(full)
    single, part = (160, 153) if encoding == "GSM-7" else (70, 67)
    if sum(len(group) for group in groups) <= single:
        return 1, encoding
    segments: list[list[int]] = [[]]
    for group in groups:
        if len(segments[-1]) + len(group) > part:
            segments.append([])
        segments[-1].extend(group)
    return len(segments), encoding


TABLE = [
    ("", "", 1, "GSM-7"),
    ("Hello", "", 1, "GSM-7"),
    ("a" * 160, "", 1, "GSM-7"),
    ("a" * 161, "", 2, "GSM-7"),
    ("a" * 306, "", 2, "GSM-7"),
    ("a" * 307, "", 3, "GSM-7"),
    ("a" * 459, "", 3, "GSM-7"),
    ("a" * 460, "", 4, "GSM-7"),
    ("€" * 80, "", 1, "GSM-7"),  # 160 septets
    ("€" * 81, "", 2, "GSM-7"),  # 162 septets; 76 pairs fit a 153-septet part
    ("€" * 152, "", 2, "GSM-7"),
    ("€" * 153, "", 3, "GSM-7"),
    ("a" + "€" * 80, "", 2, "GSM-7"),
    ("a" * 152 + "{" + "a" * 8, "", 2, "GSM-7"),  # the escape pair does not straddle parts: 152 | 2+8
    ("a" * 152 + "{" + "a" * 152, "", 3, "GSM-7"),  # 152 | 2+151 | 1
    ("ÄÖÑÜäöñüà§¿¡ΔΦΓΛΩΠΨΣΘΞ" * 7, "", 1, "GSM-7"),
    ("ç", "", 1, "UCS-2"),  # only capital Ç is in the basic table
    ("`", "", 1, "UCS-2"),
    ("您" * 70, "", 1, "UCS-2"),
    ("您" * 71, "", 2, "UCS-2"),
    ("您" * 134, "", 2, "UCS-2"),
    ("您" * 135, "", 3, "UCS-2"),
    ("a" * 69 + "您", "", 1, "UCS-2"),
    ("😀" * 35, "", 1, "UCS-2"),  # 70 UTF-16 units
    ("😀" * 36, "", 2, "UCS-2"),
    ("a" * 66 + "😀", "", 1, "UCS-2"),  # 68 units fit one segment
    ("a" * 69 + "😀", "", 2, "UCS-2"),  # 71 units; the pair is not split: 67 | 2+2
    ("Your code is 123456", "ACME", 1, "UCS-2"),
    ("a" * 64, "ACME", 1, "UCS-2"),  # 6 + 64 = 70
    ("a" * 65, "ACME", 2, "UCS-2"),
    ("a" * 128, "ACME", 2, "UCS-2"),  # 134 = 2 * 67
    ("a" * 129, "ACME", 3, "UCS-2"),
]


@pytest.mark.parametrize(("text", "signature", "segments", "encoding"), TABLE)
def test_reference_table(text: str, signature: str, segments: int, encoding: str) -> None:
    assert sms_length(text, signature) == (segments, encoding)
    assert reference_sms_length(text, signature) == (segments, encoding)


GSM_CHARS = [char for index, char in enumerate(GSM_BASIC_TABLE) if index != ESC] + list(GSM_EXTENSION_TABLE.values())
texts = st.one_of(
    st.text(alphabet=st.sampled_from(GSM_CHARS), max_size=700),
    st.text(alphabet=st.sampled_from([*GSM_CHARS, "您", "好", "😀", "ç", "`", "€"]), max_size=400),
    st.text(max_size=300),
    st.builds(
        lambda a, b, c: a + b + c,
        st.text(alphabet=st.sampled_from("ab"), min_size=140, max_size=160),
        st.text(alphabet=st.sampled_from("{}[]€^|~\\"), max_size=20),
        st.text(alphabet=st.sampled_from("ab{"), max_size=200),
    ),
)
signatures = st.one_of(st.just(""), st.sampled_from(["ACME", "阿里云", "X"]), st.text(min_size=1, max_size=12))


@settings(max_examples=400, deadline=None)
@given(text=texts, signature=signatures)
def test_matches_the_reference_implementation(text: str, signature: str) -> None:
    assert sms_length(text, signature) == reference_sms_length(text, signature)


@settings(max_examples=200, deadline=None)
@given(text=texts, extra=st.text(max_size=50))
def test_appending_never_needs_fewer_segments(text: str, extra: str) -> None:
    before, encoding_before = sms_length(text)
    after, encoding_after = sms_length(text + extra)
    if encoding_before == encoding_after:
        assert after >= before


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=st.sampled_from(GSM_CHARS), max_size=500))
def test_gsm_text_with_a_signature_is_ucs2(text: str) -> None:
    assert sms_length(text)[1] == "GSM-7"
    assert sms_length(text, "ACME")[1] == "UCS-2"
