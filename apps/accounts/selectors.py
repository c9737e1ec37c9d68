from __future__ import annotations

from django.utils import timezone

from apps.accounts.models import Account
from messaging_center.broker import redis_client


def quota_key(account_id: object, day: str) -> str:
    return f"mc:quota:{account_id}:{day}"


def account_used_today(*, account: Account) -> int:
    """Messages counted against today's quota (the day in the account's own time zone)."""
    import zoneinfo

    day = timezone.now().astimezone(zoneinfo.ZoneInfo(account.timezone)).date().isoformat()
    value = redis_client().get(quota_key(account.id, day))
    return int(value) if value else 0
