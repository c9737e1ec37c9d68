"""The staff dashboard's data (`/admin/dashboard/data.json`): one JSON document the page draws its
charts and tables from. No message content and no address is in it: counts, rates, latencies,
provider and account names, provider error codes."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings
from redis.exceptions import RedisError

from apps.accounts.models import Account
from apps.accounts.selectors import quota_key
from apps.dispatch.models import MICRO
from apps.monitoring import backlogs, series, states
from messaging_center.broker import redis_client


def account_usage(window: series.Window, now: dt.datetime) -> list[dict[str, Any]]:
    """Every account: today's use of its daily quota (its own day, the counter the send path keeps in
    Redis, read in one round trip) and its messages, delivery rate and cost over the window."""
    accounts = list(Account.objects.order_by("name").only("id", "name", "is_active", "daily_quota", "timezone"))
    used: list[int | None]
    try:
        counters = redis_client().mget([quota_key(account, now) for account in accounts]) if accounts else []
        used = [int(value or 0) for value in counters]
    except RedisError:  # the counters are unknown, not zero
        used = [None] * len(accounts)
    figures = series.account_figures(window)
    rows = []
    for account, today in zip(accounts, used, strict=True):
        figure = figures.get(account.id, series.AccountFigures(0, 0, 0, 0))
        rows.append(
            {
                "account": account.name,
                "active": account.is_active,
                "used_today": today,
                "daily_quota": account.daily_quota,
                "messages": figure.messages,
                "sent": figure.sent,
                "delivered": figure.delivered,
                "delivery_rate": figure.delivery_rate,
                "cost": figure.cost / MICRO,
            }
        )
    return rows


def dashboard_data(*, range_name: str, now: dt.datetime) -> dict[str, Any]:
    window = series.window_for(range_name, now)
    lanes = backlogs.lanes()
    return {
        "generated_at": now.isoformat(),
        "range": window.name,
        "ranges": list(series.RANGES),
        "grain": window.grain,
        "since": window.since.isoformat(),
        "until": window.until.isoformat(),
        "volume": series.volume(window),
        "quality": series.provider_quality(window),
        "states": [state.as_dict() for state in states.provider_states()],
        "errors": series.top_errors(window),
        "lanes": [
            {"lane": lane.lane, "tasks": lane.tasks, "oldest_age_seconds": round(lane.age_seconds(now), 1)} for lane in lanes
        ],
        "backlogs": backlogs.backlogs().as_dict(),
        "accounts": account_usage(window, now),
        "currency": settings.COST_CURRENCY,
    }
