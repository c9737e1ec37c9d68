from __future__ import annotations

import hmac

from django.http import HttpRequest
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from apps.accounts.models import Account, ApiKey
from apps.accounts.services import hash_key, split_key
from messaging_center.errors import DATABASE_DOWN, AccountDisabled
from messaging_center.ttl_cache import TtlCache

# Revoking a key or disabling an account reaches other processes within this many seconds.
API_KEYS: TtlCache[ApiKey | None] = TtlCache(seconds=5)


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer <api key>`; `request.user` becomes the key's Account."""

    keyword = "Bearer"

    def authenticate(self, request: HttpRequest) -> tuple[Account, ApiKey] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        scheme, _, raw_key = header.partition(" ")
        raw_key = raw_key.strip()
        if scheme.lower() != "bearer" or not raw_key:
            raise exceptions.AuthenticationFailed("Use the header `Authorization: Bearer <api key>`.")
        parts = split_key(raw_key)
        if parts is None:
            raise exceptions.AuthenticationFailed("Unknown API key.")
        # Through a database outage the key as this process last read it still opens the spool
        # (apps/dispatch/spool); a key this process never read answers 503.
        api_key = API_KEYS.get_or_load(
            parts[0], lambda: ApiKey.objects.select_related("account").filter(prefix=parts[0]).first(), stale_on=DATABASE_DOWN
        )
        if api_key is None or not hmac.compare_digest(api_key.key_hash, hash_key(raw_key)):
            raise exceptions.AuthenticationFailed("Unknown API key.")
        if api_key.revoked_at is not None:
            raise exceptions.AuthenticationFailed("This API key has been revoked.")
        if not api_key.account.is_active:
            raise AccountDisabled()
        return api_key.account, api_key

    def authenticate_header(self, request: HttpRequest) -> str:
        return f'{self.keyword} realm="api"'


def request_account(request: Request) -> Account:
    """The account whose API key authenticated the request (`request.user`, typed as Django's user)."""
    principal: object = request.user
    if not isinstance(principal, Account):
        raise exceptions.NotAuthenticated()
    return principal
