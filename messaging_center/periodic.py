"""Each beat job runs one at a time across every beat and worker.

Two beats (a second host, or a beat restarted beside the old one) each send every periodic job; two
maintenance workers would then run the same job at once. A job's body runs under a Redis lock named
after the task: a copy that arrives while another runs is skipped (it would find the same work, and
the next tick comes within seconds). Copies that arrive one after the other both run: every job acts
only on what is due when it reads, so a second run finds nothing left to do.

The lock expires LOCK_SECONDS after its holder stops renewing it, not after the job's time limit: a
worker killed mid-job (SIGKILL, a lost host) blocks the job for seconds, where a lock held for the
five-minute time limit would stop the relay and the due messages for minutes.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from celery import Task
from redis.exceptions import LockError, RedisError
from redis.lock import Lock

from messaging_center.broker import redis_client

logger = logging.getLogger(__name__)

T = TypeVar("T")
LOCK_SECONDS = 10.0
_RENEW_EVERY = LOCK_SECONDS / 4


def lock_key(job: str) -> str:
    return f"mc:job-lock:{job}"


def run_alone(job: str, body: Callable[[], T]) -> T | None:
    """`body()` under the job's lock; None, without running it, while another run holds the lock or
    Redis cannot be asked (then no task reaches a worker either)."""
    # thread_local=False: the token is renewed from another thread.
    lock = Lock(redis_client(), lock_key(job), timeout=LOCK_SECONDS, blocking=False, thread_local=False)
    try:
        acquired = lock.acquire()
    except RedisError as error:
        logger.warning("periodic job %s skipped: its lock cannot be taken (%s)", job, error)
        return None
    if not acquired:
        logger.info("periodic job %s skipped: another run of it holds the lock", job)
        return None
    done = threading.Event()
    renewer = threading.Thread(target=_renew, args=(job, lock, done), name=f"lock-{job}", daemon=True)
    renewer.start()
    try:
        return body()
    finally:
        done.set()
        renewer.join()
        with contextlib.suppress(RedisError, LockError):  # expired or unreachable: nothing to release
            lock.release()


def _renew(job: str, lock: Lock, done: threading.Event) -> None:
    while not done.wait(_RENEW_EVERY):
        try:
            lock.reacquire()
        except (RedisError, LockError) as error:
            # Redis unreachable for longer than LOCK_SECONDS, or the lock taken over: this run goes on.
            logger.warning("periodic job %s lost its lock while running: %s", job, error)
            return


class PeriodicJob(Task):
    """The base of every beat-scheduled task (`@shared_task(base=PeriodicJob)`): its body runs alone."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return run_alone(self.name, lambda: super(PeriodicJob, self).__call__(*args, **kwargs))
