"""A small HTTP load generator: several processes, each an asyncio loop of keep-alive connections."""

from __future__ import annotations

import asyncio
import multiprocessing
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

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


def _request_bytes(method: str, host: str, path: str, headers: dict[str, str], body: bytes | None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", *(f"{k}: {v}" for k, v in headers.items())]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


async def _read_response(reader: asyncio.StreamReader) -> int:
    """One HTTP/1.1 response (Content-Length or chunked body); returns its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lowered = head.lower()
    marker = lowered.find(b"\r\ncontent-length:")
    if marker >= 0:
        end = lowered.index(b"\r\n", marker + 2)
        await reader.readexactly(int(lowered[marker + 17 : end]))
    elif b"\r\ntransfer-encoding: chunked" in lowered:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status


async def _client_loop(
    url: str, method: str, make_body: BodyFactory | None, headers: dict[str, str], connections: int, seconds: float, worker: int
) -> tuple[int, int, list[float], dict[int, int]]:
    """Keep-alive connections speaking plain HTTP/1.1 over asyncio streams: a client library's own
    cost per request (aiohttp's was ~0.5 ms of CPU) would be taken from the server it measures."""
    parts = urlsplit(url)
    host, port, path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path or "/"
    done = errors = 0
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    deadline = time.monotonic() + seconds

    async def one(slot: int) -> None:
        nonlocal done, errors
        reader, writer = await asyncio.open_connection(host, port)
        sequence = 0
        try:
            while time.monotonic() < deadline:
                body, extra = make_body(worker * 1000 + slot, sequence) if make_body else (None, {})
                sequence += 1
                started = time.perf_counter()
                writer.write(_request_bytes(method, f"{host}:{port}", path, {**headers, **extra}, body))
                try:
                    status = await asyncio.wait_for(_read_response(reader), 30)
                except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                    errors += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                    continue
                statuses[status] = statuses.get(status, 0) + 1
                if status >= 400:
                    errors += 1
                latencies.append((time.perf_counter() - started) * 1000)
                done += 1
        finally:
            writer.close()

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
