"""API availability (#23, quality metric 9: answers other than 5xx / requests), per minute in Redis.

Each web process tallies its `/api/` answers per UTC minute in memory and adds them to the minute's
hash (`total`, `failed`) at most once a second, in one pipeline: a round trip a second per process,
not one per request. A tally Redis refuses waits for the next flush (kept a few minutes at most)."""

from __future__ import annotations

import logging
import threading
import time

from redis.exceptions import RedisError

from messaging_center.broker import redis_client

logger = logging.getLogger(__name__)

KEY = "mc:api:answers:{minute}"  # the minute as Unix seconds // 60
KEPT_SECONDS = 2 * 86_400
FLUSH_EVERY_SECONDS = 1.0
HELD_MINUTES = 5  # a tally older than this that Redis kept refusing is dropped


class _Tally:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._minutes: dict[int, list[int]] = {}
        self._flushed = time.monotonic()

    def count(self, status: int) -> None:
        minute = int(time.time()) // 60
        with self._lock:
            counts = self._minutes.setdefault(minute, [0, 0])
            counts[0] += 1
            counts[1] += status >= 500
            due = time.monotonic() - self._flushed >= FLUSH_EVERY_SECONDS
            if due:
                self._flushed = time.monotonic()
                taken, self._minutes = self._minutes, {}
        if due:
            self._flush(taken)

    def _flush(self, minutes: dict[int, list[int]]) -> None:
        try:
            with redis_client().pipeline(transaction=False) as pipe:
                for minute, (total, failed) in minutes.items():
                    key = KEY.format(minute=minute)
                    pipe.hincrby(key, "total", total)
                    if failed:
                        pipe.hincrby(key, "failed", failed)
                    pipe.expire(key, KEPT_SECONDS)
                pipe.execute()
        except RedisError as error:
            logger.debug("API answers not counted yet: %s", error)
            now = int(time.time()) // 60
            with self._lock:
                for minute, (total, failed) in minutes.items():
                    if minute > now - HELD_MINUTES:
                        counts = self._minutes.setdefault(minute, [0, 0])
                        counts[0] += total
                        counts[1] += failed


TALLY = _Tally()


def answers(*, since: float, until: float) -> tuple[int, int]:
    """(requests, 5xx answers) of the minutes from `since` to `until` (Unix seconds), every web process's."""
    minutes = range(int(since) // 60, int(until) // 60 + 1)
    with redis_client().pipeline(transaction=False) as pipe:
        for minute in minutes:
            pipe.hmget(KEY.format(minute=minute), "total", "failed")
        rows = pipe.execute()
    total = sum(int(row[0] or 0) for row in rows)
    failed = sum(int(row[1] or 0) for row in rows)
    return total, failed
