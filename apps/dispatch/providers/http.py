"""The one HTTP seam of the provider adapters: pooled keep-alive connections, timeouts, and the
mapping of transport failures and generic HTTP statuses to `ProviderError`.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)

from apps.dispatch.providers.base import THROTTLE, ProviderError

DEFAULT_CONNECT_TIMEOUT = 2.0
DEFAULT_READ_TIMEOUT = 5.0
POOL_MAXSIZE = 64

_pool_lock = threading.Lock()
_pool: tuple[int, urllib3.PoolManager] | None = None


def _pool_manager() -> urllib3.PoolManager:
    """One pool per process: a Celery prefork child must never reuse sockets opened by its parent."""
    global _pool
    pid = os.getpid()
    if _pool is None or _pool[0] != pid:
        with _pool_lock:
            if _pool is None or _pool[0] != pid:
                # block=False: a burst beyond maxsize opens extra connections rather than waiting.
                _pool = (pid, urllib3.PoolManager(num_pools=32, maxsize=POOL_MAXSIZE, block=False, retries=False))
    return _pool[1]


def timeouts_from(settings: Mapping[str, str]) -> tuple[float, float]:
    """(connect, read) seconds from the optional `connect_timeout`/`read_timeout` settings."""
    return (
        _positive_float(settings.get("connect_timeout"), DEFAULT_CONNECT_TIMEOUT),
        _positive_float(settings.get("read_timeout"), DEFAULT_READ_TIMEOUT),
    )


def _positive_float(value: str | None, default: float) -> float:
    try:
        number = float(value) if value not in (None, "") else default
    except ValueError:
        return default
    return number if number > 0 else default


def invalid_timeouts(settings: Mapping[str, str]) -> list[str]:
    """For `validate_settings`: the timeout settings that are present but not positive numbers."""
    invalid = []
    for name in ("connect_timeout", "read_timeout"):
        value = settings.get(name)
        if value in (None, ""):
            continue
        try:
            if float(value) <= 0:
                invalid.append(name)
        except ValueError:
            invalid.append(name)
    return invalid


def invalid_url(value: str | None) -> bool:
    return not value or not value.startswith(("http://", "https://"))


def invalid_connection_settings(settings: Mapping[str, str]) -> list[str]:
    """For `validate_settings`: the settings every HTTP adapter shares (`endpoint`, the timeouts) that
    are present but invalid."""
    invalid = ["endpoint"] if "endpoint" in settings and invalid_url(settings["endpoint"]) else []
    return invalid + invalid_timeouts(settings)


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        """The parsed body, or None when it is not JSON (an HTML error page from a proxy, say)."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None


class HttpClient:
    def __init__(self, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT, read_timeout: float = DEFAULT_READ_TIMEOUT) -> None:
        self.timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)

    def request(
        self, method: str, url: str, *, headers: Mapping[str, str] | None = None, body: bytes | None = None
    ) -> HttpResponse:
        """Sends one request; transport failures come back as `ProviderError`, HTTP statuses do not."""
        try:
            response = _pool_manager().request(
                method, url, body=body, headers=dict(headers or {}), timeout=self.timeout, redirect=False, retries=False
            )
        except (ConnectTimeoutError, NewConnectionError) as error:
            raise ProviderError("connect_error", str(error), permanent=False) from error
        except ReadTimeoutError as error:
            raise ProviderError(
                "timeout", f"no answer within {self.timeout.read_timeout} s", permanent=False, ambiguous=True
            ) from error
        except ProtocolError as error:
            # The connection broke after the request was written: the provider may have acted on it.
            raise ProviderError("connection_reset", str(error), permanent=False, ambiguous=True) from error
        except HTTPError as error:
            raise ProviderError("connect_error", str(error), permanent=False) from error
        return HttpResponse(response.status, response.headers, response.data)


def raise_for_response(response: HttpResponse, provider_error: Callable[[HttpResponse], ProviderError | None]) -> None:
    """Raises the adapter's own reading of an error reply first, then a generic one by status.

    Generic: 429 → transient `throttle`; 5xx → transient `http_<status>`; other 4xx → permanent.
    """
    error = provider_error(response)
    if error is not None:
        raise error
    if response.status == 429:
        raise ProviderError(THROTTLE, f"HTTP 429: {_snippet(response.body)}", permanent=False)
    if response.status >= 500:
        raise ProviderError(f"http_{response.status}", _snippet(response.body), permanent=False)
    if response.status >= 400:
        raise ProviderError(f"http_{response.status}", _snippet(response.body), permanent=True)


def _snippet(body: bytes) -> str:
    return body[:300].decode("utf-8", "replace")
