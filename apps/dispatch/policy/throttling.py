from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING

from redis import Redis
from redis.exceptions import RedisError
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from apps.accounts.models import Account
from apps.dispatch.policy.limits import Limiter, RateDecision
from messaging_center.broker import redis_client

if TYPE_CHECKING:
    # Only for typing: rest_framework.views reads the throttle classes (this module) while it loads.
    from rest_framework.views import APIView

logger = logging.getLogger(__name__)


@functools.cache
def _limiter(client: Redis) -> Limiter:
    return Limiter(client)


def limiter() -> Limiter:
    return _limiter(redis_client())


def take_request_token(account: Account) -> RateDecision:
    """A token of the account's request rate. With Redis down the API stays up: allowed, unthrottled."""
    try:
        return limiter().take_request_token(account_id=account.id, per_second=account.rate_limit)
    except RedisError:
        logger.warning("rate limit not enforced: Redis unavailable")
        return RateDecision(allowed=True, retry_after_seconds=0)


class AccountRateThrottle(BaseThrottle):
    """The account's request rate as a token bucket in Redis (burst = one second's worth).
    With Redis down the API stays up: requests pass unthrottled rather than failing."""

    def __init__(self) -> None:
        self._wait: float | None = None

    def allow_request(self, request: Request, view: APIView) -> bool:
        account = request.user
        if not isinstance(account, Account):
            return True
        decision = take_request_token(account)
        self._wait = decision.retry_after_seconds
        return decision.allowed

    def wait(self) -> float | None:
        return self._wait
