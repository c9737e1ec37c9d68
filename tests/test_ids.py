"""UUIDv7 ids made many at a time, and their public encoding."""

from __future__ import annotations

import time
import uuid

from messaging_center import ids


def test_ids_made_together_are_unique_ordered_uuid7s_of_now() -> None:
    before = time.time_ns() // 1_000_000
    made = ids.uuid7_many(10_000)  # more than one millisecond's 4,096 counter values
    after = time.time_ns() // 1_000_000
    assert len(set(made)) == 10_000
    assert made == sorted(made)
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in made)
    assert before <= made[0].int >> 80 <= after + 3
    assert ids.uuid7() > made[-1]  # the next id still sorts after them


def test_encoding_round_trips_and_sorts_like_the_uuid() -> None:
    made = [*ids.uuid7_many(500), uuid.UUID(int=0), uuid.UUID(int=2**128 - 1)]
    for value in made:
        text = ids.encode("msg", value)
        assert len(text) == 30 and text.startswith("msg_")
        assert ids.decode("msg", text) == value
    assert sorted(made) == sorted(made, key=lambda u: ids.encode("msg", u))
    assert ids.decode("bat", ids.encode("msg", made[0])) is None
