"""Delivery reports: when a message's receipt is due, polling sees it and a push goes out."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from itertools import groupby

import aiohttp
from aiohttp import web

from devstack.simulator import aliyun, tencent, twilio, volcengine, wechat
from devstack.simulator.common import STATE_KEY, Push
from devstack.simulator.state import PendingReceipt, SentMessage, SimulatorState

logger = logging.getLogger(__name__)

TICK_S = 0.02
# Like the providers, retry a refused push a few times, then give up (polling still has it).
RETRY_DELAYS_S = (1.0, 5.0, 15.0)
MAX_CONCURRENT_PUSHES = 32
PUSHERS: dict[str, Callable[[SimulatorState, list[SentMessage]], list[Push]]] = {
    "aliyun": aliyun.pushes,
    "tencent": tencent.pushes,
    "twilio": twilio.pushes,
    "volcengine": volcengine.pushes,
    "wechat": wechat.pushes,
}


async def receipt_pump(app: web.Application) -> AsyncIterator[None]:
    """aiohttp cleanup context: runs the pump while the app runs."""
    task = asyncio.create_task(_pump(app[STATE_KEY]))
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _pump(state: SimulatorState) -> None:
    limit = asyncio.Semaphore(MAX_CONCURRENT_PUSHES)
    in_flight: set[asyncio.Task[None]] = set()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        while True:
            await asyncio.sleep(TICK_S)
            due = state.due_receipts()
            for pending in due:
                state.report(pending.message, pending.outcome)
            by_provider = groupby(sorted(due, key=lambda p: p.message.provider), key=lambda p: p.message.provider)
            for provider, group in by_provider:
                pendings = {id(p.message): p for p in group}
                for push in PUSHERS[provider](state, [p.message for p in pendings.values()]):
                    task = asyncio.create_task(_send(session, limit, state, push, [pendings[id(m)] for m in push.messages]))
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)


async def _send(
    session: aiohttp.ClientSession, limit: asyncio.Semaphore, state: SimulatorState, push: Push, pendings: list[PendingReceipt]
) -> None:
    async with limit:
        try:
            async with session.post(push.url, data=push.body, headers=push.headers) as response:
                await response.read()
                delivered = response.status < 300
                failure = f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError) as error:
            delivered, failure = False, repr(error)
    if delivered:
        return
    logger.warning("receipt push to %s failed (%s)", push.url, failure)
    for pending in pendings:
        if pending.attempt < len(RETRY_DELAYS_S):
            state.retry_push(pending, RETRY_DELAYS_S[pending.attempt])
