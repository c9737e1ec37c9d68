"""Password hashing off the API's hot path. Checking an operator's password costs about a third of a
second of CPU (PBKDF2, 1,000,000 iterations); a flood of wrong passwords on /admin/login/ ran that on
the web threads that also serve the API (p50 2.3 ms → max 7 s). Hashing runs on one low-priority
thread per process instead (hashlib releases the GIL while it works, and the kernel schedules the API's
threads first), and at most two sign-ins per process wait for it (AdminLoginGuardMiddleware)."""

from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from django.contrib.auth.hashers import PBKDF2PasswordHasher

LOWEST_PRIORITY = 19
THREAD_NAME = "password"
_pool: tuple[int, ThreadPoolExecutor] | None = None
_pool_lock = threading.Lock()


def _lower_priority() -> None:
    # Linux schedules threads as tasks: the niceness of this thread alone (PRIO_PROCESS of its id).
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOWEST_PRIORITY)


def _hashing_thread() -> ThreadPoolExecutor:
    """One per process (a forked web worker must not share its parent's thread)."""
    global _pool
    pid = os.getpid()
    with _pool_lock:
        if _pool is None or _pool[0] != pid:
            _pool = (pid, ThreadPoolExecutor(max_workers=1, thread_name_prefix=THREAD_NAME, initializer=_lower_priority))
        return _pool[1]


class LowPriorityPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    """Django's PBKDF2 (same algorithm name and hashes), computed on the low-priority thread."""

    def encode(self, password: str, salt: str, iterations: int | None = None) -> str:
        work = super().encode
        if threading.current_thread().name.startswith(THREAD_NAME):  # already there (never wait on oneself)
            return work(password, salt, iterations)
        return _hashing_thread().submit(work, password, salt, iterations).result()
