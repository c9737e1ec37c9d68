"""One time policy for the API: every timestamp in a response is UTC, ISO 8601 with `Z`
(the admin shows the operator's zone, labelled)."""

from __future__ import annotations

import datetime as dt


def api_time(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
