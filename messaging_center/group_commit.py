"""Group commit: concurrent callers in one process share one statement and one commit.

A small write per request (a pushed delivery report) is cheap to run and expensive to commit: each
commit waits for its own WAL flush (docs/performance.md, Group commit). Here the first caller to
arrive becomes the leader and writes its item; callers arriving meanwhile wait, and the oldest of
them leads the next group, which holds all of them. Nobody waits for a timer: an idle process writes
at once, a busy one in groups as large as its concurrency. A caller returns only after the commit
that holds its item, so durability is what it was; if a group's write fails, its items are written
one by one, so one bad item fails only its own caller.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass(eq=False)
class _Slot(Generic[Item, Result]):
    item: Item
    wake: threading.Event = field(default_factory=threading.Event)
    leads: bool = False
    finished: bool = False
    result: Result | None = None
    error: Exception | None = None


class GroupCommit(Generic[Item, Result]):
    """`write(items)` runs in the leader's thread (on that thread's database connection), returns
    one result per item in order, and must have committed when it returns (autocommit or its own
    `atomic`)."""

    def __init__(self, write: Callable[[Sequence[Item]], Sequence[Result]], *, max_group: int = 256) -> None:
        self._write = write
        self._max_group = max_group
        self._lock = threading.Lock()
        self._waiting: list[_Slot[Item, Result]] = []  # the leader's own slot is always first

    def waiting(self) -> int:
        """Callers not yet answered: the group being written and the callers queued behind it."""
        with self._lock:
            return len(self._waiting)

    def submit(self, item: Item) -> Result:
        slot: _Slot[Item, Result] = _Slot(item)
        with self._lock:
            slot.leads = not self._waiting
            self._waiting.append(slot)
        if not slot.leads:
            slot.wake.wait()
        if not slot.finished:
            self._lead()
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[return-value]

    def _lead(self) -> None:
        with self._lock:
            group = self._waiting[: self._max_group]
        try:
            self._run(group)
        finally:
            # Even if the leader was interrupted, nobody of its group waits forever and the next
            # group gets a leader.
            for slot in group:
                if not slot.finished:
                    slot.error, slot.finished = RuntimeError("the group write was interrupted"), True
                    if not slot.leads:
                        slot.wake.set()
            with self._lock:
                del self._waiting[: len(group)]
                if self._waiting:
                    successor = self._waiting[0]
                    successor.leads = True
                    successor.wake.set()

    def _run(self, group: list[_Slot[Item, Result]]) -> None:
        try:
            results = self._write([slot.item for slot in group])
        except Exception as error:
            if len(group) > 1:
                for slot in group:
                    self._run([slot])
                return
            results, group[0].error = [None], error  # type: ignore[list-item]
        for slot, result in zip(group, results, strict=True):
            slot.result = result
            slot.finished = True
            if not slot.leads:
                slot.wake.set()
