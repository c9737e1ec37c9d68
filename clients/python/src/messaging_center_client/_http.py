"""One road to the API for both clients: configuration, headers, the retry policy, error mapping.

Retries. A request is tried again, with the same body and the same `Idempotency-Key`, when
- the server refused it without acting: 429 `rate_limited` or 503 (after `Retry-After`, or the
  backoff when it sends none); a 429 `quota_exceeded` or `frequency_limited` is not retried: waiting
  a moment does not change it;
- the connection could not be opened (the request never left);
- the connection broke or timed out after the request left, or a proxy answered 502/504, but only
  when repeating it cannot act twice: GET, PUT and DELETE, and POSTs that carry an
  `Idempotency-Key` (sends), which the server answers by replaying the first response.
Retries are bounded (`max_retries`) and spaced by exponential backoff with jitter.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from messaging_center_client._version import __version__
from messaging_center_client.errors import APIConnectionError, InvalidResponseError, MessagingCenterError, error_from_response

API_PREFIX = "/api/v1"
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
REPLAY_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
PROXY_STATUSES = frozenset({502, 504})
USER_AGENT = f"messaging-center-client/{__version__} python/{platform.python_version()} httpx/{httpx.__version__}"


def segment(value: str) -> str:
    """A path segment: ids, template codes and user ids are quoted whole (a '/' in a user id stays one)."""
    return quote(str(value), safe="")


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # below /api/v1, e.g. "/messages"
    params: Mapping[str, str] | None = None
    json: Any = None
    idempotency_key: str | None = None

    @property
    def replay_safe(self) -> bool:
        """Sending it twice has the effect of sending it once."""
        return self.method in REPLAY_SAFE_METHODS or self.idempotency_key is not None


@dataclass(frozen=True)
class RetryPolicy:
    """`max_retries` retries after the first try; waits start at `backoff` seconds and double up to
    `max_backoff`, with jitter; a `Retry-After` longer than `max_retry_after` is not waited for."""

    max_retries: int = 3
    backoff: float = 0.5
    max_backoff: float = 8.0
    max_retry_after: float = 60.0

    def backoff_delay(self, attempt: int) -> float:
        ceiling = min(self.max_backoff, self.backoff * 2.0**attempt)
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def after_error(self, error: MessagingCenterError, request: Request, attempt: int) -> float | None:
        """Seconds to wait before trying again, or None to raise `error`."""
        if attempt >= self.max_retries:
            return None
        if error.code == "rate_limited" or error.status == 503:  # refused before anything was done
            wait = error.retry_after if error.retry_after is not None else self.backoff_delay(attempt)
            return wait if wait <= self.max_retry_after else None
        if error.status in PROXY_STATUSES and request.replay_safe:
            return self.backoff_delay(attempt)
        return None

    def after_transport_error(self, error: httpx.TransportError, request: Request, attempt: int) -> float | None:
        if attempt >= self.max_retries:
            return None
        never_left = isinstance(error, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))
        return self.backoff_delay(attempt) if never_left or request.replay_safe else None


@dataclass(frozen=True)
class Config:
    root: str  # base URL + /api/v1
    api_key: str
    timeout: httpx.Timeout
    retry: RetryPolicy
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def resolve(
        cls,
        base_url: str | None,
        api_key: str | None,
        *,
        timeout: float | httpx.Timeout | None,
        max_retries: int,
        headers: Mapping[str, str] | None,
    ) -> Config:
        base = base_url or os.environ.get("MC_BASE_URL")
        key = api_key or os.environ.get("MC_API_KEY")
        if not base:
            raise ValueError("No base URL: pass base_url= or set MC_BASE_URL (e.g. http://127.0.0.1:8000).")
        if not key:
            raise ValueError("No API key: pass api_key= or set MC_API_KEY.")
        base = base.rstrip("/")
        root = base if base.endswith(API_PREFIX) else base + API_PREFIX
        if timeout is None:
            timeout = DEFAULT_TIMEOUT
        elif not isinstance(timeout, httpx.Timeout):
            timeout = httpx.Timeout(timeout, connect=min(timeout, 5.0))
        return cls(root, key, timeout, RetryPolicy(max_retries=max_retries), dict(headers or {}))

    def headers_for(self, request: Request) -> dict[str, str]:
        headers = {
            "Authorization": f"Bearer {self.api_key}",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
            **self.headers,
        }
        if request.json is not None:
            headers["Content-Type"] = "application/json"
        if request.idempotency_key is not None:
            headers["Idempotency-Key"] = request.idempotency_key
        return headers


def encode_body(request: Request) -> bytes | None:
    """Encoded once per call, so that every retry sends the very same bytes."""
    if request.json is None:
        return None
    return json.dumps(request.json, ensure_ascii=False, separators=(",", ":")).encode()


def decode(response: httpx.Response) -> Any:
    if response.status_code == 204 or not response.content:
        return None
    try:
        return json.loads(response.content)
    except ValueError:
        raise InvalidResponseError(
            f"Expected JSON, got {response.headers.get('content-type', 'no content type')}",
            code="invalid_response",
            status=response.status_code,
            headers=response.headers,
        ) from None


def connection_error(error: httpx.TransportError, request: Request) -> APIConnectionError:
    code = "timeout" if isinstance(error, httpx.TimeoutException) else "connection_error"
    return APIConnectionError(f"{request.method} {request.path}: {type(error).__name__}: {error}", code=code)


class SyncTransport:
    def __init__(self, config: Config, http: httpx.Client | None = None) -> None:
        self.config = config
        self._owned = http is None
        self._http = http or httpx.Client(timeout=config.timeout)

    def request(self, request: Request) -> Any:
        body = encode_body(request)
        headers = self.config.headers_for(request)
        url = self.config.root + request.path
        attempt = 0
        while True:
            try:
                response = self._http.request(request.method, url, params=request.params, content=body, headers=headers)
            except httpx.TransportError as error:
                delay = self.config.retry.after_transport_error(error, request, attempt)
                if delay is None:
                    raise connection_error(error, request) from error
            else:
                if response.is_success:
                    return decode(response)
                failure = error_from_response(response.status_code, response.content, response.headers)
                delay = self.config.retry.after_error(failure, request, attempt)
                if delay is None:
                    raise failure
            time.sleep(delay)
            attempt += 1

    def close(self) -> None:
        if self._owned:
            self._http.close()


class AsyncTransport:
    def __init__(self, config: Config, http: httpx.AsyncClient | None = None) -> None:
        self.config = config
        self._owned = http is None
        self._http = http or httpx.AsyncClient(timeout=config.timeout)

    async def request(self, request: Request) -> Any:
        body = encode_body(request)
        headers = self.config.headers_for(request)
        url = self.config.root + request.path
        attempt = 0
        while True:
            try:
                response = await self._http.request(request.method, url, params=request.params, content=body, headers=headers)
            except httpx.TransportError as error:
                delay = self.config.retry.after_transport_error(error, request, attempt)
                if delay is None:
                    raise connection_error(error, request) from error
            else:
                if response.is_success:
                    return decode(response)
                failure = error_from_response(response.status_code, response.content, response.headers)
                delay = self.config.retry.after_error(failure, request, attempt)
                if delay is None:
                    raise failure
            await asyncio.sleep(delay)
            attempt += 1

    async def aclose(self) -> None:
        if self._owned:
            await self._http.aclose()
