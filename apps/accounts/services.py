"""Account and API-key operations."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from apps.accounts.models import Account, ApiKey
from messaging_center import crypto
from messaging_center.errors import ValidationFailed

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
    account.callback_url = callback_url or ""
    if (account.callback_url and not account.callback_secret_encrypted) or rotate_secret:
        new_secret = "whsec_" + secrets.token_urlsafe(32)
        account.callback_secret_encrypted = crypto.encrypt(new_secret)
    account.save(update_fields=["callback_url", "callback_secret_encrypted", "updated_at"])
    return new_secret
