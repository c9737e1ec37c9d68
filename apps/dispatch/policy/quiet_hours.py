"""Quiet hours: marketing is held until the window ends in the recipient's own time zone."""

from __future__ import annotations

import datetime as dt
import functools
import zoneinfo

DEFAULT_START = dt.time(21, 0)
DEFAULT_END = dt.time(8, 0)


@functools.lru_cache(maxsize=512)
def zone(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(name)


def quiet_until(at: dt.datetime, tz_name: str, start: dt.time = DEFAULT_START, end: dt.time = DEFAULT_END) -> dt.datetime | None:
    """The end of the quiet window `at` falls in (as an aware datetime), or None outside quiet hours."""
    local = at.astimezone(zone(tz_name))
    now = local.time()
    in_window = (start <= now or now < end) if start > end else (start <= now < end)
    if not in_window:
        return None
    end_day = local.date() if now < end else local.date() + dt.timedelta(days=1)
    naive_end = dt.datetime.combine(end_day, end)
    return naive_end.replace(tzinfo=zone(tz_name)).astimezone(dt.UTC)
