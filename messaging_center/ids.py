"""Opaque, time-ordered ids made in Python (UUIDv7), shown to clients as `<prefix>_<base32>`."""

from __future__ import annotations

import datetime
import os
import threading
import time
import uuid

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case
_DECODE = {char: index for index, char in enumerate(_ALPHABET)}
_ENCODED_LENGTH = 26
# Encoding ten bits (two characters) at a time: ids are encoded 1,000 per send request.
_PAIRS = [first + second for first in _ALPHABET for second in _ALPHABET]
_SHIFTS = tuple(range(120, -1, -10))


_lock = threading.Lock()
_last = [0, 0]  # milliseconds, 12-bit counter


# The same layout made by the database, for a statement that needs more ids than it was handed:
# 48 bits of Unix milliseconds over a random UUID, with version 7 set.
UUID7_SQL = (
    "encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid()) PLACING substring(int8send("
    "floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3) FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid"
)


def uuid7() -> uuid.UUID:
    """RFC 9562 UUIDv7: 48-bit Unix milliseconds, a 12-bit counter (method 1, so ids made within one
    millisecond by this process still sort in creation order), then 62 random bits."""
    return uuid7_many(1)[0]


def uuid7_many(count: int) -> list[uuid.UUID]:
    """`count` UUIDv7s in creation order (one clock reading and one read of random bytes for all)."""
    if count <= 0:
        return []  # reserving no counter must not move the clock state back
    # Random bytes first: os.urandom releases the GIL, and a thread that did so while holding the
    # lock waited for the GIL again (up to the 5 ms switch interval in a busy web process) with
    # every other thread making ids queued behind it.
    random = os.urandom(8 * count + 2)
    millis = time.time_ns() // 1_000_000
    with _lock:
        if millis <= _last[0]:
            millis, counter = _last[0], _last[1] + 1
        else:
            counter = int.from_bytes(random[-2:], "big") & 0x3FF  # leave room to count up
        first_millis, first_counter = millis, counter
        # Reserve the counters: past 0xFFF the millisecond moves on, as RFC 9562 allows.
        last = counter + count - 1
        _last[0], _last[1] = millis + (last >> 12), last & 0xFFF
    made = []
    for index in range(count):
        position = first_counter + index
        stamp = (first_millis + (position >> 12)) & 0xFFFF_FFFF_FFFF
        tail = int.from_bytes(random[8 * index : 8 * index + 8], "big") & 0x3FFF_FFFF_FFFF_FFFF
        made.append(uuid.UUID(int=(stamp << 80) | (0x7 << 76) | ((position & 0xFFF) << 64) | (0b10 << 62) | tail))
    return made


def encode(prefix: str, value: uuid.UUID) -> str:
    number = value.int
    return f"{prefix}_{''.join([_PAIRS[(number >> shift) & 1023] for shift in _SHIFTS])}"


def decode(prefix: str, text: str) -> uuid.UUID | None:
    """The UUID behind an id of the given prefix, or None when the text is not such an id."""
    head, _, body = text.partition("_")
    if head != prefix or len(body) != _ENCODED_LENGTH:
        return None
    number = 0
    for char in body.lower():
        digit = _DECODE.get(char)
        if digit is None:
            return None
        number = (number << 5) | digit
    if number >> 128:
        return None
    return uuid.UUID(int=number)


def new(prefix: str) -> str:
    return encode(prefix, uuid7())


def uuid7_time(value: uuid.UUID) -> datetime.datetime:
    """When a UUIDv7 was made (to the millisecond)."""
    return datetime.datetime.fromtimestamp((value.int >> 80) / 1000, datetime.UTC)


def uuid7_floor(at: datetime.datetime) -> uuid.UUID:
    """The smallest UUIDv7 of the given instant, for id-range filters on creation time."""
    millis = int(at.timestamp() * 1000)
    return uuid.UUID(int=((millis & 0xFFFF_FFFF_FFFF) << 80) | (0x7 << 76) | (0b10 << 62))
