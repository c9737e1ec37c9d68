"""What every simulated provider API shares: the state key, the behavior switchboard, pushes."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web

from devstack.simulator.state import SentMessage, SimulatorState

STATE_KEY = web.AppKey("state", SimulatorState)
# Where the non-HTTP/1.1 servers listen (APNs' HTTP/2, SMTP); a port of 0 leaves that server off.
HOST_KEY = web.AppKey("host", str)
APNS_PORT_KEY = web.AppKey("apns_port", int)
SMTP_PORT_KEY = web.AppKey("smtp_port", int)
# Longer than any client read timeout we configure (default 5 s), so the client gives up first.
TIMEOUT_SLEEP_S = 30.0
PUSH_BATCH = 100
R = TypeVar("R")


@dataclass
class Push:
    """One status-report request to send: the provider's own format, to the provider's target."""

    url: str
    body: bytes
    headers: dict[str, str]
    messages: list[SentMessage] = field(default_factory=list)


async def simulate(
    request: web.Request, provider: str, *, accept: Callable[[], web.Response], fail: Callable[[str], web.Response]
) -> web.Response:
    return await simulate_with(request.app[STATE_KEY], provider, accept=accept, fail=fail, garble=_garbled)


def _garbled(_: web.Response) -> web.Response:
    # What a proxy in front of a provider answers when it mangles the provider's reply.
    return web.Response(status=200, body=b"<html><body>upstream\x00 reply</bo", content_type="text/html")


async def simulate_with(
    state: SimulatorState,
    provider: str,
    *,
    accept: Callable[[], R],
    fail: Callable[[str], R],
    garble: Callable[[R], R] | None = None,
) -> R:
    """Applies the provider's behavior to a valid request: latency, then an injected error or `accept()`.
    Any protocol's answer (`R`): HTTP/1.1, the HTTP/2 APNs server, SMTP replies.

    An injected `timeout` accepts the message (it did reach the provider) and answers too late; an
    injected `garbage` accepts it and answers with what `garble` makes of the answer (HTTP APIs: a 200
    HTML fragment; protocols without `garble` get the provider's `http_500` failure instead).
    """
    await delay(state, provider)
    behavior = state.behavior(provider)
    if behavior.fail_rate and random.random() < behavior.fail_rate:
        if behavior.error == "garbage":
            return garble(accept()) if garble is not None else fail("http_500")
        if behavior.error != "timeout":
            return fail(behavior.error)
        response = accept()
        await asyncio.sleep(TIMEOUT_SLEEP_S)
        return response
    return accept()


async def delay(state: SimulatorState, provider: str) -> None:
    """The provider's `latency_ms`; token endpoints get it too (a slow refresh widens a refresh race)."""
    latency_ms = state.behavior(provider).latency_ms
    if latency_ms:
        await asyncio.sleep(latency_ms / 1000)


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(body, ensure_ascii=False).encode(), status=status, content_type="application/json")


def receipt_url(state: SimulatorState, provider: str) -> str | None:
    return f"{state.receipt_base_url}{provider}" if state.receipt_base_url else None


def batches(messages: list[SentMessage]) -> list[list[SentMessage]]:
    return [messages[i : i + PUSH_BATCH] for i in range(0, len(messages), PUSH_BATCH)]


JSON_HEADERS = {"Content-Type": "application/json"}


def json_array_pushes(
    state: SimulatorState, provider: str, messages: list[SentMessage], report: Callable[[SentMessage], dict[str, Any]]
) -> list[Push]:
    """Unsigned JSON arrays of reports to `<receipt base><provider>` (Aliyun's SmsReport, Tencent's status push)."""
    url = receipt_url(state, provider)
    if url is None:
        return []
    return [
        Push(
            url, json.dumps([report(m) for m in batch], ensure_ascii=False).encode(), {"Content-Type": "application/json"}, batch
        )
        for batch in batches(messages)
    ]
