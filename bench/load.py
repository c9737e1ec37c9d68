"""A small HTTP load generator: several processes, each an asyncio loop of keep-alive clients."""

from __future__ import annotations

import asyncio
import multiprocessing
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

BodyFactory = Callable[[int, int], tuple[bytes, dict[str, str]]]


@dataclass
class LoadResult:
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    statuses: dict[int, int]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies_ms) if self.latencies_ms else float("nan")


async def _client_loop(
    url: str, method: str, make_body: BodyFactory | None, headers: dict[str, str], connections: int, seconds: float, worker: int
) -> tuple[int, int, list[float], dict[int, int]]:
    done = errors = 0
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    deadline = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def one(slot: int) -> None:
            nonlocal done, errors
            sequence = 0
            while time.monotonic() < deadline:
                body, extra = make_body(worker * 1000 + slot, sequence) if make_body else (None, {})
                sequence += 1
                started = time.perf_counter()
                try:
                    async with session.request(method, url, data=body, headers={**headers, **extra}) as response:
                        await response.read()
                        statuses[response.status] = statuses.get(response.status, 0) + 1
                        if response.status >= 400:
                            errors += 1
                except (TimeoutError, aiohttp.ClientError):
                    errors += 1
                    continue
                latencies.append((time.perf_counter() - started) * 1000)
                done += 1

        await asyncio.gather(*(one(slot) for slot in range(connections)))
    return done, errors, latencies, statuses


def _process_main(args: tuple[Any, ...]) -> tuple[int, int, list[float], dict[int, int]]:
    return asyncio.run(_client_loop(*args))


def run_load(
    url: str,
    *,
    method: str = "GET",
    make_body: BodyFactory | None = None,
    headers: dict[str, str] | None = None,
    connections: int = 16,
    seconds: float = 8.0,
    processes: int = 2,
) -> LoadResult:
    per_process = max(1, connections // processes)
    started = time.monotonic()
    jobs = [(url, method, make_body, headers or {}, per_process, seconds, worker) for worker in range(processes)]
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        results = pool.map(_process_main, jobs)
    elapsed = time.monotonic() - started
    statuses: dict[int, int] = {}
    for _, _, _, part in results:
        for code, count in part.items():
            statuses[code] = statuses.get(code, 0) + count
    return LoadResult(
        requests=sum(r[0] for r in results),
        errors=sum(r[1] for r in results),
        seconds=elapsed,
        latencies_ms=[lat for r in results for lat in r[2]],
        statuses=statuses,
    )
