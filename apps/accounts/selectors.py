from __future__ import annotations

import uuid
from collections.abc import Iterable

from django.contrib.postgres.expressions import ArraySubquery
from django.contrib.postgres.fields import ArrayField
from django.db.models import CharField, Exists, OuterRef, Prefetch, Value
from django.utils import timezone

from apps.accounts.models import Account, Preference, PushToken, Recipient
from apps.templates.choices import Category, Channel
from messaging_center.broker import redis_client
from messaging_center.errors import NotFound


def quota_key(account_id: object, day: str) -> str:
    return f"mc:quota:{account_id}:{day}"


def account_used_today(*, account: Account) -> int:
    """Messages counted against today's quota (the day in the account's own time zone)."""
    import zoneinfo

    day = timezone.now().astimezone(zoneinfo.ZoneInfo(account.timezone)).date().isoformat()
    value = redis_client().get(quota_key(account.id, day))
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
    recipients = Recipient.objects.filter(account_id=account_id, user_id__in=wanted).prefetch_related(
        Prefetch("push_tokens", queryset=PushToken.objects.filter(active=True), to_attr="active_push_tokens")
    )
    return {recipient.user_id: recipient for recipient in recipients}


def recipient_preferences(*, recipient: Recipient) -> dict[str, dict[str, bool]]:
    """Every category x channel, True = subscribed (the default); verification is always on."""
    table = {category: dict.fromkeys(Channel.values, True) for category in Category.values}
    for category, channel, subscribed in recipient.preferences.values_list("category", "channel", "subscribed"):
        if category != Category.VERIFICATION:
            table[category][channel] = subscribed
    return table


def preferences_opted_out(
    *, account_id: uuid.UUID, category: str, channel: str, user_ids: Iterable[str] = (), addresses: Iterable[str] = ()
) -> set[str]:
    """The given user_ids, and the given addresses (phone E.164, e-mail, openid, WeCom id, push token) of
    recipients, that opted out of `category` on `channel`. One query for a whole batch."""
    if category == Category.VERIFICATION:
        return set()
    wanted_ids = set(user_ids)
    wanted_addresses = set(addresses)
    if not wanted_ids and not wanted_addresses:
        return set()
    # A union of index lookups (one per address column) finds the candidates; an OR across columns
    # would scan every recipient of the account.
    recipients = Recipient.objects.filter(account_id=account_id).order_by()
    candidates = [recipients.filter(user_id__in=wanted_ids).values("pk")] if wanted_ids else []
    if wanted_addresses:
        candidates += [
            recipients.filter(**{f"{field}__in": wanted_addresses}).values("pk")
            for field in ("phone", "email", "wechat_openid", "wecom_userid")
        ]
        candidates.append(
            PushToken.objects.filter(token__in=wanted_addresses, recipient__account_id=account_id)
            .order_by()
            .values("recipient_id")
        )
    opted_out = Preference.objects.filter(recipient=OuterRef("pk"), category=category, channel=channel, subscribed=False)
    rows = Recipient.objects.filter(Exists(opted_out), pk__in=candidates[0].union(*candidates[1:], all=True)).order_by()
    if wanted_addresses:
        tokens = PushToken.objects.filter(recipient=OuterRef("pk"), token__in=wanted_addresses).order_by().values("token")
        rows = rows.annotate(tokens=ArraySubquery(tokens))
    else:
        rows = rows.annotate(tokens=Value([], output_field=ArrayField(CharField())))
    found: set[str] = set()
    for user_id, phone, email, openid, wecom_userid, tokens in rows.values_list(
        "user_id", "phone", "email", "wechat_openid", "wecom_userid", "tokens"
    ):
        if user_id in wanted_ids:
            found.add(user_id)
        found.update(value for value in (phone, email, openid, wecom_userid, *tokens) if value in wanted_addresses)
    return found
