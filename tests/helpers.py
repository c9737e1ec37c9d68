"""Helpers for tests that start real servers and workers, or send from several threads."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def stop_process_group(process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


@contextlib.contextmanager
def celery_worker(
    env: dict[str, str], queues: str, log_path: Path, *, name: str = "test", concurrency: int = 2, pool: str = "prefork"
) -> Iterator[subprocess.Popen[bytes]]:
    """A real `celery worker` process, stopped (whole process group) on exit."""
    argv = [
        str(BIN / "celery"),
        "-A",
        "celery_app",
        "worker",
        "-Q",
        queues,
        "-n",
        f"{name}-{os.getpid()}@%h",
        "--concurrency",
        str(concurrency),
        "--pool",
        pool,
        "--loglevel",
        "INFO",
        "--without-gossip",
        "--without-mingle",
    ]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(argv, cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until(lambda: b" ready." in log_path.read_bytes() or process.poll() is not None, 60, "the celery worker")
        assert process.poll() is None, log_path.read_text()[-3000:]
        yield process
    finally:
        stop_process_group(process)


def post_send_from_thread(api: Any, item: tuple[dict[str, Any], dict[str, str]]) -> Any:
    """POST /api/v1/messages from a worker thread (`item` = body, extra headers); the thread's
    database connection is closed afterwards."""
    from django.db import connection
    from django.test import Client

    body, headers = item
    try:
        return Client().post(
            "/api/v1/messages", body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {api.key}", **headers
        )
    finally:
        connection.close()


@dataclass
class Launched:
    """The default run (`make run`'s launcher) on a scratch data folder: its process, environment
    (ports, MC_DATA_DIR) and log."""

    process: subprocess.Popen[bytes]
    env: dict[str, str]
    ports: dict[str, int]
    log: Path


@contextlib.contextmanager
def launched(data_dir: Path, **extra_env: str) -> Iterator[Launched]:
    """Starts the launcher as `make run` does, waits until it says it is up, stops it on exit."""
    ports = {"PORT": free_port(), "RECEIPTS_PORT": free_port(), "FLOWER_PORT": free_port(), "SIM_PORT": free_port()}
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"}}
    env |= {"MC_DATA_DIR": str(data_dir), "WEB_WORKERS": "1", **{k: str(v) for k, v in ports.items()}, **extra_env}
    log = data_dir.parent / f"{data_dir.name}-launcher.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "devstack.launcher"],
            cwd=BASE_DIR,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until(lambda: b"is up" in log.read_bytes() or process.poll() is not None, 180, "the launcher")
        assert process.poll() is None, log.read_text()[-3000:]
        yield Launched(process, env, ports, log)
    finally:
        stop_process_group(process)
