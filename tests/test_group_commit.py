"""The group commit helper: concurrent callers share writes, each gets its own result or error."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from messaging_center.group_commit import GroupCommit


class Recorder:
    def __init__(self, delay: float = 0.02) -> None:
        self.groups: list[list[int]] = []
        self.delay = delay
        self.lock = threading.Lock()

    def write(self, items: Sequence[int]) -> list[int]:
        if any(item < 0 for item in items):
            raise ValueError(f"negative item in {list(items)}")
        time.sleep(self.delay)  # a commit's flush: others arrive meanwhile
        with self.lock:
            self.groups.append(list(items))
        return [item * 10 for item in items]


def test_a_lone_caller_writes_at_once_without_waiting_for_a_group() -> None:
    recorder = Recorder(delay=0)
    commit = GroupCommit(recorder.write)
    started = time.perf_counter()
    assert commit.submit(7) == 70
    assert time.perf_counter() - started < 0.05
    assert recorder.groups == [[7]]


def test_concurrent_callers_share_writes_and_each_gets_its_own_result() -> None:
    recorder = Recorder()
    commit = GroupCommit(recorder.write)
    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(commit.submit, range(200)))
    assert results == [item * 10 for item in range(200)]
    written = sorted(item for group in recorder.groups for item in group)
    assert written == list(range(200))  # each item written exactly once
    assert len(recorder.groups) < 60  # 200 items in far fewer writes than items


def test_a_failing_item_fails_only_its_own_caller() -> None:
    recorder = Recorder()
    commit = GroupCommit(recorder.write)
    items = [1, 2, -3, 4, 5, 6, 7, 8]
    barrier = threading.Barrier(len(items))

    def submit(item: int) -> int | str:
        barrier.wait()
        try:
            return commit.submit(item)
        except ValueError as error:
            return str(error)

    with ThreadPoolExecutor(max_workers=len(items)) as pool:
        results = list(pool.map(submit, items))
    assert results == [10, 20, "negative item in [-3]", 40, 50, 60, 70, 80]


def test_the_process_keeps_writing_after_a_failed_group() -> None:
    recorder = Recorder(delay=0)
    commit = GroupCommit(recorder.write)
    with pytest.raises(ValueError):
        commit.submit(-1)
    assert commit.submit(2) == 20


def test_an_interrupted_leader_still_answers_its_group_and_hands_over() -> None:
    release = threading.Event()
    calls: list[list[int]] = []

    class Interrupted(BaseException):
        pass

    def write(items: Sequence[int]) -> list[int]:
        calls.append(list(items))
        if len(calls) == 1:
            assert release.wait(5)
            return [10 * item for item in items]
        if len(calls) == 2:
            raise Interrupted  # not an Exception: GroupCommit does not retry it item by item
        return [10 * item for item in items]

    commit = GroupCommit(write)

    def submit(item: int) -> int | str:
        try:
            return commit.submit(item)
        except RuntimeError as error:
            return str(error)
        except Interrupted:
            return "interrupted"

    with ThreadPoolExecutor(max_workers=4) as pool:
        first = pool.submit(submit, 1)
        deadline = time.monotonic() + 5
        while not calls:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        queued = [pool.submit(submit, item) for item in (2, 3)]
        while commit.waiting() < 3:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        release.set()
        assert first.result(timeout=5) == 10
        assert sorted(str(f.result(timeout=5)) for f in queued) == ["interrupted", "the group write was interrupted"]
    assert commit.submit(4) == 40  # the next caller still gets a leader
