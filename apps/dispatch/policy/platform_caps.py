"""The platform-wide cap per address (`PlatformCap`, set by operators in admin) as the send path reads it."""

from __future__ import annotations

from apps.dispatch.models import DAY, HOUR, PLATFORM_CAP_DEFAULTS, PlatformCap, cap_limits
from messaging_center.errors import DATABASE_DOWN
from messaging_center.ttl_cache import TtlCache

# An admin change reaches other web processes within this many seconds (this one at once: the
# dispatch app clears it on a save).
CAPS: TtlCache[dict[str, tuple[tuple[int, int], ...]]] = TtlCache(seconds=5)
# Their addresses name a person only within one account (inbox: the account's user id) or one
# enterprise (WeCom user id): the same value at two accounts may be two people.
UNCAPPED_CHANNELS = frozenset({"inbox", "wecom"})
_WINDOW_NAMES = {HOUR: "hour", DAY: "day"}


def platform_limits(*, category: str, channel: str) -> tuple[tuple[int, int], ...]:
    """((window seconds, max), …) of the category's platform cap for this channel; empty = none."""
    if channel in UNCAPPED_CHANNELS:
        return ()
    return CAPS.get_or_load("caps", _load, stale_on=DATABASE_DOWN).get(category, ())


def _load() -> dict[str, tuple[tuple[int, int], ...]]:
    caps = {category: cap_limits(per_hour, per_day) for category, (per_hour, per_day) in PLATFORM_CAP_DEFAULTS.items()}
    return caps | {cap.category: cap.limits for cap in PlatformCap.objects.all()}


def platform_cap_detail(*, category: str, window: int, maximum: int) -> str:
    per = _WINDOW_NAMES.get(window, f"{window} s")
    messages = "message" if maximum == 1 else "messages"
    return f"Over the platform-wide limit of {maximum} {category} {messages} per {per} to this address, across all senders."
