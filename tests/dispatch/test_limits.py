"""The Redis limits script on its own, against the real Redis, with the clock given (in the future:
the keys expire by the real clock): windows that cross the time buckets the history is kept in, and
a refused quota that writes nothing."""

from __future__ import annotations

import time

from apps.dispatch.policy.limits import DUPLICATE, FREQUENCY_BUCKET_MS, FREQUENCY_LIMITED, OK, BatchChecks, Limiter
from messaging_center.broker import redis_client

DAY = FREQUENCY_BUCKET_MS
VERIFICATION = ((60, 1), (3600, 5), (86400, 10))


def _checks(addresses: list[str], *, contents: list[str] | None = None, dedup: int = 0, limits=VERIFICATION) -> BatchChecks:
    return BatchChecks(
        account_id="acc",
        template_id="tpl",
        category="verification",
        dedup_window=dedup,
        frequency_limits=limits,
        addresses=addresses,
        contents=contents or ["same"] * len(addresses),
    )


def _decide(limiter: Limiter, checks: BatchChecks, now_ms: int, quota: int = 1_000_000) -> list[int]:
    decision = limiter.batch_decide(quota_key="q", quota_limit=quota, quota_ttl=60, checks=checks, now_ms=now_ms)
    assert decision.quota_ok
    return decision.outcomes


def test_frequency_windows_span_the_day_buckets() -> None:
    limiter = Limiter(redis_client())
    midnight = 30_000 * DAY
    # Ten sends spread over the hours before midnight, 61 s apart near the end.
    sends = [midnight - 50_000_000 + k * 3_700_000 for k in range(9)] + [midnight - 1_000]
    for at in sends:
        assert _decide(limiter, _checks(["+1"]), at) == [OK]
    # Just after midnight: the day limit (10 per 86,400 s) still counts yesterday's sends.
    assert _decide(limiter, _checks(["+1"]), midnight + 61_000) == [FREQUENCY_LIMITED]
    # Once the oldest send is more than a day old, one more fits.
    assert _decide(limiter, _checks(["+1"]), sends[0] + DAY + 1) == [OK]
    # Another address is not affected.
    assert _decide(limiter, _checks(["+2"]), midnight + 61_000) == [OK]


def test_minute_and_hour_limits_count_sends_in_the_same_batch() -> None:
    limiter = Limiter(redis_client())
    now = 30_000 * DAY + 5_000
    assert _decide(limiter, _checks(["+1", "+1", "+2"]), now) == [OK, FREQUENCY_LIMITED, OK]
    assert _decide(limiter, _checks(["+1"]), now + 59_000) == [FREQUENCY_LIMITED]
    for minute in range(1, 5):
        assert _decide(limiter, _checks(["+1"]), now + minute * 61_000) == [OK]
    assert _decide(limiter, _checks(["+1"]), now + 5 * 61_000) == [FREQUENCY_LIMITED]  # 5 per hour


def test_dedup_window_across_its_buckets() -> None:
    limiter = Limiter(redis_client())
    window = 300
    bucket_end = 10_000_000 * window * 1000
    checks = _checks(["+1"], dedup=window, limits=())
    assert _decide(limiter, checks, bucket_end - 1_000) == [OK]
    # Next bucket, still within the window of the first send.
    assert _decide(limiter, checks, bucket_end + 200_000) == [DUPLICATE]
    assert _decide(limiter, checks, bucket_end + window * 1000) == [OK]
    # Other content to the same address is not a duplicate; the same content twice in one batch is.
    other = _checks(["+1", "+1", "+3"], contents=["other", "other", "same"], dedup=window, limits=())
    assert _decide(limiter, other, bucket_end + window * 1000 + 1) == [OK, DUPLICATE, OK]


def test_duplicate_is_reported_before_frequency_and_a_refused_entry_leaves_no_trace() -> None:
    limiter = Limiter(redis_client())
    now = 30_000 * DAY
    checks = _checks(["+1", "+1"], contents=["a", "b"], dedup=300, limits=((60, 1),))
    assert _decide(limiter, checks, now) == [OK, FREQUENCY_LIMITED]
    # "b" was refused by the frequency limit, so it is not remembered as sent: a minute later it goes.
    assert _decide(limiter, _checks(["+1"], contents=["b"], dedup=300, limits=((60, 1),)), now + 61_000) == [OK]
    assert _decide(limiter, _checks(["+1"], contents=["a"], dedup=300, limits=((60, 1),)), now + 200_000) == [DUPLICATE]


def test_a_refused_quota_writes_nothing() -> None:
    limiter = Limiter(redis_client())
    now = 30_000 * DAY
    refused = limiter.batch_decide(
        quota_key="q", quota_limit=2, quota_ttl=60, checks=_checks(["+1", "+2", "+3"], dedup=300), now_ms=now
    )
    assert (refused.quota_ok, refused.used_today) == (False, 0)
    assert _decide(limiter, _checks(["+1", "+2"], dedup=300), now + 1, quota=2) == [OK, OK]
    assert int(redis_client().get("q")) == 2


def test_templates_of_one_category_share_the_day_history() -> None:
    """A template with a shorter window writing today's history must not drop sends that another
    template of the category (a longer window) still counts."""
    limiter = Limiter(redis_client())
    day = 30_000 * DAY
    three_a_day, five_an_hour = ((86400, 3),), ((3600, 5),)
    assert _decide(limiter, _checks(["+1"], limits=three_a_day), day + 3_600_000) == [OK]
    assert _decide(limiter, _checks(["+1"], limits=three_a_day), day + 3_660_000) == [OK]
    assert _decide(limiter, _checks(["+1"], limits=five_an_hour), day + 4 * 3_600_000) == [OK]
    assert _decide(limiter, _checks(["+1"], limits=three_a_day), day + 4 * 3_600_000 + 100_000) == [FREQUENCY_LIMITED]


def test_many_entries_to_one_busy_address_stay_cheap() -> None:
    """1,000 entries to one address that already has thousands of sends today (a test number under a
    very high limit): each address's history is counted once, not once per entry."""
    limiter = Limiter(redis_client())
    now = 30_000 * DAY + 1_000
    generous = ((86400, 1_000_000),)
    for k in range(6):
        assert set(_decide(limiter, _checks(["+1"] * 1000, limits=generous), now + k)) == {OK}
    started = time.monotonic()
    assert set(_decide(limiter, _checks(["+1"] * 1000, limits=generous), now + 10)) == {OK}
    assert time.monotonic() - started < 1.0  # counted per entry, 6,000 earlier sends took ~2.5 s


def test_decide_many_survives_a_script_flush_and_counts_each_request_once() -> None:
    from apps.dispatch.policy.limits import Decide

    client = redis_client()
    limiter = Limiter(client)
    client.script_flush()  # as after a Redis restart: the script is gone
    requests = [
        Decide("quota-a", 10, 60, _checks(["+1"], dedup=60)),
        Decide("quota-b", 10, 60, None, extra_quota=3),
    ]
    first, second = limiter.decide_many(requests, now_ms=30_000 * DAY)
    assert (first.quota_ok, first.used_today, first.outcomes) == (True, 1, [OK])
    assert (second.quota_ok, second.used_today) == (True, 3)
    assert (int(client.get("quota-a")), int(client.get("quota-b"))) == (1, 3)
