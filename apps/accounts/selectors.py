from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import Prefetch, prefetch_related_objects
from django.utils import timezone

from apps.accounts.models import Account, PushToken, Recipient
from messaging_center.broker import redis_client
from messaging_center.db import bound_cursor
from messaging_center.errors import NotFound
from messaging_center.vocabulary import Category, Channel


def quota_key(account: Account, at: dt.datetime) -> str:
    """The Redis counter of the account's messages on the day `at` falls in, in the account's own zone."""
    day = at.astimezone(zoneinfo.ZoneInfo(account.timezone)).date().isoformat()
    return f"mc:quota:{account.id}:{day}"


def account_used_today(*, account: Account) -> int:
    """Messages counted against today's quota (the day in the account's own time zone)."""
    value = redis_client().get(quota_key(account, timezone.now()))
    return int(value) if value else 0


def recipient_get(*, account_id: uuid.UUID, user_id: str) -> Recipient:
    """The account's recipient; another account's user_id is not found."""
    recipient = Recipient.objects.filter(account_id=account_id, user_id=user_id).first()
    if recipient is None:
        raise NotFound(f"No recipient with user_id {user_id!r}.")
    return recipient


def recipients_by_user_id(*, account_id: uuid.UUID, user_ids: Iterable[str]) -> dict[str, Recipient]:
    """user_id → Recipient for those that exist (one query), with `active_push_tokens` (one more)."""
    wanted = list(set(user_ids))
    if not wanted:
        return {}
    recipients = list(
        Recipient.objects.raw(
            "SELECT * FROM accounts_recipient WHERE account_id = %s AND user_id = ANY(%s)", [account_id, wanted]
        )
    )
    prefetch_related_objects(
        recipients, Prefetch("push_tokens", queryset=PushToken.objects.filter(active=True), to_attr="active_push_tokens")
    )
    return {recipient.user_id: recipient for recipient in recipients}


def recipient_preferences(*, recipient: Recipient) -> dict[str, dict[str, bool]]:
    """Every category x channel, True = subscribed (the default); verification is always on."""
    table = {category: dict.fromkeys(Channel.values, True) for category in Category.values}
    for category, channel, subscribed in recipient.preferences.values_list("category", "channel", "subscribed"):
        if category != Category.VERIFICATION:
            table[category][channel] = subscribed
    return table


_ADDRESS_COLUMN = {
    Channel.SMS: "phone",
    Channel.EMAIL: "email",
    Channel.WECHAT: "wechat_openid",
    Channel.WECOM: "wecom_userid",
}


@dataclass(frozen=True)
class PreferencesQuery:
    """One batch's opt-out lookup (see `preferences_opted_out`): a SELECT of (user_id, matched
    addresses) rows, whose parameter names end in `suffix`, so that several can share a statement."""

    sql: str
    params: dict[str, object]
    user_ids: frozenset[str]
    addresses: frozenset[str]

    def opted_out(self, rows: Iterable[tuple[str, list[str]]]) -> set[str]:
        found: set[str] = set()
        for user_id, matched in rows:
            if user_id in self.user_ids:
                found.add(user_id)
            found.update(value for value in matched if value in self.addresses)
        return found


def preferences_query(
    *,
    account_id: uuid.UUID,
    category: str,
    channel: str,
    user_ids: Iterable[str] = (),
    addresses: Iterable[str] = (),
    suffix: str = "",
) -> PreferencesQuery | None:
    """The query of `preferences_opted_out`, or None when nothing can have opted out."""
    if category == Category.VERIFICATION:
        return None
    wanted_ids = list(set(user_ids))
    wanted_addresses = list(set(addresses))
    if not wanted_ids and not wanted_addresses:
        return None
    if channel == Channel.PUSH:
        address_sql = (
            "SELECT t.token FROM accounts_pushtoken t WHERE t.recipient_id = r.id "  # noqa: S608 - a parameter name
            f"AND t.token = ANY(%(addresses{suffix})s)"
        )
        match_sql = f"EXISTS ({address_sql})"
        found_sql = f"ARRAY({address_sql})"
    elif channel in _ADDRESS_COLUMN:
        column = _ADDRESS_COLUMN[Channel(channel)]
        match_sql = f"r.{column} = ANY(%(addresses{suffix})s)"
        found_sql = f"ARRAY[r.{column}]"
    else:
        match_sql, found_sql = "FALSE", "ARRAY[]::varchar[]"
    sql = f"""
        SELECT r.user_id, {found_sql}
        FROM accounts_recipient r
        WHERE r.account_id = %(account{suffix})s
          AND (r.user_id = ANY(%(user_ids{suffix})s) OR {match_sql})
          AND EXISTS (
              SELECT 1 FROM accounts_preference p
              WHERE p.recipient_id = r.id AND p.category = %(category{suffix})s AND p.channel = %(channel{suffix})s
                AND NOT p.subscribed
          )
    """  # noqa: S608 - only fixed column names and parameter names are interpolated
    params = {
        f"account{suffix}": account_id,
        f"user_ids{suffix}": wanted_ids,
        f"addresses{suffix}": wanted_addresses,
        f"category{suffix}": category,
        f"channel{suffix}": channel,
    }
    return PreferencesQuery(sql, params, frozenset(wanted_ids), frozenset(wanted_addresses))


def preferences_opted_out(
    *, account_id: uuid.UUID, category: str, channel: str, user_ids: Iterable[str] = (), addresses: Iterable[str] = ()
) -> set[str]:
    """The given user_ids, and the given addresses on `channel` (phone E.164, e-mail, openid, WeCom id,
    push token) of recipients, that opted out of `category` on `channel`. One query for a whole batch,
    with each list bound as one array parameter (a 1,000-entry IN list costs more to build than to run)."""
    query = preferences_query(account_id=account_id, category=category, channel=channel, user_ids=user_ids, addresses=addresses)
    if query is None:
        return set()
    with bound_cursor() as cursor:
        cursor.execute(query.sql, query.params)
        return query.opted_out(cursor.fetchall())
