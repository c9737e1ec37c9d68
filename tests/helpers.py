"""Helpers for tests that start real servers and workers, or send from several threads."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from devstack.background import Background, DidNotStart, launch
from devstack.background import free_port as free_port  # the tests take it from here

BASE_DIR = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


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


@contextlib.contextmanager
def launched(data_dir: Path, **extra_env: str) -> Iterator[Background]:
    """The default run (`make run`'s launcher) on a scratch data folder, stopped on exit."""
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        run = launch(data_dir, data_dir.parent / f"{data_dir.name}-launcher.log", {"WEB_WORKERS": "1", **extra_env})
    except DidNotStart as error:
        raise AssertionError(str(error)) from None
    try:
        yield run
    finally:
        stop_process_group(run.process)


def move_back(message_id: Any, days: float) -> Any:
    """Moves a message `days` back in time (its UUIDv7 id carries its creation time; the day gets its
    partition first: a database has them from yesterday on) and answers its new id."""
    import datetime as dt

    from django.db import connection
    from django.utils import timezone

    from apps.dispatch.models import Message
    from messaging_center import ids, partitions

    message = Message.objects.get(id=message_id)
    at = message.created_at - dt.timedelta(days=days)
    with connection.cursor() as cursor:
        partitions.ensure_partitions(cursor.cursor, now=timezone.now(), first_day=at)
    new_id = ids.uuid7_floor(at).int | (message.id.int & 0xFFF_FFFF_FFFF_FFFF)
    Message.objects.filter(id=message.id).update(id=new_id, created_at=at)
    return Message.objects.get(created_at=at, account_id=message.account_id).id
