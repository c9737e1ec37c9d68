"""The send threads of a worker process."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

SEND_THREADS = int(os.environ.get("DISPATCH_SEND_THREADS", "32"))

_pool: tuple[int, ThreadPoolExecutor] | None = None
_pool_lock = threading.Lock()


def executor() -> ThreadPoolExecutor:
    """One pool per process: a Celery prefork child must not inherit its parent's threads."""
    global _pool
    pid = os.getpid()
    if _pool is None or _pool[0] != pid:
        with _pool_lock:
            if _pool is None or _pool[0] != pid:
                _pool = (pid, ThreadPoolExecutor(max_workers=SEND_THREADS, thread_name_prefix="send"))
    return _pool[1]
