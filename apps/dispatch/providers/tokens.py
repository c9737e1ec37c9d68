"""Access tokens shared by every worker through Redis: WeChat's and WeCom's `access_token`, FCM's
OAuth2 bearer token.

Providers cap how often a token may be fetched (WeChat: 2,000 a day per app) and a new token can
invalidate the old one, so a token is fetched by one worker at a time under a Redis lock and kept
in Redis, one key per app, until shortly before the provider lets it expire. Shortly before that,
one worker refreshes it ahead of time while the others go on using the still-valid one; when the
provider rejects a token anyway (`call_with_token`), the workers that saw the rejection wait on the
lock and the first one refreshes, the others pick up its result: one fetch, never a stampede.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypeVar, overload

import redis

from apps.dispatch.providers.errors import ProviderError
from messaging_center.broker import redis_client

if TYPE_CHECKING:
    from redis import Redis

    from apps.dispatch.providers.http import HttpResponse

logger = logging.getLogger(__name__)
T = TypeVar("T")

KEY_PREFIX = "mc:provider-token"
# Refresh ahead this long before the provider's expiry (at most half the token's life).
REFRESH_AHEAD_S = 300
# A cached token is dropped this long before the provider's expiry, so that no request carries a
# token that expires on the way.
EXPIRY_MARGIN_S = 30
# The lock outlives any single fetch (connect + read timeouts), so a crashed holder frees it.
LOCK_TTL_S = 30


@dataclass(frozen=True)
class IssuedToken:
    value: str
    expires_in: int

    @classmethod
    def from_answer(cls, response: HttpResponse) -> IssuedToken:
        """`{"access_token", "expires_in"}`, as WeChat's and WeCom's token endpoints answer."""
        answer = response.json()
        if not isinstance(answer, dict) or not answer.get("access_token"):
            raise ProviderError("bad_response", f"HTTP {response.status}: no access_token", permanent=False)
        return cls(str(answer["access_token"]), int(answer.get("expires_in") or 7200))


class SharedToken:
    """One provider token, cached in Redis under `key` and fetched with `fetch` when needed.

    `wait_s` is how long a worker without a usable token waits for another worker's fetch.
    """

    def __init__(self, key: str, fetch: Callable[[], IssuedToken], *, wait_s: float, client: Redis | None = None) -> None:
        self.key = f"{KEY_PREFIX}:{key}"
        self.fetch = fetch
        self.wait_s = wait_s
        self._client = client

    @property
    def client(self) -> Redis:
        if self._client is None:
            self._client = redis_client()
        return self._client

    def get(self) -> str:
        cached = self._read()
        if cached is None:
            return self._refresh(stale=None)
        token, refresh_at = cached
        if time.time() < refresh_at:
            return token
        try:
            return self._refresh(stale=token, blocking=False) or token
        except ProviderError as error:
            # The current token is still valid for a while: a failed early refresh must not fail the send.
            logger.warning("early refresh of %s failed: %r", self.key, error)
            return token

    def refresh(self, *, stale: str) -> str:
        """A new token after the provider rejected `stale`, fetched once however many workers ask."""
        return self._refresh(stale=stale)

    def _read(self) -> tuple[str, float] | None:
        try:
            raw = self.client.get(self.key)
        except redis.RedisError as error:
            raise ProviderError("token_cache_unavailable", repr(error), permanent=False) from error
        if raw is None:
            return None
        try:
            entry = json.loads(raw)
            return str(entry["token"]), float(entry["refresh_at"])
        except (ValueError, KeyError, TypeError):
            return None

    @overload
    def _refresh(self, *, stale: str | None, blocking: Literal[True] = True) -> str: ...
    @overload
    def _refresh(self, *, stale: str | None, blocking: Literal[False]) -> str | None: ...

    def _refresh(self, *, stale: str | None, blocking: bool = True) -> str | None:
        """A blocking refresh returns a token or raises; a non-blocking one returns None when another
        worker holds the lock."""
        lock = self.client.lock(f"{self.key}:lock", timeout=LOCK_TTL_S, blocking_timeout=self.wait_s)
        try:
            acquired = lock.acquire(blocking=blocking)
        except redis.RedisError as error:
            raise ProviderError("token_cache_unavailable", repr(error), permanent=False) from error
        if not acquired:
            if not blocking:
                return None
            detail = f"no token within {self.wait_s} s (another worker is fetching it)"
            raise ProviderError("token_unavailable", detail, permanent=False)
        try:
            cached = self._read()
            if cached is not None and cached[0] != stale:
                return cached[0]  # another worker refreshed it while we waited for the lock
            issued = self.fetch()
            lifetime = max(issued.expires_in - EXPIRY_MARGIN_S, 1)
            refresh_at = time.time() + max(issued.expires_in - min(REFRESH_AHEAD_S, issued.expires_in // 2), 1)
            try:
                self.client.set(self.key, json.dumps({"token": issued.value, "refresh_at": refresh_at}), ex=lifetime)
            except redis.RedisError as error:
                raise ProviderError("token_cache_unavailable", repr(error), permanent=False) from error
            return issued.value
        finally:
            with contextlib.suppress(redis.exceptions.LockError, redis.RedisError):
                lock.release()


def call_with_token(token: SharedToken, call: Callable[[str], T], rejected: Callable[[T], bool]) -> T:
    """`call(token)`; when the provider says the token is invalid or expired, once more with a fresh one."""
    current = token.get()
    result = call(current)
    if rejected(result):
        result = call(token.refresh(stale=current))
    return result
