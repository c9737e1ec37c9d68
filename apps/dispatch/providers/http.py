"""The one HTTP seam of the provider adapters: pooled keep-alive connections, timeouts, and the
mapping of transport failures and generic HTTP statuses to `ProviderError`.

Requests run on one aiohttp event loop per process (a daemon thread), cheaper per request than urllib3
(docs/performance.md, Providers' HTTP seam); callers stay synchronous and block only on the loop's answer.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from apps.dispatch.providers.errors import THROTTLE, ProviderError

DEFAULT_CONNECT_TIMEOUT = 2.0
DEFAULT_READ_TIMEOUT = 5.0
# Open connections per provider host (more wait for a free one); keep-alive reuses them.
CONNECTIONS_PER_HOST = 64


class _Loop:
    """The process's event loop thread and its aiohttp session. A Celery prefork child must never
    reuse the loop or sockets of its parent, so each process (pid) starts its own."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.session: aiohttp.ClientSession | None = None
        threading.Thread(target=self._run, name="provider-http", daemon=True).start()
        self.ready.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._open())
        self.ready.set()
        self.loop.run_forever()

    async def _open(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=CONNECTIONS_PER_HOST, keepalive_timeout=30)
        self.session = aiohttp.ClientSession(connector=connector, auto_decompress=True)


_loop_lock = threading.Lock()
_loop: tuple[int, _Loop] | None = None


def _process_loop() -> _Loop:
    global _loop
    pid = os.getpid()
    if _loop is None or _loop[0] != pid:
        with _loop_lock:
            if _loop is None or _loop[0] != pid:
                _loop = (pid, _Loop())
    return _loop[1]


def timeouts_from(settings: Mapping[str, str]) -> tuple[float, float]:
    """(connect, read) seconds from the optional `connect_timeout`/`read_timeout` settings."""
    return (
        _positive_float(settings.get("connect_timeout"), DEFAULT_CONNECT_TIMEOUT),
        _positive_float(settings.get("read_timeout"), DEFAULT_READ_TIMEOUT),
    )


def _positive_float(value: str | None, default: float) -> float:
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        return default
    return number if number > 0 else default


def invalid_timeouts(settings: Mapping[str, str]) -> list[str]:
    """For `validate_settings`: the timeout settings that are present but not positive numbers."""
    invalid = []
    for name in ("connect_timeout", "read_timeout"):
        value = settings.get(name)
        if not value:
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


@dataclass(frozen=True)
class HttpRequest:
    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes | None = None


class HttpClient:
    def __init__(self, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT, read_timeout: float = DEFAULT_READ_TIMEOUT) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout, sock_read=read_timeout)

    def request(
        self, method: str, url: str, *, headers: Mapping[str, str] | None = None, body: bytes | None = None
    ) -> HttpResponse:
        """Sends one request; transport failures come back as `ProviderError`, HTTP statuses do not."""
        loop = _process_loop()
        future = asyncio.run_coroutine_threadsafe(self._request(loop, method, url, dict(headers or {}), body), loop.loop)
        return future.result()

    def request_many(self, requests: Sequence[HttpRequest]) -> list[HttpResponse | ProviderError]:
        """Sends the requests concurrently on the event loop with one hand-over between threads for
        all of them (a message API without a batch call: one request per message); one outcome per
        request, in order."""
        if not requests:
            return []
        loop = _process_loop()

        async def all_of_them() -> list[Any]:
            calls = (self._request(loop, r.method, r.url, dict(r.headers), r.body) for r in requests)
            return await asyncio.gather(*calls, return_exceptions=True)

        outcomes: list[HttpResponse | ProviderError] = []
        for outcome in asyncio.run_coroutine_threadsafe(all_of_them(), loop.loop).result():
            if isinstance(outcome, BaseException) and not isinstance(outcome, ProviderError):
                # Not a transport failure we know: whether the request left us is unknown.
                outcome = ProviderError("http_error", f"{type(outcome).__name__}: {outcome}", permanent=False, ambiguous=True)
            outcomes.append(outcome)
        return outcomes

    async def _request(self, loop: _Loop, method: str, url: str, headers: dict[str, str], body: bytes | None) -> HttpResponse:
        assert loop.session is not None
        try:
            async with loop.session.request(
                method, url, data=body, headers=headers, timeout=self._timeout, allow_redirects=False
            ) as response:
                return HttpResponse(response.status, response.headers, await response.read())
        except aiohttp.ConnectionTimeoutError as error:
            raise ProviderError("connect_error", f"no connection within {self.connect_timeout} s", permanent=False) from error
        except (aiohttp.SocketTimeoutError, aiohttp.ServerTimeoutError, TimeoutError) as error:
            raise ProviderError("timeout", f"no answer within {self.read_timeout} s", permanent=False, ambiguous=True) from error
        except aiohttp.ClientConnectorError as error:
            raise ProviderError("connect_error", str(error), permanent=False) from error
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientOSError) as error:
            # The connection broke after the request was written: the provider may have acted on it.
            raise ProviderError(
                "connection_reset", str(error) or type(error).__name__, permanent=False, ambiguous=True
            ) from error
        except aiohttp.ClientError as error:
            raise ProviderError("connect_error", str(error) or type(error).__name__, permanent=False) from error


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
