"""A tiny in-process cache with a time to live, for hot read-mostly rows (API keys, templates).

Saves in this process invalidate at once (post_save/post_delete receivers call `clear`); other
processes see a change within `seconds`. That bound is the price of two fewer queries per request.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class TtlCache(Generic[V]):
    def __init__(self, seconds: float, max_entries: int = 10_000) -> None:
        self.seconds = seconds
        self.max_entries = max_entries
        self._entries: dict[Hashable, tuple[float, V]] = {}
        self._lock = threading.Lock()

    def _fresh(self, key: Hashable) -> tuple[float, V] | None:
        hit = self._entries.get(key)
        return hit if hit is not None and hit[0] > time.monotonic() else None

    def get(self, key: Hashable) -> V | None:
        """The value while it is fresh, else None."""
        hit = self._fresh(key)
        return hit[1] if hit is not None else None

    def put(self, key: Hashable, value: V) -> V:
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[key] = (time.monotonic() + self.seconds, value)
        return value

    def get_or_load(self, key: Hashable, load: Callable[[], V], *, stale_on: tuple[type[BaseException], ...] = ()) -> V:
        """The fresh value (None too, when that is what was loaded), else `load()`'s, kept. When `load`
        raises one of `stale_on` (the database is down), the last value loaded is served instead and
        kept another period, so that an outage costs one failed load per key and period, not one per
        call (apps/dispatch/spool: API keys and templates through a database outage)."""
        hit = self._fresh(key)
        if hit is not None:
            return hit[1]
        try:
            return self.put(key, load())
        except stale_on:
            stale = self._entries.get(key)
            if stale is None:
                raise
            return self.put(key, stale[1])

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
