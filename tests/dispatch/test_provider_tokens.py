"""The Redis-shared access token on its own: early refresh by one worker, and what the others do."""

from __future__ import annotations

import json
import time

import pytest

from apps.dispatch.providers.base import ProviderError
from apps.dispatch.providers.tokens import IssuedToken, SharedToken
from messaging_center.broker import redis_client


class Issuer:
    def __init__(self, *tokens: str, expires_in: int = 7200) -> None:
        self.tokens = list(tokens)
        self.expires_in = expires_in
        self.calls = 0

    def __call__(self) -> IssuedToken:
        self.calls += 1
        if not self.tokens:
            raise ProviderError("-1", "system busy", permanent=False)
        return IssuedToken(self.tokens.pop(0), self.expires_in)


def _due_for_refresh(token: SharedToken, value: str) -> None:
    """The cached `value` is still valid but past its refresh-ahead time."""
    redis_client().set(token.key, json.dumps({"token": value, "refresh_at": time.time() - 1}), ex=600)


def test_a_token_is_fetched_once_and_cached_until_shortly_before_it_expires() -> None:
    issuer = Issuer("t1")
    token = SharedToken("test:app", issuer, wait_s=1)
    assert [token.get(), token.get()] == ["t1", "t1"]
    assert issuer.calls == 1
    assert 7200 - 31 <= redis_client().ttl(token.key) <= 7200 - 30


def test_past_its_refresh_time_one_process_refreshes_while_the_others_use_the_valid_token() -> None:
    issuer = Issuer("t2")
    token = SharedToken("test:app", issuer, wait_s=1)
    _due_for_refresh(token, "t1")
    lock = redis_client().lock(f"{token.key}:lock", timeout=5)
    assert lock.acquire(blocking=False)  # someone else is refreshing
    try:
        assert token.get() == "t1"
        assert issuer.calls == 0
    finally:
        lock.release()
    assert token.get() == "t2"
    assert issuer.calls == 1


def test_a_failed_early_refresh_keeps_the_valid_token() -> None:
    token = SharedToken("test:app", Issuer(), wait_s=1)
    _due_for_refresh(token, "t1")
    assert token.get() == "t1"


def test_a_refresh_after_rejection_reuses_a_token_fetched_meanwhile() -> None:
    issuer = Issuer("t3")
    token = SharedToken("test:app", issuer, wait_s=1)
    redis_client().set(token.key, json.dumps({"token": "t2", "refresh_at": time.time() + 600}), ex=600)
    assert token.refresh(stale="t1") == "t2"  # t1 was rejected, but t2 is already newer
    assert issuer.calls == 0
    assert token.refresh(stale="t2") == "t3"
    assert issuer.calls == 1


def test_waiting_too_long_for_someone_elses_fetch_is_transient() -> None:
    token = SharedToken("test:app", Issuer("t1"), wait_s=0.2)
    lock = redis_client().lock(f"{token.key}:lock", timeout=5)
    assert lock.acquire(blocking=False)
    try:
        with pytest.raises(ProviderError) as caught:
            token.get()
    finally:
        lock.release()
    assert (caught.value.code, caught.value.permanent) == ("token_unavailable", False)
