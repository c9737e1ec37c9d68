"""Account, API-key, recipient and preference operations."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.accounts.contacts import email_normalized, phone_e164, timezone_valid
from apps.accounts.models import Account, ApiKey, Preference, PushPlatform, PushToken, Recipient
from messaging_center import crypto, outbound
from messaging_center.errors import ValidationFailed
from messaging_center.vocabulary import Category, Channel

KEY_PREFIX_BYTES = 6  # 12 hex characters


def hash_key(raw_key: str) -> str:
    # API keys carry 256 bits of randomness, so a fast hash is safe (no brute force to slow down).
    return hashlib.sha256(raw_key.encode()).hexdigest()


def split_key(raw_key: str) -> tuple[str, str] | None:
    """`mc_<prefix>_<secret>` → (prefix, secret), or None when the text is not shaped like a key."""
    parts = raw_key.split("_", 2)
    if len(parts) != 3 or parts[0] != "mc" or len(parts[1]) != KEY_PREFIX_BYTES * 2 or not parts[2]:
        return None
    return parts[1], parts[2]


@dataclass(frozen=True)
class IssuedKey:
    api_key: ApiKey
    raw_key: str


def api_key_issue(*, account: Account, name: str = "") -> IssuedKey:
    prefix = secrets.token_hex(KEY_PREFIX_BYTES)
    raw_key = f"mc_{prefix}_{secrets.token_urlsafe(32)}"
    api_key = ApiKey.objects.create(account=account, name=name, prefix=prefix, key_hash=hash_key(raw_key))
    return IssuedKey(api_key=api_key, raw_key=raw_key)


def api_key_revoke(*, api_key: ApiKey) -> None:
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])


@transaction.atomic
def account_create(*, name: str, rate_limit: int | None = None, daily_quota: int | None = None) -> IssuedKey:
    name = name.strip()
    if not name:
        raise ValidationFailed("The account name must not be empty.", errors={"name": ["This field may not be blank."]})
    if Account.objects.filter(name=name).exists():
        raise ValidationFailed(f"An account named {name!r} already exists.", errors={"name": ["Already taken."]})
    fields: dict[str, int] = {}
    if rate_limit is not None:
        fields["rate_limit"] = rate_limit
    if daily_quota is not None:
        fields["daily_quota"] = daily_quota
    account = Account.objects.create(name=name, **fields)
    return api_key_issue(account=account, name="default")


def account_callback_secret(*, account: Account) -> str | None:
    if not account.callback_secret_encrypted:
        return None
    return crypto.decrypt(account.callback_secret_encrypted)


def account_set_callback(*, account: Account, callback_url: str | None, rotate_secret: bool = False) -> str | None:
    """Sets or clears the callback URL; returns a newly generated secret, the only time it is shown."""
    new_secret: str | None = None
    if callback_url:
        try:  # outside the development run resolved now too: a private address is refused here, not only at delivery
            if settings.CALLBACK_ALLOW_PRIVATE:
                outbound.parse(callback_url)
            else:
                outbound.check(callback_url, allow_private=False)
        except outbound.Refused as refused:
            raise ValidationFailed(
                f"The callback URL cannot be used: {refused}.",
                errors={"callback_url": [f"{str(refused)[:1].upper()}{str(refused)[1:]}."]},
            ) from refused
    account.callback_url = callback_url or ""
    if (account.callback_url and not account.callback_secret_encrypted) or rotate_secret:
        new_secret = "whsec_" + secrets.token_urlsafe(32)
        account.callback_secret_encrypted = crypto.encrypt(new_secret)
    account.save(update_fields=["callback_url", "callback_secret_encrypted", "updated_at"])
    return new_secret


USER_ID_MAX_LENGTH = 128
MAX_PUSH_TOKENS = 50


@dataclass(frozen=True)
class PushTokenInput:
    platform: str
    token: str


def _recipient_errors(
    *, user_id: str, phone: str, email: str, timezone_name: str, push_tokens: list[PushTokenInput]
) -> tuple[dict[str, list[str]], str, str]:
    errors: dict[str, list[str]] = {}
    if not user_id or len(user_id) > USER_ID_MAX_LENGTH or user_id != user_id.strip():
        errors["user_id"] = [f"Use 1-{USER_ID_MAX_LENGTH} characters without surrounding spaces."]
    stored_phone = ""
    if phone:
        stored_phone = phone_e164(phone) or ""
        if not stored_phone:
            errors["phone"] = [f"{phone!r} is not a valid phone number (use +<country code><number>)."]
    stored_email = ""
    if email:
        stored_email = email_normalized(email) or ""
        if not stored_email:
            errors["email"] = ["Enter a valid e-mail address."]
    if timezone_name and not timezone_valid(timezone_name):
        errors["timezone"] = [f"{timezone_name!r} is not an IANA time zone such as Asia/Shanghai."]
    if len(push_tokens) > MAX_PUSH_TOKENS:
        errors["push_tokens"] = [f"At most {MAX_PUSH_TOKENS} push tokens per recipient."]
    for index, push_token in enumerate(push_tokens):
        if push_token.platform not in PushPlatform.values:
            errors[f"push_tokens.{index}.platform"] = [f"Use one of {', '.join(PushPlatform.values)}."]
    return errors, stored_phone, stored_email


@transaction.atomic
def recipient_put(
    *,
    account: Account,
    user_id: str,
    phone: str = "",
    email: str = "",
    wechat_openid: str = "",
    wecom_userid: str = "",
    timezone_name: str = "",
    push_tokens: Iterable[PushTokenInput] = (),
) -> Recipient:
    """Creates or replaces the recipient: fields left out are cleared, push tokens not listed removed."""
    tokens = list({(t.platform, t.token): t for t in push_tokens}.values())
    errors, stored_phone, stored_email = _recipient_errors(
        user_id=user_id, phone=phone, email=email, timezone_name=timezone_name, push_tokens=tokens
    )
    if errors:
        raise ValidationFailed(errors=errors)
    fields = {
        "phone": stored_phone,
        "email": stored_email,
        "wechat_openid": wechat_openid,
        "wecom_userid": wecom_userid,
        "timezone": timezone_name,
    }
    # An upsert, so that two concurrent PUTs of a new user_id both succeed instead of one failing.
    Recipient.objects.bulk_create(
        [Recipient(account=account, user_id=user_id, **fields)],
        update_conflicts=True,
        unique_fields=["account", "user_id"],
        update_fields=[*fields, "updated_at"],
    )
    # On conflict the object keeps the id generated in Python, not the stored row's: read the row back.
    recipient = Recipient.objects.get(account=account, user_id=user_id)
    wanted = {(t.platform, t.token) for t in tokens}
    stale = [pk for pk, *key in recipient.push_tokens.values_list("pk", "platform", "token") if tuple(key) not in wanted]
    if stale:
        PushToken.objects.filter(pk__in=stale).delete()
    if tokens:
        PushToken.objects.bulk_create(
            [PushToken(recipient=recipient, platform=t.platform, token=t.token, active=True) for t in tokens],
            update_conflicts=True,
            unique_fields=["recipient", "platform", "token"],
            update_fields=["active", "updated_at"],
        )
    return recipient


def push_tokens_deactivate(*, tokens: Iterable[str]) -> int:
    """Marks tokens a push provider reported as unregistered; returns how many were active."""
    return PushToken.objects.filter(token__in=list(tokens), active=True).update(active=False, updated_at=timezone.now())


def preferences_update(*, recipient: Recipient, changes: Mapping[str, Mapping[str, object]]) -> None:
    """Merges `{category: {channel: subscribed}}`; verification cannot be turned off."""
    errors: dict[str, list[str]] = {}
    rows: list[Preference] = []
    if not isinstance(changes, Mapping):
        raise ValidationFailed('Expected an object like {"marketing": {"sms": false}}.')
    for category, channels in changes.items():
        if category not in Category.values:
            errors[category] = [f"Unknown category; use one of {', '.join(Category.values)}."]
            continue
        if not isinstance(channels, Mapping):
            errors[category] = ['Expected an object like {"sms": false}.']
            continue
        for channel, subscribed in channels.items():
            field = f"{category}.{channel}"
            if channel not in Channel.values:
                errors[field] = [f"Unknown channel; use one of {', '.join(Channel.values)}."]
            elif not isinstance(subscribed, bool):
                errors[field] = ["Expected true or false."]
            elif category == Category.VERIFICATION:
                if not subscribed:
                    errors[field] = ["Verification messages cannot be turned off."]
            else:
                rows.append(Preference(recipient=recipient, category=category, channel=channel, subscribed=subscribed))
    if errors:
        raise ValidationFailed(errors=errors)
    Preference.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["recipient", "category", "channel"],
        update_fields=["subscribed", "updated_at"],
    )
