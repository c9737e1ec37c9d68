"""Faults, each done to the running stack the way the world does it: SIGKILL to a process (the
launcher restarts it, nobody else does), the embedded servers killed, stopped, emptied, the
broker's bookkeeping aged past its visibility timeout. Providers misbehave through the simulator's
`/_sim/behavior` (Stack.sim_behave)."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import time
from typing import cast

import psutil
import redis

from devstack.chaos.stack import Stack

# The broker's record of handed-out, unacknowledged tasks (kombu's Redis transport): delivery tag →
# when it was handed out. A task older than the visibility timeout is handed out again.
UNACKED_INDEX = "unacked_index"


class FaultFailed(RuntimeError):
    """The fault could not be done (no such process at that moment)."""


def _kill(process: psutil.Process | None, what: str) -> str:
    if process is None:
        raise FaultFailed(f"no {what} to kill")
    process.send_signal(signal.SIGKILL)
    return f"SIGKILL {what} (pid {process.pid})"


def kill_pool_child(stack: Stack, worker: str = "critical") -> str:
    """A prefork child of the worker, chosen at random; the worker's main process makes a new one."""
    main = stack.worker(worker)
    children = main.children() if main is not None else []
    return _kill(random.choice(children) if children else None, f"a pool child of worker-{worker}")


def kill_worker(stack: Stack, worker: str = "critical") -> str:
    return _kill(stack.worker(worker), f"worker-{worker}")


def kill_beat(stack: Stack) -> str:
    return _kill(stack.beat(), "beat")


def kill_web(stack: Stack) -> str:
    """The API's worker process (granian's child), while requests are being served."""
    server = stack.web()
    workers = server.children() if server is not None else []
    return _kill(workers[0] if workers else server, "the web process")


def wait_for_worker(stack: Stack, worker: str, timeout: float = 60) -> None:
    """Until the launcher has the worker running again with its pool (the next fault needs it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        main = stack.worker(worker)
        with contextlib.suppress(psutil.Error):
            if main is not None and main.children():
                return
        time.sleep(0.5)
    raise FaultFailed(f"worker-{worker} did not come back within {timeout:.0f} s")


def redis_kill(stack: Stack, *, down_seconds: float, keep_data: bool) -> str:
    """SIGKILL of Redis; started again after `down_seconds`, with its append-only file (as a
    persistent Redis comes back: the last second's writes may be gone) or without it (as an
    in-memory Redis comes back: empty)."""
    server = stack.services.redis
    pid = server.pid()
    if pid is None:
        raise FaultFailed("Redis is not running")
    os.kill(pid, signal.SIGKILL)
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        time.sleep(0.05)
    time.sleep(down_seconds)
    if not keep_data:
        for name in ("appendonly.aof", "appendonlydir", "dump.rdb"):
            path = server.directory / name
            if path.is_dir():
                for part in path.iterdir():
                    part.unlink()
                path.rmdir()
            elif path.exists():
                path.unlink()
    server.ensure_running()
    return f"SIGKILL Redis, {down_seconds:.0f} s down, restarted {'with its AOF' if keep_data else 'empty'}"


def redis_flushall(stack: Stack) -> str:
    client = redis.Redis.from_url(stack.services.redis.url())
    client.flushall()
    client.close()
    return "Redis FLUSHALL"


def postgres_down(stack: Stack, *, down_seconds: float) -> str:
    """PostgreSQL stopped (fast shutdown: sessions cut) and started again after `down_seconds`."""
    stopped = time.monotonic()
    stack.services.postgres.stop()
    time.sleep(max(0.0, down_seconds - (time.monotonic() - stopped)))
    stack.services.postgres.ensure_running()
    return f"PostgreSQL stopped for {time.monotonic() - stopped:.0f} s"


def age_unacked(stack: Stack, *, seconds: float) -> int:
    """Makes every task the workers hold unacknowledged (retries waiting on their countdown among
    them) look handed out `seconds` ago: past the visibility timeout, the transport hands them out
    again — what a retry delay longer than the timeout does. The number of tasks aged."""
    client = redis.Redis.from_url(stack.services.redis.url())
    try:
        tags = cast("list[tuple[bytes, float]]", client.zrange(UNACKED_INDEX, 0, -1, withscores=True))
        if tags:
            client.zadd(UNACKED_INDEX, {tag: score - seconds for tag, score in tags})
        return len(tags)
    finally:
        client.close()
